"""The node calling its peers, all through pynetdicom:

* ``echo``            - C-ECHO, the "Test connection" button, with a plain-language answer
* ``find_studies``    - C-FIND, study root, STUDY level (patient ID/name, date range, modality, accession)
* ``retrieve_study``  - C-GET of a study into the local store (or C-MOVE to this node's own SCP)
* ``send_files``      - C-STORE of SR / secondary-capture results to the results destination

Every failure comes back as a sentence that says what to check."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pydicom import Dataset, dcmread
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                         JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless,
                         JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless, RLELossless)
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.sop_class import (ComprehensiveSRStorage, SecondaryCaptureImageStorage, StudyRootQueryRetrieveInformationModelFind,
                                  StudyRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelMove,
                                  Verification)

from ..errors import XrayError
from ..predict import one_line
from .config import NodeConfig, Peer
from .scp import RADIOGRAPH_CLASSES, quiet_pynetdicom, receive_dataset, set_timeouts
from .store import NodeStore

log = logging.getLogger("xray_node")

# transfer syntaxes offered for images retrieved with C-GET: uncompressed, then one context per compressed one
_UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
_COMPRESSED = [JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEG2000Lossless, JPEG2000,
               JPEGLSLossless, JPEGLSNearLossless, RLELossless, DeflatedExplicitVRLittleEndian]
STORED_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}  # success, and warnings after which the object is stored


class NetworkError(XrayError):
    code = "network"


@dataclass
class EchoResult:
    ok: bool
    ms: float | None
    message: str


def _new_ae(config: NodeConfig) -> AE:
    quiet_pynetdicom()
    ae = AE(ae_title=config.ae_title)
    set_timeouts(ae, config)
    return ae


def _check_host(peer: Peer) -> None:
    try:
        socket.getaddrinfo(peer.host, peer.port)
    except (socket.gaierror, UnicodeError):
        raise NetworkError(f"The host name '{peer.host}' of {peer.name} is not known on this network "
                           "(check the spelling, or use its IP address).") from None


def _associate(ae: AE, config: NodeConfig, peer: Peer, **kwargs):
    """An established association, or ``NetworkError`` saying what to check."""
    _check_host(peer)
    opened = []  # pynetdicom tells whether the TCP connection was made at all
    handlers = list(kwargs.pop("evt_handlers", [])) + [(evt.EVT_CONN_OPEN, lambda event: opened.append(True))]
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, evt_handlers=handlers, **kwargs)
    if assoc.is_established:
        return assoc
    if not opened:
        raise NetworkError(f"No answer from {peer.address} - is the port right, and is {peer.name} running?")
    if assoc.is_rejected:
        raise NetworkError(f"{peer.name} at {peer.address} refused the connection: check that it knows this node's "
                           f"AE title '{config.ae_title}' and that its own AE title is '{peer.ae_title}'.")
    if assoc.is_aborted:
        raise NetworkError(f"{peer.name} at {peer.address} broke off the connection while it was being set up "
                           "(it may not accept what this node asked for).")
    raise NetworkError(f"No answer from {peer.address} - is the port right, and is {peer.name} running?")


def echo(config: NodeConfig, peer: Peer) -> EchoResult:
    """C-ECHO: "PACS answered in 12 ms" / "No answer from 10.0.0.5:104 - is the port right?"."""
    ae = _new_ae(config)
    ae.add_requested_context(Verification)
    t0 = time.perf_counter()
    try:
        assoc = _associate(ae, config, peer)
    except NetworkError as exc:
        return EchoResult(False, None, exc.reason)
    try:
        status = assoc.send_c_echo()
        ms = (time.perf_counter() - t0) * 1000.0
        if status and status.Status == 0x0000:
            return EchoResult(True, ms, f"{peer.name} answered in {ms:.0f} ms.")
        if not status:
            return EchoResult(False, None, f"{peer.name} at {peer.address} accepted the connection but did not "
                                           "answer the echo in time.")
        return EchoResult(False, ms, f"{peer.name} answered the echo with an error (status 0x{status.Status:04X}).")
    finally:
        assoc.release()


# ------------------------------------------------------------------ C-FIND
@dataclass
class StudyQuery:
    patient_id: str = ""
    patient_name: str = ""  # '*' and '?' wildcards; without one a trailing '*' is added
    date_from: str = ""  # YYYYMMDD
    date_to: str = ""
    accession: str = ""
    modalities: tuple[str, ...] = ("CR", "DX")

    def dataset(self) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.PatientID = self.patient_id.strip()
        name = self.patient_name.strip()
        ds.PatientName = name if not name or any(c in name for c in "*?") else name + "*"
        for d in (self.date_from, self.date_to):
            if d and not (len(d) == 8 and d.isdigit()):
                raise NetworkError(f"The date {d!r} is not a date: use YYYYMMDD, e.g. 20240131.")
        ds.StudyDate = "" if not (self.date_from or self.date_to) else f"{self.date_from}-{self.date_to}"
        ds.AccessionNumber = self.accession.strip()
        ds.ModalitiesInStudy = list(self.modalities) if self.modalities else ""
        for kw in ("StudyInstanceUID", "StudyTime", "StudyDescription", "PatientBirthDate",
                   "NumberOfStudyRelatedInstances"):
            setattr(ds, kw, "")
        return ds


@dataclass
class StudyMatch:
    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    accession: str = ""
    description: str = ""
    modalities: str = ""
    instances: int | None = None


def find_studies(config: NodeConfig, peer: Peer, query: StudyQuery) -> list[StudyMatch]:
    """C-FIND (study root) on ``peer``; ``NetworkError`` with a reason when it fails."""
    ae = _new_ae(config)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ident = query.dataset()
    assoc = _associate(ae, config, peer)
    out: list[StudyMatch] = []
    try:
        for status, ds in assoc.send_c_find(ident, StudyRootQueryRetrieveInformationModelFind):
            if not status:
                raise NetworkError(f"{peer.name} stopped answering the search (timeout or connection lost).")
            code = status.Status
            if code in (0xFF00, 0xFF01) and ds is not None:
                out.append(_match(ds))
            elif code == 0x0000:
                break
            elif code != 0xFE00:
                raise NetworkError(f"{peer.name} refused the search (status 0x{code:04X}).")
    finally:
        if assoc.is_established:
            assoc.release()
    return out


def _match(ds: Dataset) -> StudyMatch:
    def g(kw):
        v = ds.get(kw, "")
        return "\\".join(str(x) for x in v) if isinstance(v, (list, tuple)) or getattr(v, "VM", 1) > 1 else str(v or "")

    n = ds.get("NumberOfStudyRelatedInstances", None)
    try:
        n = int(n) if n not in (None, "") else None
    except (TypeError, ValueError):
        n = None
    return StudyMatch(study_uid=g("StudyInstanceUID"), patient_id=g("PatientID"), patient_name=g("PatientName"),
                      study_date=g("StudyDate"), accession=g("AccessionNumber"), description=g("StudyDescription"),
                      modalities=g("ModalitiesInStudy"), instances=n)


# ------------------------------------------------------------- C-GET / C-MOVE
@dataclass
class RetrieveResult:
    completed: int = 0
    failed: int = 0
    warning: int = 0
    stored: list[Path] = field(default_factory=list)  # new images filed into the store (C-GET; C-MOVE: at the SCP)
    cancelled: bool = False
    message: str = ""


def retrieve_study(config: NodeConfig, peer: Peer, study_uid: str, store: NodeStore, *, method: str = "get",
                   on_received: Callable | None = None, progress: Callable[[int, int], None] | None = None,
                   cancel: Callable[[], bool] | None = None) -> RetrieveResult:
    """Fetch one study's CR/DX images.  ``get``: C-GET, the images come back on
    the same association (nothing to configure on the PACS); ``move``: C-MOVE
    to this node's AE title (the PACS must know it, and this node's Storage SCP
    must be running).  ``progress(done, total)``; ``cancel()`` aborts the
    transfer: images already received stay in the store."""
    if method not in ("get", "move"):
        raise NetworkError(f"Unknown retrieve method {method!r} (get or move).")
    result = RetrieveResult()
    ae = _new_ae(config)
    kwargs = {}
    if method == "get":
        model = StudyRootQueryRetrieveInformationModelGet
        ae.add_requested_context(model)
        roles = []
        for uid in RADIOGRAPH_CLASSES:
            ae.add_requested_context(uid, _UNCOMPRESSED)
            for ts in _COMPRESSED:
                ae.add_requested_context(uid, [ts])
            roles.append(build_role(uid, scp_role=True))

        def filed(path):  # classification can start while the rest of the study arrives
            result.stored.append(path)
            if on_received is not None:
                on_received(path)

        def on_store(event):
            return receive_dataset(event, store, filed, source=f"{peer.name} (C-GET)")

        kwargs = {"ext_neg": roles, "evt_handlers": [(evt.EVT_C_STORE, on_store)]}
    else:  # the images arrive at this node's Storage SCP, which files and announces them itself
        model = StudyRootQueryRetrieveInformationModelMove
        ae.add_requested_context(model)
    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.StudyInstanceUID = study_uid
    assoc = _associate(ae, config, peer, **kwargs)
    try:
        responses = assoc.send_c_get(ident, model) if method == "get" else \
            assoc.send_c_move(ident, config.ae_title, model)
        for status, _ in responses:
            if cancel is not None and cancel():
                assoc.abort()
                result.cancelled = True
                break
            if not status:
                raise NetworkError(f"{peer.name} stopped answering during the retrieve (timeout or connection lost).")
            code = status.Status
            done = int(status.get("NumberOfCompletedSuboperations", 0) or 0)
            rem = int(status.get("NumberOfRemainingSuboperations", 0) or 0)
            result.completed = done
            result.failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
            result.warning = int(status.get("NumberOfWarningSuboperations", 0) or 0)
            if progress is not None:
                progress(done + result.failed + result.warning, done + result.failed + result.warning + rem)
            if code in (0xFF00, 0xFF01):
                continue
            if code in (0x0000, 0xB000):
                break
            if code == 0xFE00:
                result.cancelled = True
                break
            if code == 0xA801:
                raise NetworkError(f"{peer.name} does not know this node's AE title '{config.ae_title}' as a C-MOVE "
                                   "destination: add it on the PACS, or retrieve with C-GET.")
            raise NetworkError(f"{peer.name} could not send the study (status 0x{code:04X}).")
    finally:
        if assoc.is_established:
            assoc.release()
    parts = [f"{result.completed} image(s) retrieved from {peer.name}"]
    if result.failed or result.warning:
        parts.append(f"{result.failed + result.warning} object(s) not taken (not CR/DX radiographs, or refused)")
    if result.cancelled:
        parts.append("cancelled; images already received are kept")
    result.message = "; ".join(parts) + "."
    return result


# ------------------------------------------------------------------ C-STORE
@dataclass
class SendOutcome:
    sent: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    error: str = ""  # the association could not be made or broke: nothing after ``sent`` was sent

    @property
    def ok(self) -> bool:
        return not self.failed and not self.error


def send_files(config: NodeConfig, peer: Peer, files: list[Path]) -> SendOutcome:
    """C-STORE each result file; a file counts as sent only when the peer acknowledged it."""
    out = SendOutcome()
    if not files:
        return out
    ae = _new_ae(config)
    for uid in (ComprehensiveSRStorage, SecondaryCaptureImageStorage):
        ae.add_requested_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    try:
        assoc = _associate(ae, config, peer)
    except NetworkError as exc:
        out.error = exc.reason
        return out
    try:
        for path in files:
            try:
                ds = dcmread(path)
            except Exception as exc:
                out.failed.append((path, f"the result file cannot be read: {one_line(exc)}"))
                continue
            try:
                status = assoc.send_c_store(ds)
            except Exception as exc:
                out.failed.append((path, one_line(exc)))
                continue
            if not status:
                out.error = f"{peer.name} stopped answering (timeout or connection lost)."
                break
            if status.Status in STORED_STATUSES:
                out.sent.append(path)
            else:
                out.failed.append((path, f"{peer.name} refused it (status 0x{status.Status:04X})"))
    finally:
        if assoc.is_established:
            assoc.release()
    return out


__all__ = ["echo", "EchoResult", "find_studies", "StudyQuery", "StudyMatch", "retrieve_study", "RetrieveResult",
           "send_files", "SendOutcome", "NetworkError"]
