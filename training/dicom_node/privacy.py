"""No patient identifiers in the node's log.

The node's own lines name calling AE titles, addresses, the store's hashed
keys, categories and reasons.  Two other ways identifiers could reach a log
are closed here:

* **Library loggers.**  pydicom logs (and warns) about header values it finds
  malformed, quoting them (``Invalid value for VR DA: '1970-01-01'``, value
  length warnings, UIDs); pynetdicom's INFO/DEBUG lines can dump whole
  datasets.  pydicom *resets* its logger to WARNING when it is imported, so a
  level set before the import is lost: :func:`quiet_dicom_libraries` imports
  both libraries first and then holds ``pydicom``, ``pynetdicom`` and
  ``highdicom`` at ERROR, and ignores the Python warnings those libraries
  raise.  It runs when ``training.dicom_node`` is imported (the node, the
  ``xray-node`` command and the app's node all import it) and again whenever
  the node starts an AE.
* **Exception texts.**  A message from a library may quote a value of the
  dataset it choked on; :func:`redact` replaces every text value of a dataset
  that occurs in a message before the node logs it.
"""

from __future__ import annotations

import logging
import re
import warnings

LIBRARY_LOGGERS = ("pydicom", "pynetdicom", "highdicom")
_LIB_MODULES = r"(pydicom|pynetdicom|highdicom)(\.|$)"
REDACTED = "<value>"
# value representations that can hold names, IDs, dates, free text or instance UIDs (not CS codes or numbers)
_IDENTIFYING_VRS = {"PN", "LO", "SH", "DA", "DT", "TM", "UI", "LT", "ST", "UT", "UC", "AS", "AE"}


def quiet_dicom_libraries(level: int = logging.ERROR) -> None:
    """Hold the DICOM libraries' loggers at ``level`` (after importing them) and drop their warnings."""
    import pydicom  # noqa: F401  - its import sets the "pydicom" logger to WARNING: import first
    import pynetdicom  # noqa: F401

    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    for name in ("pynetdicom.transport", "pynetdicom.association", "pynetdicom.acse", "pynetdicom.dul"):
        lib = logging.getLogger(name)
        if not any(isinstance(f, _NoTraceback) for f in lib.filters):
            lib.addFilter(_NoTraceback())
    warnings.filterwarnings("ignore", module=_LIB_MODULES)


class _NoTraceback(logging.Filter):
    """pynetdicom logs a whole traceback for a TLS failure or a handler's exception; its one-line message
    says enough (the node logs the reason in words), and a traceback may quote values."""

    def filter(self, record):
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _values(ds, depth: int = 0):
    from pydicom.multival import MultiValue

    for elem in ds:
        if elem.VR == "SQ":
            if depth < 3:
                for item in elem.value or []:
                    yield from _values(item, depth + 1)
            continue
        if elem.VR not in _IDENTIFYING_VRS or elem.tag.group == 0x0002:
            continue
        try:
            value = elem.value
        except Exception:  # pragma: no cover - an element that cannot be decoded
            continue
        if isinstance(value, (bytes, bytearray)) or value is None:
            continue
        for v in (value if isinstance(value, (list, tuple, MultiValue)) else [value]):
            text = str(v).strip()
            if text.startswith("1.2.840.10008."):  # a DICOM-defined UID (SOP class, transfer syntax)
                continue
            if len(text) >= 3:
                yield text
                for part in re.split(r"[\^=\\]+", text):
                    if len(part.strip()) >= 3:
                        yield part.strip()


def redact(text: str, ds=None) -> str:
    """``text`` with every text value of ``ds`` (names, IDs, dates, UIDs...) replaced by ``<value>``."""
    if ds is None or not text:
        return text
    try:
        values = sorted(set(_values(ds)), key=len, reverse=True)
    except Exception:  # pragma: no cover - a dataset that cannot be walked: say nothing specific
        return "the dataset could not be read"
    for v in values:
        text = text.replace(v, REDACTED)
    return text


quiet_dicom_libraries()

__all__ = ["quiet_dicom_libraries", "redact", "LIBRARY_LOGGERS"]
