"""The desktop app (pytest-qt, offscreen): single images, batches, cancel,
exports, model files, settings.  One tiny ResNet50-LSTM (64 px input) is
built per session and shared; no sleeps, only signals and waitUntil."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("superqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QThreadPool, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from xray_gui.batch_table import COL_STATUS  # noqa: E402

WAIT = 60_000  # ms; generous for 2 shared CPU cores


# ------------------------------------------------------------------ fixtures
def tiny_model_file(tmp_path_factory) -> Path:
    """A randomly initialised ResNet50-LSTM with 64 px input, made once per session."""
    path = tmp_path_factory.getbasetemp() / "gui_tiny64.safetensors"
    if not path.exists():
        import torch

        from training.model.modelfile import ModelInfo, save_model
        from training.model.networks import build_model

        torch.manual_seed(0)
        save_model(build_model("resnet50_lstm"), ModelInfo(arch="resnet50_lstm", input_size=64, name="Test model",
                                                           version="7"), path)
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return tiny_model_file(tmp_path_factory)


@pytest.fixture(scope="module")
def classifier(model_file):
    from training.inference.classifier import Classifier

    return Classifier.from_file(model_file, device="cpu", decode_workers=1)


@pytest.fixture
def settings_file(tmp_path, monkeypatch) -> Path:
    ini = tmp_path / "settings.ini"
    monkeypatch.setenv("XRAY_SETTINGS", str(ini))
    return ini


def _make_window(qtbot):
    from xray_gui.main_window import MainWindow

    win = MainWindow(dialogs=False)
    qtbot.addWidget(win)
    win.show()
    return win


@pytest.fixture
def window(qtbot, settings_file, classifier, model_file):
    """A window with the tiny model already loaded (adopted, not re-read)."""
    classifier.threshold = classifier.info.threshold
    classifier.batch_size = 16
    win = _make_window(qtbot)
    with qtbot.waitSignal(win.models.changed, timeout=WAIT):
        win.models.use(classifier, model_file)
    win.images.set_heat_for_normal(True)  # the tiny model's verdicts are random: always show the heatmap
    yield win
    win.close()
    assert QThreadPool.globalInstance().activeThreadCount() == 0


@pytest.fixture(scope="module")
def png(cxr1000) -> Path:
    return sorted((cxr1000 / "COVID").glob("*.png"))[0]


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory, cxr1000, dicom_dir) -> Path:
    """4 good PNGs (one in a subfolder), a truncated PNG, a CT DICOM, a text file."""
    d = tmp_path_factory.mktemp("mixed")
    (d / "sub").mkdir()
    pngs = sorted((cxr1000 / "Normal").glob("*.png"))[:4]
    for p in pngs[:3]:
        shutil.copy(p, d / p.name)
    shutil.copy(pngs[3], d / "sub" / pngs[3].name)
    (d / "sub" / "broken.png").write_bytes(pngs[0].read_bytes()[:2000])
    shutil.copy(dicom_dir / "cxr11_nih_udacity_test5_modality-CT.dcm", d / "ct.dcm")
    (d / "notes.txt").write_text("not an image")
    return d


def _wait_batch(qtbot, win, start):
    with qtbot.waitSignal(win.batch.finished, timeout=WAIT) as blocker:
        start()
    return blocker.args[0]


# ------------------------------------------------------------------ single images
def test_window_without_a_model_says_no_model(qtbot, settings_file, monkeypatch, tmp_path):
    monkeypatch.setenv("XRAY_RESOURCES", str(tmp_path))  # no shipped model
    win = _make_window(qtbot)
    win.start_model(None)
    assert "no model loaded" in win.model_status.text()
    assert "no model loaded" in win.pred_panel.model_text.text().lower()
    from PySide6.QtWidgets import QLabel

    assert "Research use only" in " ".join(w.text() for w in win.statusBar().findChildren(QLabel))
    win.close()


def test_open_png_shows_prediction_and_heatmap(window, qtbot, png):
    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT) as pred_sig, \
            qtbot.waitSignal(window.images.heatmapShown, timeout=WAIT):
        window.open_image(png)
    pred = pred_sig.args[0]
    assert pred.status == "ok" and 0.0 <= pred.p_covid <= 1.0
    assert window.pred_panel.label.text() in ("COVID", "Normal")
    assert f"{pred.p_covid:.3f}" in window.pred_panel.p_text.text()
    assert window.viewer.has_image() and window.viewer.overlay_visible()
    heat, colour = window.images.heatmap()
    import gc

    assert gc.get_freeze_count() > 0  # the model's load moved the long-lived objects out of the collector's way
    from training.inference.explain import colour_layer_size

    # the map is kept at the colour layer's size: the image's, up to 1024 px on the long side
    assert heat.shape == colour_layer_size(window.images.image.pixels.shape) and colour.width() == heat.shape[1]
    # toggling the heatmap off and on uses the cache (no new worker)
    qtbot.waitUntil(lambda: not window.jobs.running("heatmap"), timeout=WAIT)
    window.actions_by_name["heatmap"].trigger()
    assert not window.viewer.overlay_visible()
    window.actions_by_name["heatmap"].trigger()
    assert window.viewer.overlay_visible() and not window.jobs.running("heatmap")
    assert str(png) in window.settings.recent_files


def test_threshold_relabels_without_running_the_model(window, qtbot, png, monkeypatch):
    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT) as sig:
        window.open_image(png)
    p = sig.args[0].p_covid
    calls = []
    monkeypatch.setattr(window.models.classifier, "predict_arrays", lambda *a, **k: calls.append(a))
    window.pred_panel.threshold.setValue(min(0.999, p + 0.01))
    assert window.pred_panel.label.text() == "Normal"
    window.pred_panel.threshold.setValue(max(0.001, p - 0.01))
    assert window.pred_panel.label.text() == "COVID"
    assert calls == [] and not window.jobs.running("predict")
    assert window.settings.threshold_for(str(window.models.path)) == pytest.approx(max(0.001, p - 0.01), abs=1e-3)
    window.pred_panel.reset_threshold.click()
    assert window.models.classifier.threshold == pytest.approx(0.5)


def test_open_dicom_shows_metadata_window_level_and_hidden_patient(window, qtbot, dicom_dir):
    with qtbot.waitSignal(window.images.heatmapShown, timeout=WAIT):
        window.open_image(dicom_dir / "cxr01_rsna_normal-2_jpegbaseline.dcm")
    mp = window.meta_panel
    assert mp.values["modality"].text() == "CR"
    assert mp.values["kind"].text() == "DICOM"
    assert "JPEG" in mp.values["transfer_syntax"].text()
    assert mp.preset.isEnabled()
    # identifiers hidden until asked for
    assert not mp.show_patient.isChecked() and mp.patient.text() in ("hidden", "none recorded")
    if mp.patient_items():
        mp.show_patient.setChecked(True)
        assert mp.patient.text() not in ("hidden", "none recorded")
    # window/level: a right-drag changes the displayed pixels, not the prediction
    before = window.images.display.pixels().copy()
    pred = window.images.pred
    window.images.window_drag(40.0, 25.0)
    qtbot.waitUntil(lambda: "Level" in mp.window_now.text(), timeout=WAIT)
    assert window.images.display.windowed
    assert (window.images.display.pixels() != before).any()
    assert window.images.pred is pred
    mp.preset.activated.emit(0)  # "File default"
    assert not window.images.display.windowed


def test_the_heatmap_comes_from_the_classification_pass(window, qtbot, png, classifier, monkeypatch):
    """The prediction keeps Grad-CAM from its own pass; the heatmap layer places it (no second model
    run) and it is the map ``explain.gradcam`` computes for the same pixels."""
    import numpy as np

    import training.inference.explain as explain

    calls = []
    real = explain.gradcam
    monkeypatch.setattr(explain, "gradcam", lambda *a, **k: calls.append(1) or real(*a, **k))
    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT) as pred_sig, \
            qtbot.waitSignal(window.images.heatmapShown, timeout=WAIT):
        window.open_image(png)
    pred = pred_sig.args[0]
    assert pred.heat_input is not None and calls == []
    heat, _ = window.images.heatmap()
    pixels = window.images.image.pixels
    if pred.inverted:
        pixels = 1.0 - pixels
    assert np.abs(heat - real(classifier, pixels, pred.lung_mask)).max() <= 1e-4


def test_header_refusal_offers_classify_anyway(window, qtbot, dicom_dir, monkeypatch):
    import training.imaging.loading as loading

    decoded = []
    real = loading.load_image
    monkeypatch.setattr(loading, "load_image", lambda *a, **k: decoded.append(a[0]) or real(*a, **k))
    with qtbot.waitSignal(window.images.refusalShown, timeout=WAIT) as sig:
        window.open_image(dicom_dir / "cxr11_nih_udacity_test5_modality-CT.dcm")
    assert "CT" in sig.args[0] or "modality" in sig.args[0].lower()
    panel = window.pred_panel
    assert panel.refusal.isVisible() and panel.classify_anyway.isVisible()
    assert window.viewer.has_image()  # the refused image is still shown
    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT) as pred:
        panel.classify_anyway.click()
    assert pred.args[0].status == "ok" and pred.args[0].warnings
    assert panel.warnings.isVisible() and not panel.refusal.isVisible()
    # forced past the header check: a score, but visibly no verdict (grey "Not valid", the reason beside it)
    from xray_gui.prediction_panel import HEADER_NOT_VALID_NOTE, NOT_VALID_LABEL

    assert not pred.args[0].valid and "CT" in pred.args[0].forced_reason()
    assert panel.label.text() == NOT_VALID_LABEL and HEADER_NOT_VALID_NOTE in panel.p_text.text()
    assert "header" in panel.state.text() and "CT" in panel.state.text()
    assert len(decoded) == 1, decoded  # shown refused, then classified anyway: the file was decoded once


def test_broken_file_shows_reason_without_override(window, qtbot, tmp_path, png):
    bad = tmp_path / "half.png"
    bad.write_bytes(png.read_bytes()[:1500])
    with qtbot.waitSignal(window.images.refusalShown, timeout=WAIT):
        window.open_image(bad)
    assert window.pred_panel.refusal.isVisible() and not window.pred_panel.classify_anyway.isVisible()
    assert window.notifier.history[-1].level == "warning"


# ------------------------------------------------------------------ batches
def test_drop_folder_fills_table_with_broken_rows(window, qtbot, mixed_dir):
    state = _wait_batch(qtbot, window, lambda: window.open_paths([mixed_dir]))
    assert state == "done"
    rows = {r.path.name: r for r in window.batch_panel.model.rows}
    assert set(rows) == {p.name for p in mixed_dir.rglob("*") if p.is_file()}
    assert rows["broken.png"].status in ("refused", "error") and rows["broken.png"].reason
    assert rows["ct.dcm"].status == "refused" and rows["ct.dcm"].reason
    assert rows["notes.txt"].status == "skipped"
    good = [r for r in rows.values() if r.status == "ok"]
    assert len(good) == 4 and all(r.thumb is not None and not r.thumb.isNull() for r in good)
    m = window.batch_panel.model
    i = m.rows.index(rows["broken.png"])
    assert m.data(m.index(i, 0), Qt.ItemDataRole.BackgroundRole) is not None  # red row
    assert rows["broken.png"].reason in m.data(m.index(i, COL_STATUS))
    # filter and sort through the proxy
    window.batch_panel.filter.setCurrentText("Problems (refused, error, skipped)")
    assert window.batch_panel.proxy.rowCount() == 3
    window.batch_panel.filter.setCurrentText("All")
    window.batch_panel.view.sortByColumn(3, Qt.SortOrder.DescendingOrder)
    ps = [window.batch_panel.proxy.index(r, 3).data() for r in range(4)]
    assert ps == sorted(ps, reverse=True)
    # clicking a row shows that image with its heatmap; N moves to the next
    with qtbot.waitSignal(window.images.heatmapShown, timeout=WAIT):
        window.batch_panel.view.selectRow(0)
    assert window.images.path.name == window.batch_panel.proxy.index(0, 1).data()
    with qtbot.waitSignal(window.images.imageShown, timeout=WAIT):
        window.actions_by_name["next"].trigger()
    assert window.images.path.name == window.batch_panel.proxy.index(1, 1).data()


def test_real_drop_event_starts_a_batch(window, qtbot, mixed_dir):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(mixed_dir))])
    args = (QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier)
    enter = QDragEnterEvent(*args)
    QApplication.sendEvent(window, enter)  # Qt delivers a drop only after an accepted enter
    assert enter.isAccepted()
    ev = QDropEvent(*args)
    with qtbot.waitSignal(window.batch.finished, timeout=WAIT):
        QApplication.sendEvent(window, ev)
    assert ev.isAccepted()
    assert len(window.batch_panel.model.rows) == 7


def test_csv_export_matches_table(window, qtbot, mixed_dir, tmp_path):
    _wait_batch(qtbot, window, lambda: window.open_batch([mixed_dir]))
    window.pred_panel.threshold.setValue(0.2)  # relabels the table too
    out = window.export_csv(tmp_path / "out" / "results.csv")
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    proxy, model = window.batch_panel.proxy, window.batch_panel.model
    assert len(rows) == proxy.rowCount() == 7
    assert {r["model"] for r in rows if r["status"] != "skipped"} == {"Test model v7"}  # audit columns
    assert all(len(r["model_sha256"]) == 64 and r["result_time"] for r in rows if r["status"] != "skipped")
    for r, csv_row in enumerate(rows):
        src = model.rows[proxy.mapToSource(proxy.index(r, 0)).row()]
        assert csv_row["path"] == str(src.path)
        assert csv_row["status"] == src.status
        if src.status == "ok":
            expected = "COVID" if src.pred.p_covid >= 0.2 else "Normal"
            assert csv_row["label"] == proxy.index(r, 2).data() == expected
            assert float(csv_row["p_covid"]) == pytest.approx(float(proxy.index(r, 3).data()), abs=5e-4)
            assert float(csv_row["threshold"]) == pytest.approx(0.2)
        else:
            assert csv_row["reason"] and csv_row["reason"] in proxy.index(r, COL_STATUS).data()
    assert not [p for p in out.parent.iterdir() if p.name != "results.csv"]  # no temp file left


def _forty_pngs(cxr1000) -> list[Path]:
    return sorted((cxr1000 / "COVID").glob("*.png"))[:20] + sorted((cxr1000 / "Normal").glob("*.png"))[:20]


def test_cancel_mid_batch_stops_it(window, qtbot, cxr1000):
    window.models.classifier.batch_size = 2
    files = _forty_pngs(cxr1000)
    with qtbot.waitSignal(window.batch.resultAdded, timeout=WAIT):
        window.open_batch(files)
    with qtbot.waitSignal(window.batch.finished, timeout=WAIT) as sig:
        window.batch_panel.cancel.click()
    assert sig.args[0] == "cancelled"
    done = window.batch_panel.model.done_count()
    assert 1 <= done < len(files)
    assert "cancelled" in window.batch_panel.eta.text()
    assert not window.jobs.running("batch")
    QThreadPool.globalInstance().waitForDone(WAIT)
    assert window.batch_panel.model.done_count() == done  # nothing arrives after the cancel


def test_close_mid_batch_stops_workers(qtbot, settings_file, classifier, model_file, cxr1000):
    classifier.batch_size = 2
    win = _make_window(qtbot)
    with qtbot.waitSignal(win.models.changed, timeout=WAIT):
        win.models.use(classifier, model_file)
    with qtbot.waitSignal(win.batch.resultAdded, timeout=WAIT):
        win.open_batch(_forty_pngs(cxr1000))
    win.close()  # quits the workers and waits
    assert QThreadPool.globalInstance().activeThreadCount() == 0
    assert win.batch_panel.model.done_count() < 40
    classifier.batch_size = 16


# ------------------------------------------------------------------ model files, report, settings
def test_tampered_or_truncated_model_is_refused_and_previous_kept(window, qtbot, model_file, tmp_path):
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(bytes(data))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(bytes(data[: len(data) // 3]))
    before = window.models.classifier
    for bad in (tampered, truncated):
        with qtbot.waitSignal(window.models.failed, timeout=WAIT) as sig:
            window.open_model(bad)
        assert bad.name in sig.args[0] and "previous model" in sig.args[0]
        err = window.notifier.history[-1]
        assert err.level == "error" and bad.name in err.text
        assert window.models.classifier is before
        qtbot.waitUntil(lambda: not window.models.busy)
        assert "Test model v7" in window.model_status.text()
    assert window.settings.model_path != str(tampered)


def test_pdf_report(window, qtbot, png, tmp_path):
    window.pred_panel.heatmap.setChecked(False)  # the report computes the heatmap itself
    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT):
        window.open_image(png)
    out = tmp_path / "reports" / "r.pdf"
    with qtbot.waitSignal(window.reportWritten, timeout=WAIT):
        window.export_report(out)
    assert out.read_bytes()[:4] == b"%PDF" and out.stat().st_size > 5000
    assert [p.name for p in out.parent.iterdir()] == ["r.pdf"]
    from xray_gui.image_controller import report_content

    content = report_content(window.images, patient=None)
    assert content.overlay is not None and content.model_version == "7" and content.patient is None
    import hashlib

    from training import __version__

    # audit trail: the model file's SHA-256 and the program's version are in the report
    assert content.model_sha256 == hashlib.sha256(Path(window.models.path).read_bytes()).hexdigest()
    assert content.app_version == __version__


def test_settings_are_remembered(window, qtbot, png, settings_file):
    window.pred_panel.opacity.setValue(70)
    window.pred_panel.heatmap.setChecked(False)
    window.settings.last_folder = str(png.parent)
    window.settings.add_recent(png)
    window.close()
    from xray_gui.settings import AppSettings

    s = AppSettings()
    assert s.overlay_opacity == 70 and s.show_heatmap is False
    assert s.recent_files[0] == str(png) and s.last_folder == str(png.parent)
    assert settings_file.exists()
    win2 = _make_window(qtbot)
    assert win2.pred_panel.opacity.value() == 70 and not win2.pred_panel.heatmap.isChecked()
    win2.close()


def test_open_model_file_in_worker(qtbot, settings_file, model_file):
    win = _make_window(qtbot)
    assert win.models.classifier is None
    with qtbot.waitSignal(win.models.changed, timeout=WAIT):
        win.open_model(model_file)
    assert win.models.classifier.info.name == "Test model"
    assert win.settings.model_path == str(model_file)
    assert "Test model v7" in win.model_status.text()
    win.close()


def test_start_falls_back_to_the_default_model_when_the_remembered_one_is_broken(
        qtbot, settings_file, model_file, tmp_path, monkeypatch):
    res = tmp_path / "resources" / "models"
    res.mkdir(parents=True)
    from training.common.resources import DEFAULT_MODEL_NAME

    (res / DEFAULT_MODEL_NAME).symlink_to(model_file)
    monkeypatch.setenv("XRAY_RESOURCES", str(tmp_path / "resources"))
    broken = tmp_path / "old.safetensors"
    broken.write_bytes(b"\0" * 100)
    from xray_gui.settings import AppSettings

    AppSettings().model_path = str(broken)
    win = _make_window(qtbot)
    with qtbot.waitSignal(win.models.changed, timeout=WAIT):
        win.start_model(None)
        assert "loading model" in win.model_status.text()  # shown at once, the load runs in a worker
    assert any(n.level == "error" and "old.safetensors" in n.text for n in win.notifier.history)
    assert win.models.path.name == DEFAULT_MODEL_NAME
    win.close()


def test_settings_precision_reloads_the_model_and_the_about_box_says_what_runs(window, qtbot, monkeypatch):
    """Settings → Precision "fast" on a CPU without VNNI / AMX (simulated): remembered, the model
    reloaded with it, and the About box names the engine (fp32 kept, and why) and the file's fast mode."""
    from training.inference import engine_fast
    from xray_gui.dialogs import SettingsDialog, model_info_html

    monkeypatch.setattr(engine_fast, "cpu_flags", lambda: {"sse4_2", "avx2"})
    assert window.models.precision == "fp32"
    dlg = SettingsDialog("cpu", False, window, precision=window.models.precision)
    assert dlg.precision() == "fp32"
    dlg.precision_buttons["fast"].setChecked(True)
    with qtbot.waitSignal(window.models.changed, timeout=WAIT):
        window.models.set_precision(dlg.precision())
    clf = window.models.classifier
    assert clf.precision == "fast" and window.settings.precision == "fast"
    out = model_info_html(clf)
    assert "none of AMX, AVX-512 VNNI, AVX-VNNI or AVX-512 BF16, so fp32 is kept" in out, out
    assert "Fast mode (int8)" in out and "not prepared for this model file" in out
