"""The node calling its peers, all through pynetdicom:

* ``echo``            - C-ECHO, the "Test connection" button, with a plain-language answer
* ``find_studies``    - C-FIND, study root, STUDY level (patient ID/name, date range, modality, accession)
* ``retrieve_study``  - C-GET of a study into the local store (or C-MOVE to this node's own SCP)
* ``send_files``      - C-STORE of SR / secondary-capture results to the results destination

Every failure comes back as a sentence that says what to check."""

from __future__ import annotations

import collections
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydicom import Dataset, dcmread
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    ComprehensiveSRStorage,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from training.common.errors import XrayError
from training.common.formatting import exception_text
from training.imaging.dicom_header import header_text
from training.imaging.study_info import StudyInfo

from .config import NodeConfig, Peer
from .privacy import redact
from .scp import (
    ACCEPTED_TEXT,
    RADIOGRAPH_CLASSES,
    RADIOGRAPH_MODALITIES,
    quiet_pynetdicom,
    receive_dataset,
    set_timeouts,
    sop_class_name,
)
from .store import NodeStore

log = logging.getLogger("xray_node")

# transfer syntaxes offered for images retrieved with C-GET: uncompressed, then one context per compressed one
_UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
_COMPRESSED = [JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEG2000Lossless, JPEG2000,
               JPEGLSLossless, JPEGLSNearLossless, RLELossless, DeflatedExplicitVRLittleEndian]
STORED_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}  # success, and warnings after which the object is stored
SC_NAME = "Secondary Capture image"
# what else a chest study often holds: offered in a C-GET so that the PACS can send them and hear why they are
# not taken (instead of failing the whole retrieve for want of a presentation context)
OTHER_STUDY_CLASSES = ("1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.88.22",
                       "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.59",
                       "1.2.840.10008.5.1.4.1.1.11.1")  # Basic Text / Enhanced / Comprehensive SR, KOS, GSPS
RETRIEVE_STATUS_TEXT = {
    0xA701: "out of resources: it could not work out the matches", 0xA702: "out of resources: it could not send",
    0xA801: "the move destination is unknown to it", 0xA900: "the request does not match what it supports",
    0xAA00: "none of the objects could be sent", 0xB000: "some objects could not be sent",
}


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


class _PynetdicomErrors(logging.Handler):
    """Keeps pynetdicom's recent ERROR lines (held out of the log by ``privacy``) with their thread, so a
    failed association can be explained: "Connection refused", "timed out", a TLS verification error."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: collections.deque = collections.deque(maxlen=400)

    def emit(self, record):
        try:
            self.records.append((record.thread, record.created, record.getMessage()))
        except Exception:  # pragma: no cover - never let logging fail a transfer
            pass

    def lines(self, since: float, *threads) -> list[str]:
        """Lines logged since ``since`` (time.time()) by ``threads`` (thread idents are reused)."""
        want = {t for t in threads if t is not None}
        return [m for t, c, m in list(self.records) if t in want and c >= since]


_ERRORS = _PynetdicomErrors()
logging.getLogger("pynetdicom").addHandler(_ERRORS)


def _tcp_reason(config: NodeConfig, peer: Peer, lines: list[str]) -> str:
    """Why no connection was made, from pynetdicom's "TCP Initialisation Error: ..." line."""
    text = " ".join(m for m in lines if "TCP Initialisation Error" in m or "SSL" in m or "certificate" in m)
    low = text.lower()
    addr, name = peer.address, peer.name
    from .tls import tls_failure_reason

    tls = tls_failure_reason(text, client_side=True)
    if tls:
        return f"{name} at {addr}: the TLS connection failed: {tls}."
    if "timed out" in low:
        return (f"No answer from {addr} within {config.connect_timeout_seconds:g} s (no TCP connection could be "
                f"made) - is the address right, is a firewall in the way, and is {name} running?")
    if "no route to host" in low or "network is unreachable" in low:
        return f"{addr} cannot be reached from this computer (no route to the host) - check the address and network."
    return f"No answer from {addr} - is the port right, and is {name} running?"


def _associate(ae: AE, config: NodeConfig, peer: Peer, **kwargs):
    """An established association, or ``NetworkError`` saying what went wrong (the real cause: nothing
    listening, no TCP connection within the connect timeout, no answer to the association request within
    the ACSE timeout, a refusal with its reason, a TLS failure)."""
    _check_host(peer)
    opened, received = [], []  # pynetdicom tells whether the TCP connection was made and what came back
    handlers = list(kwargs.pop("evt_handlers", [])) + [
        (evt.EVT_CONN_OPEN, lambda event: opened.append(True)),
        (evt.EVT_PDU_RECV, lambda event: received.append(type(event.pdu).__name__))]
    if peer.tls and "tls_args" not in kwargs:
        from .config import ConfigError
        from .tls import client_context

        try:
            kwargs["tls_args"] = client_context(config, peer)
        except ConfigError as exc:  # a missing or unusable CA bundle / certificate: said, not raised
            raise NetworkError(f"Cannot call {peer.name} over TLS: {exc.reason}") from None
    t0, started = time.monotonic(), time.time() - 0.001
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, evt_handlers=handlers, **kwargs)
    if assoc.is_established:
        return assoc
    elapsed = time.monotonic() - t0
    dul = getattr(assoc, "dul", None)
    lines = _ERRORS.lines(started, assoc.ident, getattr(dul, "ident", None))
    addr, name = peer.address, peer.name
    if not opened:
        raise NetworkError(_tcp_reason(config, peer, lines))
    if assoc.is_rejected:
        rsp = getattr(assoc.acceptor, "primitive", None)
        diag = getattr(rsp, "diagnostic", None)
        source = getattr(rsp, "result_source", None)
        if source == 1 and diag == 3:
            raise NetworkError(f"{name} at {addr} refused the connection: it does not accept this node's AE title "
                               f"'{config.ae_title}' (calling AE title not recognised) - add it on {name}.")
        if source == 1 and diag == 7:
            raise NetworkError(f"{name} at {addr} refused the connection: its AE title is not '{peer.ae_title}' "
                               f"(called AE title not recognised) - check the peer's AE title.")
        why = getattr(rsp, "reason_str", "") or "no reason given"
        raise NetworkError(f"{name} at {addr} refused the connection ({why}): check that it knows this node's "
                           f"AE title '{config.ae_title}' and that its own AE title is '{peer.ae_title}'.")
    if any("No accepted presentation contexts" in m for m in lines):
        raise NetworkError(f"{name} at {addr} accepted the association but none of what this node asked for "
                           "(it does not support that service or those SOP classes).")
    if "A_ABORT_RQ" in received:
        raise NetworkError(f"{name} at {addr} aborted the association request (it may not accept this node's "
                           f"AE title '{config.ae_title}' or what was asked).")
    if not received and (any("ACSE timeout" in m for m in lines) or elapsed >= 0.9 * config.acse_timeout_seconds):
        raise NetworkError(f"{name} at {addr} accepted the TCP connection but did not answer the association "
                           f"request within {config.acse_timeout_seconds:g} s (ACSE timeout): it may be hung or "
                           "overloaded.")
    tls = None
    if peer.tls:
        from .tls import tls_failure_reason

        tls = tls_failure_reason(" ".join(lines), client_side=True)
    if tls:
        raise NetworkError(f"{name} at {addr}: the TLS connection failed: {tls}.")
    if not received:
        raise NetworkError(f"{name} at {addr} closed the connection without answering the association request "
                           "(is this its DICOM port, and does it expect TLS there, or a plain connection?).")
    raise NetworkError(f"{name} at {addr} broke off the association request (answer: {', '.join(received)}).")


def _dimse_failure(config: NodeConfig, peer: Peer, assoc, what: str, t0: float) -> str:
    """Why a DIMSE request got no answer: the DIMSE timeout, an abort, or a lost connection."""
    if time.monotonic() - t0 >= 0.9 * config.dimse_timeout_seconds:
        return (f"{peer.name} did not answer the {what} within {config.dimse_timeout_seconds:g} s (DIMSE timeout): "
                "it may be hung or overloaded.")
    if assoc.is_aborted:
        return f"{peer.name} aborted the association during the {what} (or the connection was lost)."
    return f"the connection to {peer.name} was lost during the {what}."


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
        t1 = time.monotonic()
        status = assoc.send_c_echo()
        ms = (time.perf_counter() - t0) * 1000.0
        if status and status.Status == 0x0000:
            return EchoResult(True, ms, f"{peer.name} answered in {ms:.0f} ms.")
        if not status:
            return EchoResult(False, None, f"{peer.name} at {peer.address} accepted the association but: "
                                           + _dimse_failure(config, peer, assoc, "echo (C-ECHO)", t1))
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
                   "NumberOfStudyRelatedInstances", "SOPClassesInStudy"):
            setattr(ds, kw, "")
        return ds


@dataclass(frozen=True)
class StudyMatch(StudyInfo):
    """A C-FIND answer: the study record (``training.imaging.study_info.StudyInfo``) plus what the PACS says
    about the whole study."""

    modalities: str = ""
    instances: int | None = None
    sop_classes: str = ""  # SOPClassesInStudy when the PACS answers it (Orthanc does)

    @property
    def description(self) -> str:
        return self.study_description

    @property
    def will_retrieve(self) -> bool:
        """The study holds something this node takes (CR/DX images, Secondary Captures of a CR/DX study)."""
        return bool(self._taken()) or (not self.sop_classes and bool(self._modalities() & set(RADIOGRAPH_MODALITIES)))

    def _modalities(self) -> set[str]:
        return {m.strip().upper() for m in self.modalities.split("\\") if m.strip()}

    def _taken(self) -> list[str]:
        return [u for u in self.sop_classes.split("\\") if u.strip() in RADIOGRAPH_CLASSES]

    @property
    def retrieve_note(self) -> str:
        """What a retrieve of this study will and will not bring (shown with the C-FIND answer)."""
        mods = self._modalities()
        if self.sop_classes:
            classes = [u.strip() for u in self.sop_classes.split("\\") if u.strip()]
            taken = sorted({sop_class_name(u) for u in classes if u in RADIOGRAPH_CLASSES})
            left = sorted({sop_class_name(u) for u in classes if u not in RADIOGRAPH_CLASSES})
            if not taken:
                return f"Nothing to retrieve: this node takes {ACCEPTED_TEXT}; the study holds " + \
                    ", ".join(left) + "."
            text = "Will retrieve: " + ", ".join(taken)
            if SC_NAME in taken:
                text += " (a Secondary Capture only when its header says CR/DX or chest)"
            return text + (f". Not retrieved: {', '.join(left)}." if left else ".")
        if mods & set(RADIOGRAPH_MODALITIES):
            others = sorted(mods - set(RADIOGRAPH_MODALITIES))
            return ("Will retrieve the CR/DX images (and chest Secondary Captures)"
                    + (f"; not the {', '.join(others)} objects." if others else "."))
        if mods:
            return f"Nothing to retrieve: the study holds {', '.join(sorted(mods))}, this node takes {ACCEPTED_TEXT}."
        return f"The PACS did not say what the study holds; this node takes {ACCEPTED_TEXT} only."


def find_studies(config: NodeConfig, peer: Peer, query: StudyQuery) -> list[StudyMatch]:
    """C-FIND (study root) on ``peer``; ``NetworkError`` with a reason when it fails."""
    ae = _new_ae(config)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ident = query.dataset()
    assoc = _associate(ae, config, peer)
    out: list[StudyMatch] = []
    try:
        t0 = time.monotonic()
        for status, ds in assoc.send_c_find(ident, StudyRootQueryRetrieveInformationModelFind):
            if not status:
                raise NetworkError(_dimse_failure(config, peer, assoc, "search (C-FIND)", t0))
            t0 = time.monotonic()
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
        return header_text(ds, kw)

    n = ds.get("NumberOfStudyRelatedInstances", None)
    try:
        n = int(n) if n not in (None, "") else None
    except (TypeError, ValueError):
        n = None
    return StudyMatch(study_uid=g("StudyInstanceUID"), patient_id=g("PatientID"), patient_name=g("PatientName"),
                      study_date=g("StudyDate"), accession=g("AccessionNumber"), study_description=g("StudyDescription"),
                      modalities=g("ModalitiesInStudy"), instances=n, sop_classes=g("SOPClassesInStudy"))


# ------------------------------------------------------------- C-GET / C-MOVE
@dataclass
class RetrieveResult:
    completed: int = 0
    failed: int = 0
    warning: int = 0
    stored: list[Path] = field(default_factory=list)  # new images filed into the store (C-GET; C-MOVE: at the SCP)
    cancelled: bool = False
    message: str = ""
    refused: list = field(default_factory=list)  # scp.Refusal of each object this node did not take (C-GET)

    def refused_text(self) -> str:
        counts: dict[str, int] = {}
        for r in self.refused:
            counts[r.reason] = counts.get(r.reason, 0) + 1
        return "; ".join(f"{n} x {why}" for why, n in counts.items())


def retrieve_study(config: NodeConfig, peer: Peer, study_uid: str, store: NodeStore, *, method: str = "get",
                   on_received: Callable | None = None, progress: Callable[[int, int], None] | None = None,
                   cancel: Callable[[], bool] | None = None) -> RetrieveResult:
    """Fetch one study's CR/DX/chest SC images.  ``get``: C-GET, the images come back on
    the same association (nothing to configure on the PACS); ``move``: C-MOVE
    to this node's AE title (the PACS must know it, and this node's Storage SCP
    must be running).  ``progress(done, total)``; ``cancel()`` aborts the
    transfer: images already received stay in the store."""
    if method not in ("get", "move"):
        raise NetworkError(f"Unknown retrieve method {method!r} (get or move).")
    result = RetrieveResult()
    ae = _new_ae(config)
    if method == "get":
        model, kwargs = _get_contexts(ae, peer, store, result, on_received)
    else:  # the images arrive at this node's Storage SCP, which files and announces them itself
        model, kwargs = StudyRootQueryRetrieveInformationModelMove, {}
        ae.add_requested_context(model)
    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.StudyInstanceUID = study_uid
    assoc = _associate(ae, config, peer, **kwargs)
    try:
        status = _follow_retrieve(config, peer, assoc, ident, model, method, result, progress, cancel)
    finally:
        if assoc.is_established:
            assoc.release()
    result.message = _retrieve_message(peer, result, status)
    return result


def _get_contexts(ae, peer: Peer, store: NodeStore, result: RetrieveResult,
                  on_received: Callable | None) -> tuple[Any, dict]:
    """C-GET: the presentation contexts and SCP roles for the images that come back on the
    association, and the handler that files them; (query model, association arguments)."""
    model = StudyRootQueryRetrieveInformationModelGet
    ae.add_requested_context(model)
    roles = []
    for uid in RADIOGRAPH_CLASSES:
        ae.add_requested_context(uid, _UNCOMPRESSED)
        for ts in _COMPRESSED:
            ae.add_requested_context(uid, [ts])
        roles.append(build_role(uid, scp_role=True))
    for uid in OTHER_STUDY_CLASSES:  # taken only to say why not (sub-operation failed, with the reason)
        ae.add_requested_context(uid, _UNCOMPRESSED)
        roles.append(build_role(uid, scp_role=True))

    def filed(path):  # classification can start while the rest of the study arrives
        result.stored.append(path)
        if on_received is not None:
            on_received(path)

    def on_store(event):
        return receive_dataset(event, store, filed, source=f"{peer.name} (C-GET)", refusals=result.refused)

    return model, {"ext_neg": roles, "evt_handlers": [(evt.EVT_C_STORE, on_store)]}


def _follow_retrieve(config: NodeConfig, peer: Peer, assoc, ident, model, method: str, result: RetrieveResult,
                     progress: Callable[[int, int], None] | None, cancel: Callable[[], bool] | None):
    """Send the C-GET / C-MOVE and follow its pending responses into ``result`` until it ends,
    is cancelled or fails (NetworkError); returns the last status."""
    t0 = time.monotonic()
    responses = assoc.send_c_get(ident, model) if method == "get" else \
        assoc.send_c_move(ident, config.ae_title, model)
    status = None
    for status, _ in responses:
        if cancel is not None and cancel():
            assoc.abort()
            result.cancelled = True
            break
        if not status:
            raise NetworkError(_dimse_failure(config, peer, assoc, "retrieve", t0))
        t0 = time.monotonic()
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
        raise NetworkError(_retrieve_failure(peer, status, result, method))
    return status


def _retrieve_message(peer: Peer, result: RetrieveResult, status) -> str:
    """The one-line summary of a retrieve: images retrieved, objects not taken or not sent, cancelled."""
    parts = [f"{result.completed} image(s) retrieved from {peer.name}"]
    if result.refused:
        parts.append(f"{len(result.refused)} object(s) not taken by this node: {result.refused_text()}")
    elif result.failed or result.warning:
        parts.append(f"{result.failed + result.warning} object(s) not sent by {peer.name} (it said "
                     f"'{_comment(status) or 'nothing more'}'; this node takes {ACCEPTED_TEXT})")
    if result.cancelled:
        parts.append("cancelled; images already received are kept")
    return "; ".join(parts) + "."


def _comment(status) -> str:
    try:
        return header_text(status, "ErrorComment").strip() if status else ""
    except Exception:  # pragma: no cover - defensive
        return ""


def _retrieve_failure(peer: Peer, status, result: RetrieveResult, method: str) -> str:
    """Why a retrieve failed, in words: the PACS's status and comment, and what this node refused."""
    code = status.Status
    meaning = RETRIEVE_STATUS_TEXT.get(code) or ("it was unable to process the request" if 0xC000 <= code <= 0xCFFF
                                                 else "an error")
    text = f"{peer.name} could not send the study (status 0x{code:04X}: {meaning}"
    comment = _comment(status)
    text += f"; it says '{comment}')" if comment else ")"
    if result.completed:
        text += f"; {result.completed} image(s) arrived and are kept"
    if result.refused:
        text += f"; this node refused {len(result.refused)} object(s): {result.refused_text()}"
    elif method == "get":
        text += (f". The study may hold objects this node does not take (it takes {ACCEPTED_TEXT}), or "
                 f"{peer.name} may not support C-GET for them - try C-MOVE")
    return text + "."


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
                out.failed.append((path, f"the result file cannot be read: {exception_text(exc)}"))
                continue
            t0 = time.monotonic()
            try:
                status = assoc.send_c_store(ds)
            except Exception as exc:
                out.failed.append((path, redact(exception_text(exc), ds)))
                continue
            if not status:
                out.error = _dimse_failure(config, peer, assoc, "C-STORE of a result", t0)
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
