"""C-FIND SCP over the node's local store (study root, STUDY level): lets a
viewer or ``findscu`` ask what the node holds.  Matching follows PS3.4 C.2.2.2
for the keys a study search uses: single value, ``*``/``?`` wildcards (patient
name, ID, accession, description), a ``YYYYMMDD-YYYYMMDD`` date range, a list
of Study Instance UIDs, and ModalitiesInStudy (any of the values).  Only
associations from allowed calling AE titles get here (``scp.StorageServer``)."""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path

from pydicom import Dataset, dcmread

from training.imaging.dicom_header import header_text, value_text

from .store import NodeStore

log = logging.getLogger("xray_node")

STUDY_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "StudyDate", "StudyTime",
              "AccessionNumber", "StudyDescription", "StudyID")
WILDCARD_KEYS = {"PatientName", "PatientID", "AccessionNumber", "StudyDescription", "StudyID"}


def _studies(store: NodeStore) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for stage in ("inbox", "images"):
        for p in (store.root / stage).glob("*/*.dcm"):
            out.setdefault(p.parent.name, []).append(p)
    return out


def study_record(files: list[Path]) -> Dataset | None:
    """Study-level attributes of one stored study (from its first readable header)."""
    rec, modalities = None, []
    for p in sorted(files):
        try:
            ds = dcmread(p, stop_before_pixels=True)
        except Exception:
            continue
        if rec is None:
            rec = Dataset()
            for kw in STUDY_KEYS:
                setattr(rec, kw, ds.get(kw, ""))
        mod = header_text(ds, "Modality")
        if mod and mod not in modalities:
            modalities.append(mod)
    if rec is not None:
        rec.ModalitiesInStudy = modalities
        rec.NumberOfStudyRelatedInstances = len(files)
    return rec


def matches(rec: Dataset, ident: Dataset) -> bool:
    for elem in ident:
        kw = elem.keyword
        want = value_text(elem.value).strip()
        if not want or kw in ("QueryRetrieveLevel", "NumberOfStudyRelatedInstances", "SpecificCharacterSet"):
            continue
        have = header_text(rec, kw).strip()
        if kw == "ModalitiesInStudy":
            if not set(want.split("\\")) & set(have.split("\\")):
                return False
        elif kw == "StudyInstanceUID":
            if have not in want.split("\\"):
                return False
        elif kw in ("StudyDate", "PatientBirthDate") and "-" in want:
            lo, hi = want.split("-", 1)
            if not have or (lo and have < lo) or (hi and have > hi):
                return False
        elif kw in WILDCARD_KEYS and any(c in want for c in "*?"):
            if not fnmatch.fnmatchcase(have, want):
                return False
        elif kw in rec and have != want:
            return False
    return True


def find_local(store: NodeStore, ident: Dataset) -> list[Dataset]:
    """The answers to a study-level C-FIND identifier: each holds the keys asked for."""
    answers = []
    for files in _studies(store).values():
        rec = study_record(files)
        if rec is None or not matches(rec, ident):
            continue
        ans = Dataset()
        ans.QueryRetrieveLevel = "STUDY"
        for elem in ident:
            if elem.keyword and elem.keyword != "QueryRetrieveLevel":
                setattr(ans, elem.keyword, rec.get(elem.keyword, ""))
        answers.append(ans)
    return answers


def handle_find(event, store: NodeStore):
    """pynetdicom EVT_C_FIND handler (a generator of (status, identifier))."""
    ident = event.identifier
    level = str(ident.get("QueryRetrieveLevel", "")).upper()
    if level != "STUDY":
        log.warning("refused a C-FIND at level %r: this node answers study-level searches only", level[:16])
        yield 0xA900, None
        return
    try:
        answers = find_local(store, ident)
    except Exception as exc:  # the message may quote a stored value: only its kind is logged
        log.error("a study search failed (%s); answered 0xC000", type(exc).__name__)
        yield 0xC000, None
        return
    log.info("answered a study search with %d match(es)", len(answers))
    for ans in answers:
        if event.is_cancelled:
            yield 0xFE00, None
            return
        yield 0xFF00, ans


__all__ = ["find_local", "handle_find", "matches", "study_record"]
