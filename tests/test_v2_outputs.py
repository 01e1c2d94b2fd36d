"""Model v2 outputs: the DICOM SR (other pneumonia, P per class, lung
involvement), the secondary capture (three-way banner, lesion contours) and
``xray-classify`` (console, CSV columns, heatmap PNGs) with the tiny
three-class + lesion model of conftest (untrained: its numbers are random,
but every field is there)."""

from __future__ import annotations

import csv
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_tools import dciodvfy
from PIL import Image

from training.dicom_out.export import DicomExporter
from training.dicom_out.sc import LESION_CONTOUR_RGB
from training.dicom_out.sr import LUNG_INVOLVEMENT_METHOD, NOT_COVID_PATTERN, read_sr_values
from training.imaging.loading import load_image
from training.inference.classifier import Classifier
from training.inference.result import CATEGORY_PNEUMONIA, CSV_COLUMNS, PNEUMONIA, Prediction
from training.model.audit import ModelStamp

STAMP = ModelStamp("ResNet50-LSTM v2 test", "2", "ab12" * 16)
SOURCE = "cxr01_rsna_normal-2_jpegbaseline.dcm"
PROBS = {"Normal": 0.15, "COVID": 0.12, "Pneumonia": 0.73}


@pytest.fixture(scope="module")
def v2_classifier(tiny_v2_model):
    return Classifier.from_file(tiny_v2_model, device="cpu")


def _read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


def _heat(shape) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-(((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 3) / (w / 5)) ** 2)).astype(np.float32)


def _disc_lesion(size: int = 64) -> np.ndarray:
    """A lesion map (uint8, as ``Prediction.lesion_u8``): a disc of P 1 in the upper left quarter."""
    yy, xx = np.mgrid[0:size, 0:size]
    return np.where((yy - size * 0.3) ** 2 + (xx - size * 0.3) ** 2 <= (size * 0.15) ** 2, 255, 0).astype(np.uint8)


def _items(seq):
    return {(str(i.ConceptNameCodeSequence[0].CodingSchemeDesignator), str(i.ConceptNameCodeSequence[0].CodeValue)): i
            for i in seq if "ConceptNameCodeSequence" in i}


def _exporter(tmp_path) -> DicomExporter:
    return DicomExporter(tmp_path / "out", STAMP, operating_points={"balanced": 0.3}, default_threshold=0.3)


def _lesion_px(picture: np.ndarray) -> int:
    return int(np.all(picture == np.array(LESION_CONTOUR_RGB, dtype=np.uint8), axis=-1).sum())


def test_sr_and_sc_of_other_pneumonia(v2_classifier, dicom_dir, tmp_path):
    """A classified DICOM relabelled "Pneumonia": SR with SNOMED CT Pneumonia, the
    "not a COVID-19 pattern" note, P per class and lung involvement; an SC with the
    lesion contours; both valid for dciodvfy."""
    src = dicom_dir / SOURCE
    img = load_image(src)
    pred = v2_classifier.predict_image(img, enforce_gate=False)
    assert pred.ok and pred.has_lesion_map and set(pred.probs) == {"Normal", "COVID", PNEUMONIA}
    pred.label, pred.probs, pred.p_covid, pred.band, pred.valid = PNEUMONIA, dict(PROBS), PROBS["COVID"], None, True
    pred.lung_involvement = 0.2345
    pred.lesion_u8, pred.input_box = _disc_lesion(), None  # a known lesion: its contour must be in the SC

    written = _exporter(tmp_path).export(pred, pixels=img.pixels, heatmap=_heat(img.pixels.shape))
    assert written.category == CATEGORY_PNEUMONIA and written.sc is not None
    for path in (written.sr, written.sc):
        errors, report = dciodvfy(path)
        assert errors == [], report

    sr = _read(written.sr)
    back = read_sr_values(sr)
    assert back.category == CATEGORY_PNEUMONIA and back.finding == CATEGORY_PNEUMONIA
    assert back.pattern == NOT_COVID_PATTERN
    assert back.p_covid == pytest.approx(0.12) and back.p_normal == pytest.approx(0.15)
    assert back.p_pneumonia == pytest.approx(0.73) and back.lung_involvement == pytest.approx(0.2345, abs=1e-6)
    items = _items(sr.ContentSequence)
    for key in (("99CXRAI", "RC"), ("DCM", "121071")):  # result category and finding: SNOMED CT Pneumonia
        code = items[key].ConceptCodeSequence[0]
        assert (code.CodingSchemeDesignator, code.CodeValue, code.CodeMeaning) == ("SCT", "233604007", "Pneumonia")
    pattern = _items(items[("DCM", "121071")].ContentSequence)[("99CXRAI", "PATTERN")]
    assert pattern.RelationshipType == "HAS PROPERTIES" and "not a COVID-19 pattern" in pattern.TextValue
    involvement = items[("99CXRAI", "LUNGINV")]
    measured = involvement.MeasuredValueSequence[0]
    assert float(measured.NumericValue) == pytest.approx(23.45)
    unit = measured.MeasurementUnitsCodeSequence[0]
    assert (unit.CodingSchemeDesignator, unit.CodeValue) == ("UCUM", "%")
    method = _items(involvement.ContentSequence)[("SCT", "370129005")]
    assert method.RelationshipType == "HAS CONCEPT MOD" and method.TextValue == LUNG_INVOLVEMENT_METHOD
    assert "P >= 0.5" in method.TextValue and "lungs" in method.TextValue
    for key in (("99CXRAI", "PNORMAL"), ("99CXRAI", "PPNEUMONIA"), ("99CXRAI", "PCOVID")):
        assert items[key].MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "1"

    sc = _read(written.sc)
    assert "lesion-map contours" in sc.DerivationDescription
    assert _lesion_px(sc.pixel_array) > 50  # the disc's contour, burned in

    # the same result without a lesion map: no contours, no lung involvement in the SR
    pred.lesion_u8, pred.lung_involvement = None, None
    again = _exporter(tmp_path / "b").export(pred, pixels=img.pixels, heatmap=_heat(img.pixels.shape))
    assert _lesion_px(_read(again.sc).pixel_array) == 0
    assert ("99CXRAI", "LUNGINV") not in _items(_read(again.sr).ContentSequence)


@pytest.mark.parametrize("label, probs, category, finding", [
    ("Normal", {"Normal": 0.7, "COVID": 0.1, "Pneumonia": 0.2}, "Normal", "Normal"),
    ("COVID", {"Normal": 0.2, "COVID": 0.3, "Pneumonia": 0.5}, "Indeterminate", ""),  # in the band 0.2-0.45
])
def test_three_class_sr_without_a_pneumonia_verdict(label, probs, category, finding, dicom_dir, tmp_path):
    src = dicom_dir / SOURCE
    pred = Prediction(path=src, status="ok", label=label, p_covid=probs["COVID"], threshold=0.3, probs=probs,
                      meta=load_image(src).meta, suitability="suitable", band=(0.2, 0.45), lung_involvement=0.0)
    written = _exporter(tmp_path).export(pred)
    errors, report = dciodvfy(written.sr)
    assert errors == [], report
    back = read_sr_values(_read(written.sr))
    assert (back.category, back.finding, back.pattern) == (category, finding, "")
    assert back.p_normal == pytest.approx(probs["Normal"]) and back.p_pneumonia == pytest.approx(probs["Pneumonia"])
    assert back.lung_involvement == 0.0


def test_binary_sr_has_no_v2_items(dicom_dir, tmp_path):
    src = dicom_dir / SOURCE
    pred = Prediction(path=src, status="ok", label="COVID", p_covid=0.8, threshold=0.3, meta=load_image(src).meta,
                      probs={"COVID": 0.8, "Normal": 0.2}, suitability="suitable")
    sr = _read(_exporter(tmp_path).export(pred).sr)
    keys = set(_items(sr.ContentSequence))
    assert ("99CXRAI", "PCOVID") in keys
    assert not keys & {("99CXRAI", "PNORMAL"), ("99CXRAI", "PPNEUMONIA"), ("99CXRAI", "LUNGINV")}
    back = read_sr_values(sr)
    assert (back.p_normal, back.p_pneumonia, back.lung_involvement) == (None, None, None)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_cli_v2_csv_console_heatmaps_and_dicom(tiny_v2_model, data_dir, dicom_dir, tmp_path, capsys):
    from training.cli.classify import V2_HEADER, build_parser, main

    three = data_dir / "cxr-infection-3class"
    scans = tmp_path / "scans"
    scans.mkdir()
    for cls in ("COVID", "Normal", "Pneumonia"):
        shutil.copy(sorted((three / cls / "images").glob("*.png"))[0], scans / f"{cls}.png")
    shutil.copy(dicom_dir / "cxr07_nih_udacity_test1_nofinding.dcm", scans / "chest.dcm")
    out_csv, heat, dicom_out = tmp_path / "r.csv", tmp_path / "heat", tmp_path / "dicom"
    rc = main([str(scans), "--model", str(tiny_v2_model), "--csv", str(out_csv), "--heatmaps", str(heat),
               "--dicom-out", str(dicom_out), "--device", "cpu", "--no-progress", "--no-lung-attention"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "classes Normal / COVID / Pneumonia; lesion map" in cap.err

    rows = _rows(out_csv)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows), rows
    with open(out_csv, encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
    assert header[:len(CSV_COLUMNS)] == list(CSV_COLUMNS)
    for r in rows:
        p = [float(r[k]) for k in ("p_covid", "p_normal", "p_pneumonia")]
        assert sum(p) == pytest.approx(1.0, abs=1e-4) and all(0.0 <= v <= 1.0 for v in p)
        assert 0.0 <= float(r["lung_involvement"]) <= 1.0
        assert r["result"]  # the three-way verdict (or Indeterminate)
        png = np.asarray(Image.open(r["heatmap"]).convert("RGB"))
        if float(r["lung_involvement"]) > 0:
            assert _lesion_px(png) > 0, r["heatmap"]  # lesion contours on the heatmap PNG

    lines = [ln.split("\t") for ln in cap.out.splitlines() if ln]
    assert "\t".join(lines[0]) == V2_HEADER and len(lines) == 5
    by_path = {ln[6]: ln for ln in lines[1:]}
    for r in rows:
        ln = by_path[r["path"]]
        assert ln[1] == r["result"] and ln[3] == f"{float(r['p_normal']):.4f}"
        assert ln[4] == f"{float(r['p_pneumonia']):.4f}"
        assert ln[5] == f"{100 * float(r['lung_involvement']):.1f}%"

    dcm_row = next(r for r in rows if r["path"].endswith("chest.dcm"))
    sr = _read(dcm_row["dicom_sr"])
    back = read_sr_values(sr)
    assert back.p_normal == pytest.approx(float(dcm_row["p_normal"]), abs=1e-6)
    assert back.p_pneumonia == pytest.approx(float(dcm_row["p_pneumonia"]), abs=1e-6)
    assert back.lung_involvement == pytest.approx(float(dcm_row["lung_involvement"]), abs=1e-3)
    scs = sorted(dicom_out.glob("*_SC.dcm"))
    assert len(scs) == 1
    for path in (Path(dcm_row["dicom_sr"]), scs[0]):
        errors, report = dciodvfy(path)
        assert errors == [], report

    csv_help = next(a.help for a in build_parser()._actions if "--csv" in a.option_strings)
    assert "atomically at the end" not in csv_help and "row" in csv_help and ".partial" in csv_help
