"""DICOM results out (issue 14): Comprehensive SR + heatmap secondary capture
per result, built with highdicom, validated by dciodvfy, read back with pydicom."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
from dicom_tools import dciodvfy

from training.dicom_out.export import DicomExporter
from training.dicom_out.source import NEEDS_DICOM_SOURCE, DicomExportRefused, source_header
from training.dicom_out.sr import RESEARCH_STATEMENT, read_sr_values
from training.dicom_out.uids import UID_ROOT, is_project_uid, new_uid
from training.imaging.loading import load_image
from training.inference.result import CATEGORIES, Prediction, result_category
from training.model.audit import ModelStamp

STAMP = ModelStamp("ResNet50-LSTM", "3", "c0ffee" * 10 + "abcd")
SOURCES = ("cxr01_rsna_normal-2_jpegbaseline.dcm", "cxr12_barre_CR-MONO1-10-chest_nometa.dcm",
           "cxr15_dx_966fixed_j2kr_mono1.dcm")


def _heat(shape) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-(((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 3) / (w / 5)) ** 2)).astype(np.float32)


def _pred(path, meta, **kw) -> Prediction:
    base = dict(path=path, status="ok", label="COVID", p_covid=0.8312, threshold=0.211, meta=meta,
                warnings=["AP view (often a portable film): image quality and heart size differ from PA."],
                suitability="suitable", heat_in_lungs=0.6234)
    base.update(kw)
    return Prediction(**base)


def _exporter(tmp_path) -> DicomExporter:
    return DicomExporter(tmp_path / "out", STAMP, operating_points={"sensitivity_95": 0.211}, default_threshold=0.211)


def _read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


@pytest.mark.parametrize("name", SOURCES)
def test_sr_and_sc_validate_reference_the_source_and_round_trip(name, dicom_dir, tmp_path):
    src_path = dicom_dir / name
    img = load_image(src_path)
    pred = _pred(src_path, img.meta)
    written = _exporter(tmp_path).export(pred, pixels=img.pixels, heatmap=_heat(img.pixels.shape))
    for path in (written.sr, written.sc):
        errors, report = dciodvfy(path)
        assert errors == [], report
    src = _read(src_path)
    sr, sc = _read(written.sr), _read(written.sc)
    # same patient and study, new series, project UIDs
    for ds in (sr, sc):
        assert ds.StudyInstanceUID == src.StudyInstanceUID
        assert str(ds.get("PatientID", "")) == str(src.get("PatientID", ""))
        assert str(ds.get("PatientName", "")) == str(src.get("PatientName", ""))
        assert ds.SeriesInstanceUID != src.SeriesInstanceUID and is_project_uid(ds.SeriesInstanceUID)
        assert is_project_uid(ds.SOPInstanceUID)
    assert sr.SeriesInstanceUID != sc.SeriesInstanceUID
    assert sr.Modality == "SR" and sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.BurnedInAnnotation == "YES"
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert sc.pixel_array.shape[2] == 3 and sc.pixel_array.dtype == np.uint8
    # the SR points at the source image (study, series, instance) and at the SC
    evidence = {(s.SeriesInstanceUID, i.ReferencedSOPInstanceUID)
                for s in sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
                for i in s.ReferencedSOPSequence}
    assert sr.CurrentRequestedProcedureEvidenceSequence[0].StudyInstanceUID == src.StudyInstanceUID
    assert (src.SeriesInstanceUID, src.SOPInstanceUID) in evidence
    assert (sc.SeriesInstanceUID, sc.SOPInstanceUID) in evidence
    # values equal the app's result
    back = read_sr_values(sr)
    assert back.category == "COVID-19" and back.finding == "COVID-19"
    assert back.p_covid == pytest.approx(pred.p_covid) and back.threshold == pytest.approx(pred.threshold)
    assert back.operating_point.startswith("sensitivity_95")
    assert back.suitability == "suitable" and back.heat_in_lungs == pytest.approx(pred.heat_in_lungs, abs=1e-6)
    assert back.warnings == pred.warnings and back.reason == ""
    assert (back.model_name, back.model_version, back.model_sha256) == (STAMP.name, STAMP.version, STAMP.sha256)
    assert back.app_version == STAMP.app_version
    assert RESEARCH_STATEMENT in [str(i.TextValue) for i in sr.ContentSequence if i.ValueType == "TEXT"]
    codes = {(i.ConceptNameCodeSequence[0].CodeValue, i.ConceptCodeSequence[0].CodeValue)
             for i in sr.ContentSequence if i.ValueType == "CODE"}
    assert ("121071", "840539006") in codes  # DCM Finding = SNOMED CT COVID-19


@pytest.mark.parametrize("kw, category, finding", [
    (dict(label="Normal", p_covid=0.1), "Normal", "Normal"),
    (dict(label="COVID", valid=False, suitability="refused"), "Not valid", ""),
    (dict(label="COVID", p_covid=0.3, band=(0.2, 0.4)), "Indeterminate", ""),
    (dict(status="refused", label=None, p_covid=None, code="not_chest_xray", suitability="refused",
          reason="This does not look like a frontal chest radiograph: it is a colour picture.",
          heat_in_lungs=None), "Refused", ""),
])
def test_every_result_category_gets_a_valid_sr(kw, category, finding, dicom_dir, tmp_path):
    src_path = dicom_dir / SOURCES[0]
    pred = _pred(src_path, load_image(src_path).meta, **kw)
    assert result_category(pred) == category and category in CATEGORIES
    written = _exporter(tmp_path).export(pred)  # no heatmap given: SR only
    assert written.sc is None and written.category == category
    errors, report = dciodvfy(written.sr)
    assert errors == [], report
    back = read_sr_values(_read(written.sr))
    assert back.category == category and back.finding == finding
    assert back.reason == pred.reason
    assert back.p_covid == (None if pred.p_covid is None else pytest.approx(pred.p_covid))


def test_png_source_is_refused_with_a_clear_note(cxr1000, tmp_path):
    png = sorted((cxr1000 / "COVID").glob("*.png"))[0]
    pred = _pred(png, load_image(png).meta)
    with pytest.raises(DicomExportRefused) as err:
        _exporter(tmp_path).export(pred)
    assert err.value.reason == NEEDS_DICOM_SOURCE.format(kind="PNG")
    assert "DICOM export needs a DICOM source" in err.value.reason
    assert list((tmp_path / "out").iterdir()) == []


def test_source_without_valid_uids_is_refused(dicom_dir, tmp_path):
    # other04's SOP Instance UID has a leading zero in a component: not a legal UID, cannot be referenced
    with pytest.raises(DicomExportRefused, match="SOPInstanceUID"):
        source_header(dicom_dir / "other04_fodicom_CR-ModalityLUT_teeth_jpegll.dcm")


def test_sloppy_source_values_are_made_legal_without_touching_uids(dicom_dir):
    src = dicom_dir / "cxr15_dx_966fixed_j2kr_mono1.dcm"  # 56-character accession number, hash as birth date
    header = source_header(src)
    raw = _read(src)
    assert len(header.AccessionNumber) <= 16 and header.PatientBirthDate == ""
    assert (header.StudyInstanceUID, header.SOPInstanceUID) == (raw.StudyInstanceUID, raw.SOPInstanceUID)


def test_series_per_study_and_atomic_names(dicom_dir, tmp_path):
    ex = _exporter(tmp_path)
    src_path = dicom_dir / SOURCES[0]
    meta = load_image(src_path).meta
    a, b = ex.export(_pred(src_path, meta)), ex.export(_pred(src_path, meta, label="Normal", p_covid=0.1))
    ra, rb = _read(a.sr), _read(b.sr)
    assert ra.SeriesInstanceUID == rb.SeriesInstanceUID and (ra.InstanceNumber, rb.InstanceNumber) == (1, 2)
    assert a.sr != b.sr and ra.SOPInstanceUID != rb.SOPInstanceUID
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([a.sr.name, b.sr.name])  # no temp files


def test_uid_root_is_stable_and_uids_are_legal():
    import uuid

    assert UID_ROOT == "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                "urn:project:covid-cxr-assistant:dicom-uid-root").int)
    uids = {new_uid() for _ in range(200)}
    assert len(uids) == 200
    assert all(len(u) <= 64 and pydicom.uid.UID(u).is_valid and is_project_uid(u) for u in uids)


def test_missing_validator_fails_in_ci_and_skips_elsewhere(monkeypatch):
    import dicom_tools

    monkeypatch.setattr(dicom_tools.shutil, "which", lambda _name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="dicom3tools"):
        dicom_tools.require_dciodvfy()
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="dicom3tools"):
        dicom_tools.require_dciodvfy()
