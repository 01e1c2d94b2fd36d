"""Inputs from a DICOMDIR (a CD/DVD or USB export), read with pydicom's ``FileSet``.

``find_inputs(paths)`` is ``training.imaging.loading.find_images`` plus DICOMDIR
support: a path that is a ``DICOMDIR`` file, or a folder with a ``DICOMDIR``
at its top, is expanded into the instances the DICOMDIR lists, in its
patient > study > series order.  Every listed instance becomes an input,
radiograph or not: the loader then refuses a CT, MR, SR ... with its reason
("This DICOM is a CT image, not a chest radiograph"), so other modalities in
the set show up as refused rows instead of being hidden.  Instances listed
but missing on the medium are reported as skipped with the reason; a
DICOMDIR that cannot be read is reported and its folder walked instead."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")

DICOMDIR_NAME = "DICOMDIR"
_MISSING = re.compile(r"referenced SOP Instance for the directory record at offset \d+ does not exist: (.+)$")


@dataclass
class DicomdirContents:
    path: Path
    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    patients: int = 0
    studies: int = 0
    series: int = 0


def is_dicomdir(path) -> bool:
    return Path(path).name.upper() == DICOMDIR_NAME and Path(path).is_file()


def dicomdir_in(folder) -> Path | None:
    """The DICOMDIR at the top of ``folder`` (any letter case), or None."""
    try:
        for entry in os.scandir(folder):
            if entry.name.upper() == DICOMDIR_NAME and entry.is_file():
                return Path(entry.path)
    except OSError:
        return None
    return None


def read_dicomdir(path) -> DicomdirContents:
    """The instances a DICOMDIR lists (``XrayError`` when it cannot be read)."""
    from pydicom.fileset import FileSet

    from training.common.errors import XrayError

    p = Path(path)
    try:
        with warnings.catch_warnings(record=True) as caught:  # pydicom drops missing instances with a warning
            warnings.simplefilter("always")
            fs = FileSet(p)
    except Exception as exc:
        raise XrayError(f"The DICOMDIR {p} cannot be read ({type(exc).__name__}); the folder is searched "
                        "for images instead.", code="dicomdir") from None
    out = DicomdirContents(path=p)
    for w in caught:
        m = _MISSING.search(str(w.message))
        if m:
            out.skipped.append((Path(m.group(1)), "listed in the DICOMDIR but missing on the disc or folder"))
    patients, studies, series = set(), set(), set()
    for inst in fs:
        try:
            f = Path(inst.path)
        except Exception:
            out.skipped.append((p, "DICOMDIR entry without a usable file reference"))
            continue
        keys = []
        for key in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"):
            try:
                keys.append(str(getattr(inst, key)))
            except Exception:
                keys.append("")
        patients.add(keys[0])
        studies.add(tuple(keys[:2]))
        series.add(tuple(keys))
        if not f.is_file():
            out.skipped.append((f, "listed in the DICOMDIR but missing on the disc or folder"))
            continue
        out.files.append(f)
    out.patients, out.studies, out.series = len(patients), len(studies), len(series)
    return out


def find_inputs(paths) -> tuple[list[Path], list[tuple[Path, str]]]:
    """``find_images`` with DICOMDIRs expanded (see the module docstring)."""
    from training.common.errors import XrayError
    from training.imaging.loading import find_images, unique_paths

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    plain: list[Path] = []
    for item in paths:
        p = Path(item)
        index = p if is_dicomdir(p) else (dicomdir_in(p) if p.is_dir() else None)
        if index is None:
            plain.append(p)
            continue
        try:
            contents = read_dicomdir(index)
        except XrayError as exc:
            skipped.append((index, exc.reason))
            plain.append(index.parent)
            continue
        files += contents.files
        skipped.extend(contents.skipped)
    if plain:
        more, more_skipped = find_images(plain)
        files += more
        skipped.extend(more_skipped)
    return unique_paths(files), skipped


__all__ = ["find_inputs", "read_dicomdir", "is_dicomdir", "dicomdir_in", "DicomdirContents"]
