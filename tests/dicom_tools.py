"""Test helpers for DICOM output: the third-party validator (Debian's
dicom3tools ``dciodvfy``) and folders of studies built from the real samples.

``dciodvfy_errors(path)`` runs the validator and returns its "Error" lines.
Without ``dciodvfy`` a test skips with the reason, except in CI (``CI=true``,
set by ``.ci/run``, which installs dicom3tools): there it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

STUDY_SOURCES = ("cxr01_rsna_normal-2_jpegbaseline.dcm", "cxr07_nih_udacity_test1_nofinding.dcm",
                 "cxr12_barre_CR-MONO1-10-chest_nometa.dcm")


def require_dciodvfy() -> str:
    exe = shutil.which("dciodvfy")
    if exe:
        return exe
    msg = ("dciodvfy (Debian package dicom3tools) is not installed; it validates the DICOM objects this program "
           "writes: apt-get install dicom3tools")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def dciodvfy(path) -> tuple[list[str], str]:
    """(error lines, whole report) of dciodvfy on ``path``."""
    exe = require_dciodvfy()
    run = subprocess.run([exe, "-new", str(path)], capture_output=True, text=True, timeout=120)
    report = run.stdout + run.stderr
    errors = [ln for ln in report.splitlines() if ln.startswith("Error")]
    return errors, report


def make_studies(root: Path, dicom_dir: Path) -> list[Path]:
    """Two patients, each with one study of two series; the same file names
    in both patients' folders.  Patient/study/series/instance tags rewritten
    with new UIDs.  Returns the files written (patient A first)."""
    import pydicom
    from pydicom.uid import generate_uid

    plan = [  # (patient, name, id, birth, study date, accession, [(series no, description, view, [(source, file)])])
        ("A", "Alpha^Ann", "PA-001", "19600101", "20240105", "ACC-A1",
         [(1, "Chest PA", "PA", [(STUDY_SOURCES[0], "IM0001.dcm")]),
          (2, "Chest AP portable", "AP", [(STUDY_SOURCES[1], "IM0002.dcm")])]),
        ("B", "Beta^Bob", "PB-002", "19701231", "20240212", "ACC-B1",
         [(1, "Chest PA", "PA", [(STUDY_SOURCES[1], "IM0001.dcm"), (STUDY_SOURCES[2], "IM0002.dcm")])]),
    ]
    written: list[Path] = []
    for folder, name, pid, birth, date, acc, series in plan:
        study = generate_uid()
        for number, desc, view, items in series:
            series_uid = generate_uid()
            for inst, (src, fname) in enumerate(items, 1):
                ds = pydicom.dcmread(dicom_dir / src, force=True)
                ds.PatientName, ds.PatientID, ds.PatientBirthDate = name, pid, birth
                ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.AccessionNumber = study, date, "101500", acc
                ds.StudyID = f"S{pid[-3:]}"
                ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, number, desc
                ds.InstanceNumber, ds.ViewPosition = inst, view
                ds.SOPInstanceUID = generate_uid()
                if getattr(ds, "file_meta", None) is not None:
                    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                out = root / folder / f"series{number}" / fname
                out.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(out, enforce_file_format=False)
                written.append(out)
    return written
