"""The source image's DICOM context for derived objects (SR, SC).

``source_header(path)`` reads the header of the classified file (no pixels)
and returns a small, clean :class:`pydicom.Dataset` holding only what a
derived object copies or references: the Patient and General Study modules,
the series and instance identifiers, and a few descriptive tags.  Values are
made legal where the source is not (strings cut to their VR's maximum
length, dates and times that are not dates and times emptied, names of
Type 2 attributes present but empty), so a sloppy source header never makes
the objects we write invalid.  The UIDs are never altered: a source whose
Study/Series/SOP Instance UIDs are missing or malformed cannot be referenced,
and export is refused with a reason (:class:`DicomExportRefused`).

PNG/JPEG/BMP/TIFF inputs have no DICOM context: export is refused with
:data:`NEEDS_DICOM_SOURCE`."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from training.common.errors import XrayError

# pydicom warns (with its site-packages path) about sloppy header values; the
# values that matter are made legal below, so the warning would only confuse.
warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")

NEEDS_DICOM_SOURCE = ("DICOM export needs a DICOM source image: this file is a {kind} picture without patient "
                      "and study information, so its result cannot be filed with a study (export CSV or PDF "
                      "instead).")

# Patient + General Study modules (what highdicom copies into SR and SC), then
# what we reference or show.  SpecificCharacterSet first: it decodes the rest.
PATIENT_STUDY_KEYS = ("SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
                      "PatientSex", "PatientAge", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
                      "AccessionNumber", "ReferringPhysicianName", "StudyDescription")
REFERENCE_KEYS = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber",
                  "SeriesDescription", "InstanceNumber", "BodyPartExamined", "ViewPosition", "Laterality",
                  "PatientOrientation", "SeriesDate", "SeriesTime")
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
         "AccessionNumber", "ReferringPhysicianName")
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


class DicomExportRefused(XrayError):
    """A result that cannot be written as DICOM (``reason`` says why)."""

    code = "dicom_export"


def valid_uid(uid) -> bool:
    text = str(uid or "")
    return 0 < len(text) <= 64 and bool(_UID.match(text))


def _clean(ds) -> None:
    """Make the values in ``ds`` (top level) legal for their VR, in place."""
    from pydicom.valuerep import MAX_VALUE_LEN

    for elem in list(ds):
        vr, value = elem.VR, elem.value
        if value is None or vr == "SQ" or vr == "UI":
            continue
        if vr == "DA":
            if not _DA.match(str(value)):
                elem.value = ""
        elif vr == "TM":
            if not _TM.match(str(value).strip()):
                elem.value = ""
        elif vr == "AS":
            if not re.match(r"^\d{3}[DWMY]$", str(value)):
                elem.value = ""
        elif vr == "PN":
            text = str(value)
            if len(text) > 64 * 5:
                elem.value = text[:64]
        elif vr in MAX_VALUE_LEN and MAX_VALUE_LEN[vr]:
            limit = MAX_VALUE_LEN[vr]
            if elem.VM > 1:
                elem.value = [str(v)[:limit] for v in value]
            elif isinstance(value, str) and len(value) > limit:
                elem.value = value[:limit].rstrip()


def source_header(path, *, kind: str | None = None):
    """The clean header of the DICOM at ``path`` (``DicomExportRefused`` otherwise)."""
    import pydicom

    p = Path(path)
    if kind is not None and kind != "dicom":
        raise DicomExportRefused(NEEDS_DICOM_SOURCE.format(kind=kind.upper()))
    try:
        src = pydicom.dcmread(p, stop_before_pixels=True, force=True)
    except Exception:
        raise DicomExportRefused(f"{p.name} could not be read as DICOM, so no DICOM result can refer to it.") from None
    if "SOPClassUID" not in src and "StudyInstanceUID" not in src:
        raise DicomExportRefused(NEEDS_DICOM_SOURCE.format(kind=(p.suffix.lstrip(".") or "non-DICOM").upper()))
    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
               if not valid_uid(src.get(k))]
    if missing:
        raise DicomExportRefused(
            f"{p.name}: its DICOM header lacks a valid {', '.join(missing)}, so a DICOM result could not refer to "
            "this image; no DICOM result was written for it.")
    from training.imaging.dicom_charset import copy_decoded

    # text decoded from the source's bytes (declared set, else the documented fallback); out: UTF-8
    out, notes = copy_decoded(src, PATIENT_STUDY_KEYS + REFERENCE_KEYS)
    out.charset_notes = notes  # how a value without a valid declared set was read: the SR's audit trail
    for key in TYPE2:
        if key not in out:
            setattr(out, key, "")
    _clean(out)
    return out


def _needs_latin1(ds) -> bool:
    for elem in ds:
        if isinstance(elem.value, (str, bytes)) and any(ord(c) > 127 for c in str(elem.value)):
            return True
    return False


__all__ = ["DicomExportRefused", "NEEDS_DICOM_SOURCE", "source_header", "valid_uid"]
