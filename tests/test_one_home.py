"""One path per concept (issue 23 item 4): the DICM signature, a DICOM header value as text, the study
record, the folder walk, JSON and CSV writing, the run folder's file names and "name vN" each have one home,
and every former copy now behaves as that home does."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest
from pydicom import Dataset

from training.common import atomic
from training.common.csv_out import csv_text, write_csv
from training.common.formatting import version_label
from training.imaging.dicom_header import has_dicm, header_text, value_text


def test_has_dicm_on_bytes_and_files(tmp_path):
    head = b"\0" * 128 + b"DICM"
    assert has_dicm(head) and has_dicm(head + b"more") and has_dicm(bytearray(head))
    assert not has_dicm(head[:-1]) and not has_dicm(b"\0" * 128 + b"DICX") and not has_dicm(b"")
    good, short = tmp_path / "a.ima", tmp_path / "b.ima"
    good.write_bytes(head + b"\x02\x00")
    short.write_bytes(head[:100])
    assert has_dicm(good) and has_dicm(str(good))
    assert not has_dicm(short) and not has_dicm(tmp_path / "missing") and not has_dicm(tmp_path)


def test_value_text_joins_several_values_and_reads_names():
    ds = Dataset()
    ds.ModalitiesInStudy = ["CR", "DX"]
    ds.PatientName = "Doe^Jane"
    ds.Modality = "CR"
    ds.SeriesNumber = 0
    assert header_text(ds, "ModalitiesInStudy") == "CR\\DX"
    assert header_text(ds, "PatientName") == "Doe^Jane"  # a PersonName as its text, not its characters
    assert header_text(ds, "Modality") == "CR" and header_text(ds, "SeriesNumber") == "0"
    assert header_text(ds, "StudyDescription") == ""
    assert value_text(None) == "" and value_text(("a", "b")) == "a\\b" and value_text(3) == "3"


def test_study_match_is_the_study_record_and_joins_multi_valued_answers():
    from training.dicom_node.scu import StudyMatch, _match
    from training.imaging.study_info import StudyInfo

    ds = Dataset()
    ds.StudyInstanceUID = "1.2.3"
    ds.PatientID = "P1"
    ds.PatientName = "Doe^Jane"
    ds.StudyDate = "20240131"
    ds.StudyDescription = "Chest"
    ds.ModalitiesInStudy = ["CR", "CT"]
    ds.NumberOfStudyRelatedInstances = "3"
    m = _match(ds)
    assert isinstance(m, StudyMatch) and isinstance(m, StudyInfo)
    assert (m.study_uid, m.patient_id, m.patient_name, m.study_date) == ("1.2.3", "P1", "Doe^Jane", "20240131")
    assert m.description == m.study_description == "Chest" and m.study_date_text == "2024-01-31"
    assert m.modalities == "CR\\CT" and m.instances == 3
    assert m.will_retrieve and m.retrieve_note.startswith("Will retrieve the CR/DX images")


def test_scan_folders_uses_the_loaders_walk(tmp_path):
    from training.imaging.loading import find_images, walk_folder
    from training.train.data import scan_folders

    root = tmp_path / "set"
    for cls in ("COVID", "Normal"):
        (root / cls / "sub").mkdir(parents=True)
        (root / cls / "b.png").write_bytes(b"x")
        (root / cls / "sub" / "a.png").write_bytes(b"x")
        (root / cls / "notes.txt").write_text("no")
        (root / cls / ".hidden.png").write_bytes(b"x")
    (root / "COVID" / "scan.ima").write_bytes(b"\0" * 128 + b"DICM")  # odd suffix, but DICOM
    (root / "COVID" / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "Normal" / "pipe.png")
    scan = scan_folders([root])
    files = [it.file for it in scan.items]
    # class by class (Normal = 0 first); in walk order as before: a folder's files by name, then its sub-folders
    assert files == ["Normal/b.png", "Normal/sub/a.png", "COVID/b.png", "COVID/scan.ima", "COVID/sub/a.png"]
    why = {Path(p).name: r for p, r in scan.skipped}
    assert why["notes.txt"] == "not an image file (.txt)"
    assert why["DICOMDIR"].startswith("DICOM directory index")
    if hasattr(os, "mkfifo"):
        assert why["pipe.png"] == "not a regular file (named pipe)"
    entries, unreadable = walk_folder(root / "COVID")
    assert unreadable == [] and [p.name for p, _ in entries] == ["DICOMDIR", "b.png", "notes.txt", "scan.ima", "a.png"]
    found, _ = find_images([root / "COVID"])  # find_images keeps its own order: by path inside the folder
    assert [p.relative_to(root / "COVID").as_posix() for p in found] == ["b.png", "scan.ima", "sub/a.png"]


def test_write_json_and_write_csv(tmp_path):
    import numpy as np

    atomic.write_json(tmp_path / "a.json", {"x": np.float32(0.5), "n": [1, 2]})
    text = (tmp_path / "a.json").read_text(encoding="utf-8")
    assert text.endswith("}\n") and json.loads(text) == {"x": 0.5, "n": [1, 2]} and "\n  " in text
    rows = [{"a": 1, "b": "x,y", "extra": "ignored"}, {"a": 2}]
    write_csv(tmp_path / "t.csv", ("a", "b"), rows)
    assert (tmp_path / "t.csv").read_text(encoding="utf-8") == 'a,b\n1,"x,y"\n2,\n' == csv_text(("a", "b"), rows)
    assert list(csv.DictReader(open(tmp_path / "t.csv", newline=""))) == [{"a": "1", "b": "x,y"}, {"a": "2", "b": ""}]


def test_manifest_written_by_the_one_writer(tmp_path):
    from training.train.data import Item, read_manifest, write_manifest

    items = [Item("set", "COVID/a.png", 1, tmp_path / "a"), Item("set", "Normal/b.png", 0, tmp_path / "b")]
    write_manifest(tmp_path / "split.csv", items, ["train", "test"])
    assert (tmp_path / "split.csv").read_text(encoding="utf-8") == \
        "dataset,file,label,split\nset,COVID/a.png,COVID,train\nset,Normal/b.png,Normal,test\n"
    assert read_manifest(tmp_path / "split.csv") == {("set", "COVID/a.png"): (1, "train"),
                                                     ("set", "Normal/b.png"): (0, "test")}


def test_run_folder_knows_the_file_names(tmp_path):
    from training.train import run_folder as rf

    r = tmp_path
    assert [p.relative_to(r).as_posix() for p in (
        rf.config_file(r), rf.split_file(r), rf.data_file(r), rf.events_file(r), rf.report_md(r), rf.report_json(r),
        rf.confusion_all(r), *rf.checkpoint_files(r, "lstm"), rf.model_file(r, "lstm"), rf.history_csv(r, "lstm"),
        rf.history_json(r, "lstm"), rf.predictions_file(r, "lstm"), rf.metrics_file(r, "lstm"))] == [
        "config.json", "split.csv", "data.json", "events.jsonl", "report.md", "report.json", "confusion_all.png",
        "checkpoints/lstm_last.pt", "checkpoints/lstm_best.pt", "models/lstm.safetensors", "lstm/history.csv",
        "lstm/history.json", "lstm/predictions.json", "lstm/metrics.json"]


def test_version_label_is_the_one_name_v_n():
    from training.model.audit import ModelStamp

    assert version_label("ResNet50-LSTM", "2.0") == "ResNet50-LSTM v2.0"
    assert ModelStamp("ResNet50-LSTM", "2.0", "abc").display_name == version_label("ResNet50-LSTM", "2.0")


@pytest.mark.skipif(sys.platform == "win32", reason="source grep, POSIX paths")
def test_no_second_copy_left_in_the_core():
    core = Path(__file__).resolve().parents[1] / "training"
    offenders = []
    for p in core.rglob("*.py"):
        text = p.read_text(encoding="utf-8")
        rel = p.relative_to(core).as_posix()
        if rel != "imaging/dicom_header.py" and ('b"DICM"' in text or "[128:132]" in text):
            offenders.append(f"{rel}: DICM check")
        if rel not in ("train/segmenter_trainer.py",) and "def _write_json" in text:
            offenders.append(f"{rel}: _write_json")
    assert not offenders, offenders
