"""Audit trail: which model (name, version, SHA-256), which program version
and when, for every result written (CSV rows, PDF reports, DICOM SR/SC).

``model_stamp(loaded)`` computes the stamp once per loaded model (the
SHA-256 of the model file as stored on disk, the figure ``sha256sum`` prints;
a model that never was a file - tests, the trainer - is identified by the
SHA-256 of its weights, marked ``weights:``).  ``audit_row(pred, stamp)`` is
a CSV row with the audit columns added (:data:`AUDIT_COLUMNS`)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from training import __version__ as APP_VERSION
from training.common.constants import APP_NAME  # noqa: E402,F401  (audit rows name the program)
from training.common.formatting import version_label

AUDIT_COLUMNS = ("model", "model_sha256", "app_version", "result_time")


@dataclass(frozen=True)
class ModelStamp:
    name: str
    version: str
    sha256: str  # of the model file ("weights:<hex>" for an in-memory model)
    app_version: str = APP_VERSION
    file_name: str = ""

    @property
    def display_name(self) -> str:
        """``name vVERSION`` as shown to users (= ``LoadedModel.display_name``)."""
        return version_label(self.name, self.version)

    @property
    def key(self) -> str:
        """Identifies the model: a result made under another key is stale."""
        return f"{self.display_name}|{self.sha256}"


def model_stamp(loaded) -> ModelStamp:
    """The stamp of a ``training.model.modelfile.LoadedModel`` (cached on it)."""
    cached = getattr(loaded, "_audit_stamp", None)
    if cached is not None:
        return cached
    from training.model.modelfile import file_sha256, state_tensors, weights_digest

    if loaded.path is not None and getattr(loaded, "sha256", ""):  # hashed when the file was read
        digest, file_name = loaded.sha256, loaded.path.name
    elif loaded.path is not None and loaded.path.is_file():
        digest, file_name = file_sha256(loaded.path), loaded.path.name
    else:
        digest, file_name = "weights:" + weights_digest(state_tensors(loaded.model)), ""
    stamp = ModelStamp(name=loaded.info.title, version=str(loaded.info.version), sha256=digest, file_name=file_name)
    try:
        loaded._audit_stamp = stamp
    except AttributeError:  # pragma: no cover - a slotted stand-in
        pass
    return stamp


def now_utc() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def time_text(when: _dt.datetime | None = None) -> str:
    """ISO 8601 in UTC, seconds: ``2026-11-30T08:15:00+00:00``."""
    return (when or now_utc()).astimezone(_dt.timezone.utc).replace(microsecond=0).isoformat()


def audit_cells(stamp: ModelStamp | None, when: _dt.datetime | None = None) -> dict[str, str]:
    if stamp is None:
        return {k: "" for k in AUDIT_COLUMNS}
    return {"model": stamp.display_name, "model_sha256": stamp.sha256, "app_version": stamp.app_version,
            "result_time": time_text(when)}


def audit_row(pred, stamp: ModelStamp | None, when: _dt.datetime | None = None) -> dict[str, str]:
    """``pred.as_row()`` plus the audit columns."""
    row = pred.as_row()
    row.update(audit_cells(stamp, when))
    return row


__all__ = ["APP_NAME", "APP_VERSION", "AUDIT_COLUMNS", "ModelStamp", "model_stamp", "audit_row", "audit_cells",
           "time_text", "now_utc"]
