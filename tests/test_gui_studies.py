"""Studies instead of file names (issue 14), in the app (pytest-qt, offscreen):
the batch grouped by patient > study > series, identifiers hidden until asked
for, reading-order navigation, stale rows after a model switch, a DICOMDIR
built with pydicom's FileSet, and File > Export DICOM results."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from dicom_tools import dciodvfy, make_studies  # noqa: E402
from PySide6.QtCore import QModelIndex, Qt, QThreadPool  # noqa: E402

from xray_gui.batch_table import (  # noqa: E402
    COL_ACCESSION,
    COL_P,
    COL_PATH,
    COL_PATIENT,
    COL_PRED,
    COL_SERIES,
    COL_STATUS,
    COL_STUDY_DATE,
    COL_VIEW,
    ROW_ICON,
)

WAIT = 90_000


def _model(path: Path, seed: int, version: str) -> Path:
    if not path.exists():
        import torch

        from training.model.modelfile import ModelInfo, save_model
        from training.model.networks import build_model

        torch.manual_seed(seed)
        save_model(build_model("resnet50", "scratch", input_size=64),
                   ModelInfo(arch="resnet50", input_size=64, name="Study model", version=version), path)
    return path


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    return _model(base / "study_a.safetensors", 0, "1"), _model(base / "study_b.safetensors", 1, "2")


@pytest.fixture(scope="module")
def classifiers(model_files):
    from training.inference.classifier import Classifier

    return tuple(Classifier.from_file(f, device="cpu", decode_workers=1) for f in model_files)


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch, classifiers, model_files):
    monkeypatch.setenv("XRAY_SETTINGS", str(tmp_path / "settings.ini"))
    from xray_gui.main_window import MainWindow

    win = MainWindow(dialogs=False)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.models.changed, timeout=WAIT):
        win.models.use(classifiers[0], model_files[0])
    yield win
    win.close()
    assert QThreadPool.globalInstance().activeThreadCount() == 0


@pytest.fixture(scope="module")
def studies(tmp_path_factory, dicom_dir, cxr1000) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("studies")
    files = make_studies(root, dicom_dir)
    shutil.copy(sorted((cxr1000 / "Normal").glob("*.png"))[0], root / "photo.png")
    return root, files


def _run_batch(qtbot, win, paths):
    with qtbot.waitSignal(win.batch.finished, timeout=WAIT) as sig:
        win.open_batch(paths)
    assert sig.args[0] == "done"


def _all_text(model, parent=QModelIndex()) -> list[str]:
    out = []
    for r in range(model.rowCount(parent)):
        for c in range(model.columnCount()):
            out.append(str(model.index(r, c, parent).data() or ""))
        out += _all_text(model, model.index(r, 0, parent))
    return out


def _current_path(panel) -> str:
    row = panel._source_row(panel.view.currentIndex())
    return panel.model.rows[row].rel


def test_batch_is_grouped_by_patient_study_series(window, qtbot, studies):
    root, files = studies
    _run_batch(qtbot, window, [root])
    panel = window.batch_panel
    g = panel.grouped
    top = [g.index(r, 0).data() for r in range(g.rowCount())]
    # two patients (no names shown) and the PNG as a plain row
    assert top[0].startswith("Patient 1 (identifiers hidden)") and top[0].endswith("2 images")
    assert top[1].startswith("Patient 2 (identifiers hidden)") and top[1].endswith("2 images")
    assert top[2] is None and g.index(2, 1).data() == "photo.png"
    pa = g.index(0, 0)
    study_a = g.index(0, 0, pa)
    assert g.rowCount(pa) == 1 and g.rowCount(study_a) == 2  # one study, two series
    assert study_a.data().startswith("Study 2024-01-05") and "accession ACC-A1" in study_a.data()
    assert g.index(0, 0, study_a).data().startswith("Series 1 · Chest PA")
    texts = _all_text(g)
    assert not any(name in t for t in texts for name in ("Alpha", "Beta", "PA-001", "PB-002", "19600101"))
    assert panel.view.isColumnHidden(COL_PATIENT)
    # the columns tell same-named files apart and show the study facts
    series1 = g.index(0, 0, study_a)
    first = g.index(0, 0, series1)
    assert [first.siblingAtColumn(c).data() for c in (COL_STUDY_DATE, COL_ACCESSION, COL_SERIES, COL_VIEW)] == [
        "2024-01-05", "ACC-A1", "1 Chest PA", "PA"]
    # group rows keep their text height; image rows are as tall as a thumbnail row
    assert not panel.view.uniformRowHeights()
    assert panel.view.rowHeight(pa) < panel.view.rowHeight(first) >= ROW_ICON
    paths = sorted(t for t in (g.index(r, COL_PATH, p).data() for p in _image_parents(g) for r in range(g.rowCount(p)))
                   if t)
    assert "A/series1/IM0001.dcm" in paths and "B/series1/IM0001.dcm" in paths
    # identifiers on: names in the group rows and the Patient column
    window.meta_panel.show_patient.setChecked(True)
    assert g.index(0, 0).data().startswith("Alpha^Ann · ID PA-001 · born 1960-01-01")
    assert not panel.view.isColumnHidden(COL_PATIENT)
    assert first.siblingAtColumn(COL_PATIENT).data() == "Alpha^Ann (PA-001), born 1960-01-01"
    window.meta_panel.show_patient.setChecked(False)
    assert "Alpha" not in g.index(0, 0).data()
    # keyboard navigation (N / PgDown) walks the images in reading order, across groups
    panel.view.setCurrentIndex(QModelIndex())
    seen = []
    for _ in range(6):
        window.actions_by_name["next"].trigger()
        seen.append(_current_path(panel))
    assert seen == ["A/series1/IM0001.dcm", "A/series2/IM0002.dcm", "B/series1/IM0001.dcm",
                    "B/series1/IM0002.dcm", "photo.png", "photo.png"]
    window.actions_by_name["prev"].trigger()
    assert _current_path(panel) == "B/series1/IM0002.dcm"
    # sorting works inside the groups; filtering keeps the groups of the rows shown
    panel.view.sortByColumn(COL_P, Qt.SortOrder.DescendingOrder)
    assert _current_path(panel) == "B/series1/IM0002.dcm"  # the regrouping keeps the current image
    b_series = g.index(0, 0, g.index(0, 0, _patient(g, "Patient 2")))
    ps = [float(g.index(r, COL_P, b_series).data() or -1) for r in range(g.rowCount(b_series))]
    assert len(ps) == 2 and ps == sorted(ps, reverse=True)
    assert len(g.image_indexes()) == 5
    panel.filter.setCurrentText("Problems (refused, error, skipped)")
    assert all(panel.model.rows[panel._source_row(i)].problem for i in g.image_indexes())
    panel.filter.setCurrentText("All")
    assert len(g.image_indexes()) == 5
    # a group row (patient / study / series) is no one image: the viewer shows nothing then
    with qtbot.waitSignal(window.images.imageShown, timeout=60_000):
        window.actions_by_name["next"].trigger()
    assert window.viewer.has_image()
    panel.view.setCurrentIndex(g.index(0, 0))  # "Patient 1 ..."
    assert not window.viewer.has_image() and window.images.path is None


def _patient(g, prefix):
    return next(g.index(r, 0) for r in range(g.rowCount()) if str(g.index(r, 0).data()).startswith(prefix))


def _image_parents(g):
    out = []

    def walk(parent):
        for r in range(g.rowCount(parent)):
            idx = g.index(r, 0, parent)
            if g.flat_row(idx) is None:
                walk(idx)
            elif parent not in out:
                out.append(parent)

    walk(QModelIndex())
    return out


def test_results_of_a_previous_model_are_marked_stale(window, qtbot, studies, classifiers, model_files, tmp_path):
    root, _ = studies
    _run_batch(qtbot, window, [root])
    panel, m = window.batch_panel, window.batch_panel.model
    ok = [i for i, r in enumerate(m.rows) if r.status == "ok"]
    assert ok and all(not m.is_stale(m.rows[i]) for i in ok)
    before = {i: (m.rows[i].pred.label, m.rows[i].pred.threshold) for i in ok}
    with qtbot.waitSignal(window.models.changed, timeout=WAIT):
        window.models.use(classifiers[1], model_files[1])
    for i in ok:
        assert m.is_stale(m.rows[i])
        assert m.data(m.index(i, COL_PRED)).endswith("(stale)")
        assert m.data(m.index(i, COL_STATUS)).startswith("stale: computed by Study model v1")
        assert m.data(m.index(i, COL_PRED), Qt.ItemDataRole.ForegroundRole) is not None
    # the new model's threshold does not relabel the old model's results
    window.pred_panel.threshold.setValue(0.01)
    assert {i: (m.rows[i].pred.label, m.rows[i].pred.threshold) for i in ok} == before
    out = window.export_csv(tmp_path / "stale.csv")
    with open(out, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["status"] == "ok"]
    sha_a = hashlib.sha256(model_files[0].read_bytes()).hexdigest()
    assert rows and all(r["result_stale"] == "yes" and r["model"] == "Study model v1" and r["model_sha256"] == sha_a
                        for r in rows)
    # nothing stale is exported as DICOM; opening a stale row shows the current model's result instead
    assert not any(p is m.rows[i].pred for p in window.dicom_candidates() for i in ok)
    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT):
        panel.select_source_row(ok[0])
    assert window.images.pred is not m.rows[ok[0]].pred
    # classifying again with the current model clears the marks
    _run_batch(qtbot, window, [root])
    assert not any(m.is_stale(r) for r in m.rows)


def test_dicomdir_lists_studies_and_refuses_other_modalities(window, qtbot, studies, dicom_dir, tmp_path):
    from pydicom.fileset import FileSet

    _, files = studies
    fs = FileSet()
    with_meta = [f for f in files if "IM0001" in f.name or "series2" in str(f)]  # the cxr12 copy has no file meta
    for f in with_meta:
        fs.add(f)
    fs.add(dicom_dir / "other01_pydicom_CT_small.dcm")  # a CT in the same set
    media = tmp_path / "media"
    fs.write(media)
    assert (media / "DICOMDIR").is_file()
    _run_batch(qtbot, window, [media])  # dropping the folder reads its DICOMDIR
    m = window.batch_panel.model
    assert len(m.rows) == len(with_meta) + 1
    refused = [r for r in m.rows if r.status == "refused"]
    assert len(refused) == 1 and "CT" in refused[0].reason and refused[0].info.modality == "CT"
    ok = [r for r in m.rows if r.status == "ok"]
    assert len(ok) == len(with_meta) and all(r.info is not None for r in ok)
    g = window.batch_panel.grouped
    labels = [g.index(r, 0).data() for r in range(g.rowCount())]
    assert sum(t.startswith("Patient") for t in labels) == 3  # A, B and the CT's patient
    # File > Open DICOMDIR on the index file itself does the same
    _run_batch(qtbot, window, [media / "DICOMDIR"])
    assert len(window.batch_panel.model.rows) == len(with_meta) + 1


def test_export_dicom_results_from_the_table(window, qtbot, studies, model_files, tmp_path):
    import pydicom

    from training.dicom_out.sr import read_sr_values

    root, files = studies
    _run_batch(qtbot, window, [root])
    out = tmp_path / "dicom-out"
    with qtbot.waitSignal(window.dicomExported, timeout=WAIT) as sig:
        assert window.export_dicom(out)
    results = sig.args[0]
    assert len(results) == 5
    by_name = {Path(p.path).name if p.path.suffix == ".png" else str(p.path.relative_to(root)): (w, why)
               for p, w, why in results}
    w, why = by_name["photo.png"]
    assert w is None and why.startswith("DICOM export needs a DICOM source")
    sha = hashlib.sha256(model_files[0].read_bytes()).hexdigest()
    m = window.batch_panel.model
    preds = {str(r.path.relative_to(root)): r.pred for r in m.rows}
    for f in files:
        rel = str(f.relative_to(root))
        w, why = by_name[rel]
        assert w is not None, why
        for path in [w.sr] + ([w.sc] if w.sc else []):
            errors, report = dciodvfy(path)
            assert errors == [], report
        back = read_sr_values(pydicom.dcmread(w.sr))
        pred = preds[rel]
        assert back.model_sha256 == sha and back.model_version == "1"
        if pred.ok:
            assert w.sc is not None
            assert back.p_covid == pytest.approx(pred.p_covid) and back.threshold == pytest.approx(pred.threshold)
        else:
            assert back.category == "Refused" and back.reason == pred.reason


def test_export_dicom_of_a_png_says_it_needs_a_dicom_source(window, qtbot, cxr1000):
    png = sorted((cxr1000 / "COVID").glob("*.png"))[0]
    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT):
        window.open_image(png)
    with qtbot.waitSignal(window.notifier.notified, timeout=WAIT) as sig:
        window.actions_by_name["export_dicom"].trigger()  # no folder dialog: nothing could be written
    notice = sig.args[0]
    assert notice.level == "warning"
    assert notice.text.startswith("DICOM export needs a DICOM source image: this file is a PNG picture")
