"""DICOMDIR inputs (pydicom FileSet) and the study facts read from headers."""

from __future__ import annotations

import shutil

import pytest
from dicom_tools import make_studies

from training.imaging.dicomdir import find_inputs, read_dicomdir
from training.imaging.study_info import read_study_info


@pytest.fixture(scope="module")
def media(tmp_path_factory, dicom_dir):
    """A DICOMDIR written by pydicom's FileSet: two rewritten patients + a CT and a hip CR."""
    from pydicom.fileset import FileSet

    base = tmp_path_factory.mktemp("dicomdir")
    files = make_studies(base / "src", dicom_dir)
    fs = FileSet()
    for f in files[:3]:  # the cxr12 copy (files[3]) has no file meta: FileSet refuses it
        fs.add(f)
    fs.add(dicom_dir / "other01_pydicom_CT_small.dcm")
    fs.add(dicom_dir / "other03_wg04_RG2_RLE_hip.dcm")
    fs.write(base / "media")
    return base / "media"


def test_dicomdir_is_expanded_in_patient_study_series_order(media):
    contents = read_dicomdir(media / "DICOMDIR")
    assert len(contents.files) == 5 and contents.skipped == []
    assert (contents.patients, contents.studies) == (4, 4)
    infos = [read_study_info(f) for f in contents.files]
    assert {i.modality for i in infos} == {"CR", "DX", "CT"}
    files, skipped = find_inputs([media])  # the folder: its DICOMDIR, not a walk
    assert files == contents.files and skipped == []
    assert find_inputs([media / "DICOMDIR"]) == (files, [])


def test_missing_instance_and_broken_dicomdir_are_reported(media, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(media, copy)
    victim = read_dicomdir(copy / "DICOMDIR").files[0]
    victim.unlink()
    files, skipped = find_inputs([copy])
    assert len(files) == 4 and skipped == [(victim, "listed in the DICOMDIR but missing on the disc or folder")]
    (copy / "DICOMDIR").write_bytes(b"DICM broken")
    files, skipped = find_inputs([copy])
    assert skipped[0][0] == copy / "DICOMDIR" and "cannot be read" in skipped[0][1]
    assert len(files) == 4  # the folder is walked instead


def test_cli_classifies_a_dicomdir_and_refuses_other_modalities(media, tmp_path, capsys):
    import csv

    import torch

    from training.cli.classify import main
    from training.model.modelfile import ModelInfo, save_model
    from training.model.networks import build_model

    torch.manual_seed(0)
    model = save_model(build_model("resnet50", "scratch", input_size=64),
                       ModelInfo(arch="resnet50", input_size=64), tmp_path / "m.safetensors")
    out = tmp_path / "r.csv"
    assert main([str(media), "--model", str(model), "--csv", str(out), "--no-progress", "--device", "cpu",
                 "--no-lung-attention"]) == 0
    capsys.readouterr()
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5
    refused = sorted(r["reason"] for r in rows if r["status"] == "refused")
    assert any("CT" in r for r in refused) and any("HIP" in r for r in refused)
    assert sum(r["status"] == "ok" for r in rows) == 3


def test_study_info_is_none_for_pictures(cxr1000, dicom_dir):
    assert read_study_info(sorted((cxr1000 / "COVID").glob("*.png"))[0]) is None
    info = read_study_info(dicom_dir / "cxr13_wg04_RG1_J2KI_mono1.dcm")
    assert info.study_date_text == "2004-08-26" and info.view == "PA" and info.patient_id == "9RG1"
