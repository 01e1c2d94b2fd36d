"""Storage SCP: this node answers C-ECHO and study-level C-FIND over its local
store (``find_scp``), and accepts C-STORE of CR and DX
radiographs (other SOP classes are refused at association time, so the
sender is told which images were not accepted), and writes each received
image atomically into the local store *before* acknowledging it: an image the
sender was told is stored is on disk.

Only configured calling AE titles may associate (``NodeConfig.allowed_callers``;
``accept_any_calling_ae`` lifts that).  Log lines name the calling AE title,
the sender's address and the store's hashed keys, never patient identifiers."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, evt
from pynetdicom.sop_class import (ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation,
                                  DigitalXRayImageStorageForProcessing, StudyRootQueryRetrieveInformationModelFind,
                                  Verification)

from ..errors import XrayError
from ..predict import one_line
from .config import NodeConfig
from .store import NodeStore, uid_key

log = logging.getLogger("xray_node")

RADIOGRAPH_CLASSES = {
    str(ComputedRadiographyImageStorage): "CR image",
    str(DigitalXRayImageStorageForPresentation): "DX image (for presentation)",
    str(DigitalXRayImageStorageForProcessing): "DX image (for processing)",
}
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122


def quiet_pynetdicom() -> None:
    """pynetdicom's own INFO/DEBUG lines can print whole datasets (patient names): keep them out."""
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def set_timeouts(ae: AE, config: NodeConfig) -> None:
    t = float(config.timeout_seconds)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = t
    ae.connection_timeout = t


def sop_class_name(uid) -> str:
    from pydicom.uid import UID

    return RADIOGRAPH_CLASSES.get(str(uid)) or UID(str(uid)).name


def receive_dataset(event, store: NodeStore, on_received: Callable | None = None, *, source: str = "") -> int:
    """File one C-STORE request into ``store``; returns the DIMSE status.

    Shared by the Storage SCP and the C-GET requestor (``scu.retrieve_study``)."""
    caller = source or _caller(event)
    try:
        ds = event.dataset
        lacking = [name for kw, name in (("SOPClassUID", "SOP Class UID"), ("StudyInstanceUID", "Study Instance UID"),
                                         ("SOPInstanceUID", "SOP Instance UID")) if not str(ds.get(kw, "") or "")]
        if lacking:
            log.warning("refused a malformed dataset from %s (status 0xC000): it has no %s", caller,
                        " and no ".join(lacking))
            return STATUS_CANNOT_UNDERSTAND
        sop_class, study, sop = str(ds.SOPClassUID), str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)
    except Exception as exc:
        log.warning("refused a malformed dataset from %s (status 0xC000): it cannot be read (%s)", caller,
                    one_line(exc))
        return STATUS_CANNOT_UNDERSTAND
    if sop_class not in RADIOGRAPH_CLASSES:
        log.warning("refused a %s from %s: this node accepts CR and DX radiographs only", sop_class_name(sop_class),
                    caller)
        return STATUS_SOP_CLASS_NOT_SUPPORTED
    try:
        data = event.encoded_dataset(include_meta=True)
        path, new = store.put(data, study, sop)
    except OSError as exc:
        log.error("could not store an image from %s (status 0xA700, the sender may retry): %s", caller,
                  exc.strerror or exc)
        return STATUS_OUT_OF_RESOURCES
    except Exception as exc:
        log.warning("refused a dataset from %s that could not be encoded (status 0xC000): %s", caller, one_line(exc))
        return STATUS_CANNOT_UNDERSTAND
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


class StorageServer:
    """The listening side of the node (start / stop; ``port`` once started)."""

    def __init__(self, config: NodeConfig, store: NodeStore, on_received: Callable | None = None):
        self.config = config
        self.store = store
        self.on_received = on_received
        self._server = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int | None:
        return None if self._server is None else int(self._server.server_address[1])

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> int:
        quiet_pynetdicom()
        ae = AE(ae_title=self.config.ae_title)
        set_timeouts(ae, self.config)
        ae.maximum_associations = 16
        for uid in RADIOGRAPH_CLASSES:
            ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)  # what the local store holds
        if not self.config.accept_any_calling_ae:
            ae.require_calling_aet = self.config.allowed_callers() or ["\\no caller allowed\\"]
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_FIND, self._on_find), (evt.EVT_REQUESTED, self._on_requested),
                    (evt.EVT_ACCEPTED, self._on_accepted), (evt.EVT_ABORTED, self._on_aborted),
                    (evt.EVT_CONN_CLOSE, self._on_closed)]
        try:
            self._server = ae.start_server((self.config.host, self.config.port), block=False, evt_handlers=handlers)
        except OSError as exc:
            raise XrayError(f"Cannot listen for DICOM on {self.config.host}:{self.config.port}: "
                            f"{exc.strerror or exc} (is another program, or another xray-node, using this port?)",
                            code="network") from None
        callers = "any calling AE title" if self.config.accept_any_calling_ae else \
            "calling AE titles " + ", ".join(self.config.allowed_callers() or ["(none configured)"])
        log.info("DICOM node '%s' listening on %s:%d; accepting CR/DX images from %s", self.config.ae_title,
                 self.config.host, self.port, callers)
        return self.port

    def stop(self) -> None:
        """Stop listening and close the associations in progress; an image whose
        transfer was cut off was never acknowledged, so its sender still has it."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            log.info("DICOM node stopped listening")

    # ---------------------------------------------------------------- events
    def _on_store(self, event):
        return receive_dataset(event, self.store, self.on_received)

    def _on_find(self, event):
        from .find_scp import handle_find

        yield from handle_find(event, self.store)

    def _on_requested(self, event):
        title = str(event.assoc.requestor.primitive.calling_ae_title).strip()
        if not self.config.calling_ae_allowed(title):
            log.warning("refused an association from AE '%s' at %s: this AE title is not in the node's allowed "
                        "calling AE titles", title, event.assoc.requestor.address)

    def _on_accepted(self, event):
        names = sorted({sop_class_name(cx.abstract_syntax) for cx in event.assoc.rejected_contexts})
        if names:  # modalities often offer every class they know: one line, not one per class
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            log.info("%s offered %s: refused, this node accepts CR and DX radiographs only", _caller(event), shown)

    def _on_aborted(self, event):
        log.warning("the association with %s was aborted; an image whose transfer was cut off was not stored "
                    "and not acknowledged (the sender keeps it and must send it again)", _caller(event))

    def _on_closed(self, event):
        assoc = event.assoc
        if assoc.is_established and not (assoc.is_released or assoc.is_aborted):
            log.warning("%s dropped the connection without ending the association; an image whose transfer was cut "
                        "off was not stored and not acknowledged", _caller(event))


__all__ = ["StorageServer", "receive_dataset", "RADIOGRAPH_CLASSES", "quiet_pynetdicom", "set_timeouts",
           "sop_class_name"]
