"""Patient / study / series of a DICOM input, read from its header only
(no pixels), so a batch can be shown grouped before anything is classified.

``read_study_info(path)`` -> :class:`StudyInfo` for a DICOM file, ``None``
for anything else (PNG, JPEG, a file that is not DICOM, an unreadable one).
``reading_key`` orders images as a reader goes through them: patient, study
date and time, study, series number, instance number, then the file's path.
Identifiers (name, ID, birth date) are held here; front ends decide whether
to show them."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from training.imaging.dicom_header import has_dicm, header_text

warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")

_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "StudyDate", "StudyTime",
         "AccessionNumber", "StudyDescription", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription",
         "Modality", "InstanceNumber", "ViewPosition", "SOPClassUID", "SOPInstanceUID", "SpecificCharacterSet")
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", "")


@dataclass(frozen=True)
class StudyInfo:
    patient_name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    study_uid: str = ""
    study_date: str = ""
    study_time: str = ""
    accession: str = ""
    study_description: str = ""
    series_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    modality: str = ""
    instance_number: int | None = None
    view: str = ""
    sop_instance_uid: str = ""

    @property
    def patient_key(self) -> str:
        return f"{self.patient_id}\x1f{self.patient_name}"

    @property
    def study_key(self) -> str:
        return f"{self.patient_key}\x1e{self.study_uid or self.study_date + self.accession}"

    @property
    def series_key(self) -> str:
        return f"{self.study_key}\x1d{self.series_uid or self.series_number}"

    def reading_key(self, rel_path: str = "") -> str:
        """A string that sorts images in reading order."""
        series = -1 if self.series_number is None else self.series_number
        inst = -1 if self.instance_number is None else self.instance_number
        return "\x1f".join((self.patient_id, self.patient_name, self.study_date or "99999999", self.study_time,
                            self.study_uid, f"{series + 1:08d}", self.series_uid, f"{inst + 1:08d}", rel_path))

    @property
    def study_date_text(self) -> str:
        d = self.study_date
        return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d

    @property
    def birth_date_text(self) -> str:
        d = self.birth_date
        return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d


def _looks_like_dicom(path: Path) -> bool:
    return has_dicm(path) or path.suffix.lower() in DICOM_SUFFIXES


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def read_study_info(path) -> StudyInfo | None:
    """The grouping facts of a DICOM file, or None when it is not one."""
    import pydicom

    p = Path(path)
    if not p.is_file() or not _looks_like_dicom(p):
        return None
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, force=True, specific_tags=list(_TAGS))
        if "StudyInstanceUID" not in ds and "SOPClassUID" not in ds and "SeriesInstanceUID" not in ds:
            return None

        def s(key: str) -> str:
            return header_text(ds, key).strip()

        from training.imaging.dicom_charset import (
            decoded_text,  # bytes without a valid declared charset: documented fallback
        )

        return StudyInfo(patient_name=decoded_text(ds, "PatientName"), patient_id=decoded_text(ds, "PatientID"),
                         birth_date=s("PatientBirthDate"),
                         study_uid=s("StudyInstanceUID"), study_date=s("StudyDate"), study_time=s("StudyTime"),
                         accession=s("AccessionNumber"), study_description=decoded_text(ds, "StudyDescription"),
                         series_uid=s("SeriesInstanceUID"), series_number=_int(ds.get("SeriesNumber")),
                         series_description=s("SeriesDescription"), modality=s("Modality").upper(),
                         instance_number=_int(ds.get("InstanceNumber")), view=s("ViewPosition").upper(),
                         sop_instance_uid=s("SOPInstanceUID"))
    except Exception:  # a damaged header: the file stays a plain row (the loader says why later)
        return None


__all__ = ["StudyInfo", "read_study_info"]
