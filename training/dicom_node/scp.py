"""Storage SCP: this node answers C-ECHO and study-level C-FIND over its local
store (``find_scp``), and takes C-STORE of the images a chest archive holds:
CR, DX (for presentation and for processing) and Secondary Capture images
whose header says CR/DX or chest (the chest-radiograph gate then decides, as
for a file opened in the app).  Other SOP classes are refused at association
time (the sender is told "no presentation context").  Each image is written
atomically into the local store *before* it is acknowledged: an image the
sender was told is stored is on disk.

An image no result could refer to (a missing or invalid Study, Series or SOP
Instance UID) is refused at once with status 0xC000 and the reason in the
response's Error Comment - never acknowledged and then set aside in silence.

Only configured calling AE titles may associate (``NodeConfig.allowed_callers``;
``accept_any_calling_ae`` lifts that), and only when they call this node's AE
title.  With TLS on (``tls``) the node also (or only) listens on the TLS port;
the TLS handshake runs in the connection's own thread, with a time limit, and a
failed one is logged with its reason.  Log lines name the calling AE title, the
sender's address and the store's hashed keys, never patient identifiers."""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass
from typing import Callable

from pydicom import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from training.common.errors import XrayError
from training.common.formatting import exception_text
from training.imaging.dicom_header import header_text

from .config import NodeConfig
from .privacy import quiet_dicom_libraries, redact
from .store import NodeStore, uid_key

log = logging.getLogger("xray_node")

SC_CLASS = str(SecondaryCaptureImageStorage)
RADIOGRAPH_CLASSES = {  # the image SOP classes this node takes (name kept: other modules import it)
    str(ComputedRadiographyImageStorage): "CR image",
    str(DigitalXRayImageStorageForPresentation): "DX image (for presentation)",
    str(DigitalXRayImageStorageForProcessing): "DX image (for processing)",
    SC_CLASS: "Secondary Capture image",
}
ACCEPTED_TEXT = "CR, DX and chest Secondary Capture images"
RADIOGRAPH_MODALITIES = ("CR", "DX")
CHEST_WORDS = ("CHEST", "THORAX")
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000  # missing / invalid UIDs, unreadable dataset
STATUS_NOT_A_CHEST_IMAGE = 0xC001  # a Secondary Capture whose header says neither CR/DX nor chest
STATUS_OWN_RESULT = 0xC002  # a result this program wrote (SR / heatmap SC) came back
STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122
UID_ATTRIBUTES = (("SOPClassUID", "SOP Class UID"), ("StudyInstanceUID", "Study Instance UID"),
                  ("SeriesInstanceUID", "Series Instance UID"), ("SOPInstanceUID", "SOP Instance UID"))
TLS_HANDSHAKE_SECONDS = 10.0


def quiet_pynetdicom() -> None:
    """Library log lines can quote header values or whole datasets: hold them at ERROR (``privacy``)."""
    quiet_dicom_libraries()


def set_timeouts(ae: AE, config: NodeConfig) -> None:
    """Short, separate limits (docs/DICOM_NODE.md): a peer that accepts TCP but never answers costs
    ``acse_timeout_seconds``, not minutes."""
    ae.connection_timeout = float(config.connect_timeout_seconds)
    ae.acse_timeout = float(config.acse_timeout_seconds)
    ae.dimse_timeout = float(config.dimse_timeout_seconds)
    ae.network_timeout = float(config.timeout_seconds)


def sop_class_name(uid) -> str:
    from pydicom.uid import UID

    return RADIOGRAPH_CLASSES.get(str(uid)) or UID(str(uid)).name


def is_storage_class(uid) -> bool:
    """A storage SOP class (or an unknown / retired one); False for a service (echo, Q/R, worklist...)."""
    from pynetdicom.sop_class import uid_to_service_class

    return str(uid).startswith("1.2.840.10008.5.1.4.1.1.") or \
        uid_to_service_class(str(uid)).__name__ in ("StorageServiceClass", "ServiceClass")


@dataclass
class Refusal:
    status: int
    reason: str  # a sentence without identifiers, for the log
    comment: str = ""  # the response's Error Comment (LO: at most 64 characters); default: the reason

    def __post_init__(self):
        self.comment = (self.comment or self.reason)[:64]


def check_dataset(ds) -> Refusal | None:
    """Why this node will not take ``ds`` (None: it takes it).  Reading a value may raise."""
    from training.dicom_out.source import valid_uid

    lacking = [name for kw, name in UID_ATTRIBUTES if not header_text(ds, kw).strip()]
    if lacking:
        return Refusal(STATUS_CANNOT_UNDERSTAND, f"it has no {' and no '.join(lacking)}",
                       f"no {' and no '.join(lacking)}")
    invalid = [name for kw, name in UID_ATTRIBUTES if not valid_uid(ds.get(kw))]
    if invalid:
        return Refusal(STATUS_CANNOT_UNDERSTAND, f"its {' and '.join(invalid)} is not a valid UID, so no result "
                                                 "could refer to it", f"{' and '.join(invalid)} is not a valid UID")
    sop_class = str(ds.SOPClassUID)
    if _is_own_result(ds):
        return Refusal(STATUS_OWN_RESULT, "it is a result this program wrote, not a radiograph",
                       "a result of this program, not a radiograph")
    if sop_class not in RADIOGRAPH_CLASSES:
        return Refusal(STATUS_SOP_CLASS_NOT_SUPPORTED, f"it is a {sop_class_name(sop_class)}; this node takes "
                                                       f"{ACCEPTED_TEXT} only", "not a CR, DX or chest SC image")
    if sop_class == SC_CLASS:
        modality = header_text(ds, "Modality").strip().upper()
        words = " ".join(header_text(ds, kw) for kw in ("BodyPartExamined", "StudyDescription",
                                                        "SeriesDescription", "ProtocolName")).upper()
        if modality not in RADIOGRAPH_MODALITIES and not any(w in words for w in CHEST_WORDS):
            return Refusal(STATUS_NOT_A_CHEST_IMAGE, f"a Secondary Capture with modality '{modality or 'none'}' "
                                                     "and no chest body part: not a chest radiograph",
                           f"not a chest radiograph (SC, modality {modality or 'none'})")
    return None


def _is_own_result(ds) -> bool:
    from training.dicom_out.sc import SC_SERIES_DESCRIPTION
    from training.dicom_out.sr import MANUFACTURER, SR_SERIES_DESCRIPTION

    return header_text(ds, "Manufacturer") == MANUFACTURER or \
        header_text(ds, "SeriesDescription") in (SC_SERIES_DESCRIPTION, SR_SERIES_DESCRIPTION)


def status_dataset(code: int, comment: str = "") -> Dataset:
    """A C-STORE response status with an Error Comment (LO: 64 characters, no backslash)."""
    rsp = Dataset()
    rsp.Status = code
    if comment:
        rsp.ErrorComment = comment.replace("\\", "/")[:64]
    return rsp


def receive_dataset(event, store: NodeStore, on_received: Callable | None = None, *, source: str = "",
                    refusals: list | None = None):
    """File one C-STORE request into ``store``; returns the DIMSE status (a refusal carries its reason in
    the Error Comment).  ``refusals`` collects the :class:`Refusal` of each object not taken.

    Shared by the Storage SCP and the C-GET requestor (``scu.retrieve_study``)."""
    caller = source or _caller(event)

    def refuse(refusal: Refusal):
        if refusals is not None:
            refusals.append(refusal)
        log.warning("refused an object from %s (status 0x%04X): %s", caller, refusal.status, refusal.reason)
        return status_dataset(refusal.status, refusal.comment)

    try:
        ds = event.dataset
        refusal = check_dataset(ds)
        if refusal is None:
            study, sop = str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)
    except Exception as exc:  # the message may quote a value: only its kind is logged
        return refuse(Refusal(STATUS_CANNOT_UNDERSTAND, f"the dataset cannot be read ({type(exc).__name__})"))
    if refusal is not None:
        return refuse(refusal)
    try:
        data = event.encoded_dataset(include_meta=True)
        path, new = store.put(data, study, sop)
    except OSError as exc:
        log.error("could not store an image from %s (status 0xA700, the sender may retry): %s", caller,
                  exc.strerror or type(exc).__name__)
        return status_dataset(STATUS_OUT_OF_RESOURCES, "this node could not store it (disk); try again")
    except Exception as exc:
        return refuse(Refusal(STATUS_CANNOT_UNDERSTAND, "the dataset cannot be encoded: "
                              + redact(exception_text(exc, 120), ds)))
    if new:
        log.info("received image %s of study %s from %s", uid_key(sop), uid_key(study), caller)
        if on_received is not None:
            on_received(path)
    else:
        log.info("image %s of study %s from %s is already in the store (not classified again)", uid_key(sop),
                 uid_key(study), caller)
    return STATUS_SUCCESS


def _caller(event) -> str:
    try:
        req = event.assoc.requestor
        return f"AE '{str(req.ae_title).strip()}' at {req.address}"
    except Exception:  # pragma: no cover - defensive
        return "a sender"


def _start_tls_handshake_in_thread(server, context, timeout: float) -> None:
    """pynetdicom wraps a TLS connection in the accepting thread: a client that connects and says
    nothing would stop every other caller, and a failed handshake would vanish without a word.  Here
    the listening socket hands over the plain connection, and the handshake runs in the connection's
    own thread, with ``timeout``, logging why it failed."""
    import ssl

    from .tls import tls_failure_reason

    plain_finish = server.finish_request

    def finish_request(request, client_address):
        host = client_address[0] if isinstance(client_address, tuple) else str(client_address)
        try:
            request.settimeout(timeout)
            tls_sock = context.wrap_socket(request, server_side=True)
            tls_sock.settimeout(None)
        except (ssl.SSLError, OSError) as exc:
            why = tls_failure_reason(f"ssl {exc}") or "the TLS handshake failed"
            log.warning("refused a TLS connection from %s: %s", host, why)
            try:
                request.close()
            except OSError:  # pragma: no cover
                pass
            return
        try:
            subject = dict(x[0] for x in (tls_sock.getpeercert() or {}).get("subject", ()))
            who = f" (certificate of '{subject['commonName']}')" if "commonName" in subject else ""
        except Exception:  # pragma: no cover - defensive
            who = ""
        log.info("TLS connection from %s%s, %s", host, who, tls_sock.version())
        plain_finish(tls_sock, client_address)

    server.finish_request = finish_request


class StorageServer:
    """The listening side of the node (start / stop; ``port`` and ``tls_port`` once started)."""

    def __init__(self, config: NodeConfig, store: NodeStore, on_received: Callable | None = None):
        self.config = config
        self.store = store
        self.on_received = on_received
        self._server = None
        self._tls_server = None
        self._lock = threading.Lock()
        self._assocs = weakref.WeakKeyDictionary()  # per association: is an object coming in, was its end said

    @property
    def port(self) -> int | None:
        """The plain port listened on (the TLS port when only TLS is served)."""
        server = self._server or self._tls_server
        return None if server is None else int(server.server_address[1])

    @property
    def tls_port(self) -> int | None:
        return None if self._tls_server is None else int(self._tls_server.server_address[1])

    @property
    def running(self) -> bool:
        return self._server is not None or self._tls_server is not None

    def _ae(self) -> AE:
        ae = AE(ae_title=self.config.ae_title)
        set_timeouts(ae, self.config)
        ae.maximum_associations = 16
        for uid in RADIOGRAPH_CLASSES:
            ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)  # what the local store holds
        ae.require_called_aet = True  # a caller that asks for another AE title is refused ("called AE title")
        if not self.config.accept_any_calling_ae:
            ae.require_calling_aet = self.config.allowed_callers() or ["\\no caller allowed\\"]
        return ae

    def _handlers(self):
        return [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_FIND, self._on_find),
                (evt.EVT_REQUESTED, self._on_requested), (evt.EVT_ACCEPTED, self._on_accepted),
                (evt.EVT_REJECTED, self._on_rejected), (evt.EVT_PDU_RECV, self._on_pdu),
                (evt.EVT_DIMSE_RECV, self._on_dimse), (evt.EVT_ABORTED, self._on_aborted),
                (evt.EVT_CONN_CLOSE, self._on_closed)]

    def _listen(self, ae: AE, port: int, what: str):
        try:
            return ae.start_server((self.config.host, port), block=False, evt_handlers=self._handlers())
        except OSError as exc:
            raise XrayError(f"Cannot listen for DICOM{what} on {self.config.host}:{port}: {exc.strerror or exc} "
                            "(is another program, or another xray-node, using this port?)", code="network") from None

    def start(self) -> int:
        quiet_pynetdicom()
        context = None
        if self.config.tls:
            from .tls import server_context

            context = server_context(self.config)  # ConfigError (an XrayError) with the reason
        ae = self._ae()
        if not self.config.tls or self.config.listen_plain:
            self._server = self._listen(ae, self.config.port, "")
        if context is not None:
            try:
                self._tls_server = self._listen(ae, self.config.tls_port, " over TLS")
            except XrayError:
                self.stop()
                raise
            _start_tls_handshake_in_thread(self._tls_server, context, TLS_HANDSHAKE_SECONDS)
        callers = "any calling AE title" if self.config.accept_any_calling_ae else \
            "calling AE titles " + ", ".join(self.config.allowed_callers() or ["(none configured)"])
        where = []
        if self._server is not None:
            where.append(f"{self.config.host}:{self._server.server_address[1]}")
        if self._tls_server is not None:
            mutual = "mutual TLS" if self.config.tls_require_client_certificate else "TLS"
            where.append(f"{self.config.host}:{self.tls_port} ({mutual}, TLS {self.config.tls_minimum_version}+)")
        log.info("DICOM node '%s' listening on %s; accepting %s from %s", self.config.ae_title, " and ".join(where),
                 ACCEPTED_TEXT, callers)
        return self.port

    def stop(self) -> None:
        """Stop listening and close the associations in progress; an image whose
        transfer was cut off was never acknowledged, so its sender still has it."""
        with self._lock:
            servers, self._server, self._tls_server = (self._server, self._tls_server), None, None
        stopped = False
        for server in servers:
            if server is not None:
                server.shutdown()
                stopped = True
        if stopped:
            log.info("DICOM node stopped listening")

    # ---------------------------------------------------------------- events
    def _state(self, event) -> dict:
        return self._assocs.setdefault(event.assoc, {"receiving": False, "said": False})

    def _on_store(self, event):
        self._state(event)["receiving"] = False
        return receive_dataset(event, self.store, self.on_received)

    def _on_find(self, event):
        from .find_scp import handle_find

        yield from handle_find(event, self.store)

    def _on_pdu(self, event):
        if type(event.pdu).__name__ == "P_DATA_TF":
            self._state(event)["receiving"] = True

    def _on_dimse(self, event):
        self._state(event)["receiving"] = False

    def _on_requested(self, event):
        primitive = event.assoc.requestor.primitive
        title = str(primitive.calling_ae_title).strip()
        called = str(primitive.called_ae_title).strip()
        if called != self.config.ae_title:
            log.warning("refused an association from AE '%s' at %s: it called AE title '%s', this node is '%s'",
                        title, event.assoc.requestor.address, called, self.config.ae_title)
        elif not self.config.calling_ae_allowed(title):
            log.warning("refused an association from AE '%s' at %s: this AE title is not in the node's allowed "
                        "calling AE titles", title, event.assoc.requestor.address)

    def _on_rejected(self, event):
        self._state(event)["said"] = True  # said in _on_requested; its closing needs no second line

    def _on_accepted(self, event):
        """One line when a caller offered nothing this node takes, or asked only for a service it does not
        offer (C-GET, C-MOVE, worklist...).  The usual "offer everything I know" of a PACS or a modality (an
        echo from Orthanc, a C-MOVE sub-association) is not news: DEBUG."""
        assoc = event.assoc
        rejected = [cx.abstract_syntax for cx in assoc.rejected_contexts]
        if not rejected:
            return
        accepted = [cx.abstract_syntax for cx in assoc.accepted_contexts]
        services_rejected = [u for u in rejected if not is_storage_class(u)]
        services_accepted = [u for u in accepted if not is_storage_class(u)]

        def some(uids):
            names = sorted({sop_class_name(u) for u in uids})
            return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

        offer = f"this node answers C-ECHO and study-level C-FIND and takes {ACCEPTED_TEXT}"
        if services_rejected and not services_accepted:
            log.warning("%s asked for %s, which this node does not offer (%s)", _caller(event),
                        some(services_rejected), offer)
        elif not accepted:
            log.warning("%s offered only %s: refused - %s", _caller(event), some(rejected), offer)
        else:
            log.debug("%s also offered %d SOP class(es) this node does not take", _caller(event), len(rejected))

    def _ended(self, event, how: str) -> None:
        state = self._state(event)
        if state["said"]:
            return
        state["said"] = True
        if state["receiving"]:
            log.warning("%s %s in the middle of a transfer; the object being sent was not stored and not "
                        "acknowledged (the sender keeps it and must send it again)", _caller(event), how)
        else:
            log.info("%s %s (nothing was being transferred)", _caller(event), how)

    def _on_aborted(self, event):
        self._ended(event, "aborted the association")

    def _on_closed(self, event):
        assoc = event.assoc
        if assoc.is_established and not (assoc.is_released or assoc.is_aborted):
            self._ended(event, "dropped the connection without ending the association")


__all__ = ["StorageServer", "receive_dataset", "check_dataset", "Refusal", "RADIOGRAPH_CLASSES", "quiet_pynetdicom",
           "set_timeouts", "sop_class_name", "status_dataset", "ACCEPTED_TEXT"]
