"""The app and the chest-radiograph gate ("Know what it is looking at"):
refusals with "Classify anyway" (result not valid, no verdict), inverted
images, the lung outline, the heatmap's share inside the lungs and gate
refusals in a batch.  pytest-qt, offscreen; the shipped classifier and lung
segmenter, loaded once per module; no sleeps, only signals and waitUntil."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("superqt")

from PySide6.QtCore import Qt, QThreadPool  # noqa: E402

from xray_gui.batch_table import COL_LUNGS, COL_STATUS  # noqa: E402

WAIT = 60_000  # ms; generous for 2 shared CPU cores


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def shipped():
    """(classifier, model path): the shipped model with the shipped gate."""
    from training.common.resources import default_model_path
    from training.inference.classifier import Classifier

    path = default_model_path()
    if path is None:
        pytest.skip("no shipped model installed")
    clf = Classifier.from_file(path, device="cpu", decode_workers=1)
    if clf.gate is None:
        pytest.skip("no lung segmenter installed")
    return clf, path


@pytest.fixture(scope="module")
def calibrated(shipped):
    """The shipped classifier, when its gate is calibrated (it refuses non-chest images)."""
    clf, _ = shipped
    if not clf.gate.calibrated:
        pytest.skip("the shipped lung segmenter has no calibrated gate yet")
    return clf


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch, shipped):
    from xray_gui.main_window import MainWindow

    monkeypatch.setenv("XRAY_SETTINGS", str(tmp_path / "settings.ini"))
    clf, path = shipped
    clf.threshold = clf.info.threshold
    win = MainWindow(dialogs=False)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.models.changed, timeout=WAIT):
        win.models.use(clf, path)
    yield win
    win.close()
    assert QThreadPool.globalInstance().activeThreadCount() == 0


@pytest.fixture(scope="module")
def photo(data_dir) -> Path:
    p = data_dir / "not-cxr-dev" / "photo_natural__horses.jpg"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return p


@pytest.fixture(scope="module")
def normals(data_dir) -> list[Path]:
    files = sorted((data_dir / "external-dev" / "Normal").glob("*.png"))[:2]
    if len(files) < 2:
        pytest.skip("external-dev/Normal not found")
    return files


def _plain(content) -> str:
    from xray_gui.report_pdf import build_document

    return build_document(content).toPlainText()


# ------------------------------------------------------------------ single images
def test_photo_is_refused_and_classify_anyway_is_not_valid(window, qtbot, calibrated, photo, tmp_path):
    from training.gate.notes import REFUSAL_PREFIX

    panel = window.pred_panel
    with qtbot.waitSignal(window.images.refusalShown, timeout=WAIT) as sig:
        window.open_image(photo)
    assert sig.args[0].startswith(REFUSAL_PREFIX)
    assert window.viewer.has_image()  # the refused image is still shown
    assert panel.refusal.isVisible() and REFUSAL_PREFIX in panel.refusal_text.text()
    assert panel.classify_anyway.isVisible()
    assert panel.label.text() == "—" and window.images.pred is None
    assert window.notifier.history[-1].level == "warning"
    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT) as pred_sig:
        panel.classify_anyway.click()
    pred = pred_sig.args[0]
    assert pred.status == "ok" and not pred.valid and not pred.verdict
    assert panel.label.text() == "Not valid" and panel.label.text() not in ("COVID", "Normal")
    assert "not valid" in panel.p_text.text() and f"{pred.p_covid:.3f}" in panel.p_text.text()
    assert not panel.refusal.isVisible()
    assert panel.warnings.isVisible() and "Classified anyway" in panel.warnings.text()
    # the threshold relabels the hidden label only: still no verdict
    panel.threshold.setValue(0.01)
    assert panel.label.text() == "Not valid"
    panel.reset_threshold.click()
    # the PDF report states that the result is not valid, without a verdict
    out = tmp_path / "photo.pdf"
    with qtbot.waitSignal(window.reportWritten, timeout=WAIT):
        window.export_report(out)
    assert out.read_bytes()[:4] == b"%PDF"
    from xray_gui.image_controller import report_content

    content = report_content(window.images, patient=None)
    assert content.valid is False
    text = _plain(content)
    assert "Not valid" in text and "(not valid)" in text
    # the footnote follows the model's calibration status (the shipped model is calibrated)
    assert content.calibrated and "calibrated on its validation split" in text
    from dataclasses import replace

    assert "not a calibrated probability" in _plain(replace(content, calibrated=False))
    lines = [ln.strip() for ln in text.splitlines()]
    assert "COVID" not in lines and "Normal" not in lines


def test_header_refusal_then_gate_refusal_each_overridden(window, qtbot, calibrated, data_dir):
    ct = data_dir / "not-cxr-dev" / "ct_slice__CT1_JLSN.dcm"
    if not ct.is_file():
        pytest.skip(f"{ct} not found")
    panel = window.pred_panel
    with qtbot.waitSignal(window.images.refusalShown, timeout=WAIT) as sig:
        window.open_image(ct)
    assert "CT" in sig.args[0] or "modality" in sig.args[0].lower()  # the DICOM header first
    with qtbot.waitSignal(window.images.refusalShown, timeout=WAIT) as sig:
        panel.classify_anyway.click()
    assert sig.args[0].startswith("This does not look like a frontal chest radiograph")  # then the gate
    assert panel.classify_anyway.isVisible()
    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT) as pred_sig:
        panel.classify_anyway.click()
    assert not pred_sig.args[0].valid and panel.label.text() == "Not valid"


def test_chest_xray_gets_a_verdict_lung_share_and_outline(window, qtbot, normals):
    panel, viewer = window.pred_panel, window.viewer
    window.images.set_heat_for_normal(True)  # a Normal result's heatmap is hidden by default
    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT) as pred_sig, \
            qtbot.waitSignal(window.images.heatmapShown, timeout=WAIT):
        window.open_image(normals[0])
    pred = pred_sig.args[0]
    assert pred.verdict and pred.suitability in ("suitable", "warning")
    assert panel.label.text() in ("COVID", "Normal") and not panel.refusal.isVisible()
    assert pred.lung_mask is not None
    # the heatmap's share inside the lungs, computed with the heatmap (in its worker)
    qtbot.waitUntil(lambda: panel.lung_share.text() != "", timeout=WAIT)
    assert pred.heat_in_lungs is not None
    assert panel.lung_share.text().startswith(f"Heatmap inside the lungs: {pred.heat_in_lungs * 100:.0f} %")
    from xray_gui.image_controller import report_content

    assert "Heatmap inside the lungs" in _plain(report_content(window.images, patient=None))
    # the lung outline: off by default, View action and checkbox in step, remembered
    act = window.actions_by_name["lung_outline"]
    assert not act.isChecked() and not panel.lung_outline.isChecked() and not viewer.outline_visible()
    act.trigger()
    assert act.isChecked() and panel.lung_outline.isChecked() and viewer.outline_visible()
    assert window.settings.show_lung_outline is True
    box = viewer._outline.path().boundingRect()
    h, w = window.images.image.pixels.shape
    assert 0 <= box.left() < box.right() <= w and 0 <= box.top() < box.bottom() <= h
    assert box.width() > w / 4 and box.height() > h / 4  # two lungs, not a speck
    panel.lung_outline.setChecked(False)
    assert not act.isChecked() and not viewer.outline_visible()
    assert window.settings.show_lung_outline is False


def test_inverted_chest_xray_is_shown_inverted_back_with_the_note(window, qtbot, calibrated, normals, tmp_path):
    from PIL import Image

    from training.gate.notes import INVERTED_NOTE

    img = np.asarray(Image.open(normals[0]).convert("L"))
    neg = tmp_path / "negative.png"
    Image.fromarray(255 - img).save(neg)
    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT) as pred_sig:
        window.open_image(neg)
    pred = pred_sig.args[0]
    assert pred.inverted and pred.verdict
    assert window.pred_panel.warnings.isVisible() and INVERTED_NOTE in window.pred_panel.warnings.text()
    shown = window.images.display.pixels()
    assert np.allclose(shown, 1.0 - window.images.image.pixels, atol=1e-6)  # the corrected image
    window.meta_panel.invert.setChecked(True)  # the user's Invert still works on top
    assert np.allclose(window.images.display.pixels(), window.images.image.pixels, atol=1e-6)


# ------------------------------------------------------------------ batch
def test_batch_shows_gate_refusal_as_red_row_and_lung_share(window, qtbot, calibrated, photo, normals, tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    for f in (photo, *normals):
        shutil.copy(f, d / f.name)
    with qtbot.waitSignal(window.batch.finished, timeout=WAIT) as sig:
        window.open_batch([d])
    assert sig.args[0] == "done"
    m = window.batch_panel.model
    rows = {r.path.name: r for r in m.rows}
    bad = rows[photo.name]
    assert bad.status == "refused" and bad.pred.code == "not_chest_xray"
    assert bad.reason.startswith("This does not look like a frontal chest radiograph")
    i = m.rows.index(bad)
    assert m.data(m.index(i, 0), Qt.ItemDataRole.BackgroundRole) is not None  # red row
    assert bad.reason in m.data(m.index(i, COL_STATUS)) and bad.thumb is not None
    for f in normals:
        r = rows[f.name]
        assert r.status == "ok" and r.pred.heat_in_lungs is not None
        j = m.rows.index(r)
        assert m.data(m.index(j, COL_LUNGS)) == f"{r.pred.heat_in_lungs * 100:.0f} %"
    out = window.export_csv(tmp_path / "results.csv")
    with open(out, newline="", encoding="utf-8") as fh:
        table = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    assert table[photo.name]["suitability"] == "refused" and table[photo.name]["status"] == "refused"
    assert all(table[f.name]["suitability"] in ("suitable", "warning") for f in normals)
    assert all(float(table[f.name]["heatmap_in_lungs"]) == pytest.approx(rows[f.name].pred.heat_in_lungs,
                                                                         abs=1e-3) for f in normals)
    # a classified row shown in the viewer gets its lung outline (the batch keeps no mask)
    window.pred_panel.lung_outline.setChecked(True)
    j = m.rows.index(rows[normals[0].name])
    window.batch_panel.view.selectRow(window.batch_panel.proxy.mapFromSource(m.index(j, 1)).row())
    qtbot.waitUntil(lambda: window.viewer.outline_visible(), timeout=WAIT)
    assert window.images.pred is rows[normals[0].name].pred
    assert window.pred_panel.lung_share.text().startswith("Heatmap inside the lungs")
