"""Layout and "what is on screen" (issue 13, a radiologist's review), in the
app (pytest-qt, offscreen): the viewer always shows the selected batch row's
image or nothing; the verdict box stays visible at 1024x700; long patient
values are elided, never widening the side panel; the image/table splitter
gives the table a fair share and is remembered; the side panel hides; full
screen; one status message line; Cancel's counts and wording agree."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QThreadPool  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from xray_gui.batch_table import COL_FILE, COL_STATUS  # noqa: E402

WAIT = 90_000


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "layout_tiny.safetensors"
    if not path.exists():
        import torch

        from training.model.modelfile import ModelInfo, save_model
        from training.model.networks import build_model

        torch.manual_seed(0)
        save_model(build_model("resnet50", "scratch", input_size=64),
                   ModelInfo(arch="resnet50", input_size=64, name="Layout model", version="1"), path)
    from training.inference.classifier import Classifier

    return Classifier.from_file(path, device="cpu", decode_workers=1), path


@pytest.fixture
def settings_file(tmp_path, monkeypatch) -> Path:
    ini = tmp_path / "settings.ini"
    monkeypatch.setenv("XRAY_SETTINGS", str(ini))
    return ini


def _window(qtbot, classifier, size=(1024, 700)):
    from xray_gui.main_window import MainWindow

    clf, path = classifier
    clf.batch_size = 16
    win = MainWindow(dialogs=False)
    qtbot.addWidget(win)
    win.resize(*size)
    win.show()
    with qtbot.waitSignal(win.models.changed, timeout=WAIT):
        win.models.use(clf, path)
    return win


@pytest.fixture
def window(qtbot, settings_file, classifier):
    win = _window(qtbot, classifier)
    yield win
    win.close()
    assert QThreadPool.globalInstance().activeThreadCount() == 0


@pytest.fixture(scope="module")
def pngs(cxr1000) -> list[Path]:
    return sorted((cxr1000 / "Normal").glob("*.png"))[:3] + sorted((cxr1000 / "COVID").glob("*.png"))[:2]


def _batch(qtbot, win, paths):
    with qtbot.waitSignal(win.batch.finished, timeout=WAIT) as sig:
        win.open_batch(paths)
    assert sig.args[0] == "done"


def _select(qtbot, win, row):
    with qtbot.waitSignal(win.images.predictionShown, timeout=WAIT):
        win.batch_panel.select_source_row(row)


def _nothing_shown(win) -> bool:
    return (not win.viewer.has_image() and win.images.path is None and win.images.pred is None
            and win.pred_panel.label.text() == "—" and win.meta_panel.file_label.text() == "—")


def _fully_visible(widget) -> bool:
    """The whole widget is on screen (not scrolled away, not clipped)."""
    region = widget.visibleRegion().boundingRect()
    return widget.isVisible() and region.size() == widget.size()


# ------------------------------------------------------------------ item 1: the viewer follows the table
def test_new_batch_clears_the_previous_image_until_a_row_is_selected(window, qtbot, pngs):
    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT):
        window.open_image(pngs[4])
    assert window.viewer.has_image()
    with qtbot.waitSignal(window.batch.finished, timeout=WAIT):
        window.open_batch(pngs[:3])
        assert _nothing_shown(window)  # at once, not when the first result comes
    assert window.batch_panel.selected_source_row() is None
    assert _nothing_shown(window)
    assert "select a row" in window.pred_panel.state.text().lower()
    _select(qtbot, window, 1)
    assert window.images.path == pngs[1]
    assert window.meta_panel.file_label.toolTip() == str(pngs[1])


def test_opening_a_file_clears_the_table_selection_or_selects_its_row(window, qtbot, pngs):
    _batch(qtbot, window, pngs[:3])
    _select(qtbot, window, 0)
    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT):
        window.open_image(pngs[4])  # not in the table
    assert window.batch_panel.selected_source_row() is None
    assert not window.batch_panel.view.selectionModel().hasSelection()
    assert window.images.path == pngs[4]
    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT):
        window.open_image(pngs[2])  # in the table: its row is selected, its result shown
    assert window.batch_panel.selected_source_row() == 2
    assert window.images.pred is window.batch_panel.model.rows[2].pred


def test_a_new_batch_leaves_no_old_row_selected(window, qtbot, pngs):
    _batch(qtbot, window, pngs[:3])
    _select(qtbot, window, 2)
    _batch(qtbot, window, pngs[2:5])
    assert window.batch_panel.selected_source_row() is None
    assert not window.batch_panel.view.selectionModel().hasSelection()
    assert _nothing_shown(window)


def test_filtering_out_the_selected_row_clears_the_viewer(window, qtbot, pngs):
    _batch(qtbot, window, pngs[:3])
    _select(qtbot, window, 0)
    assert window.viewer.has_image()
    window.batch_panel.filter.setCurrentText("Problems (refused, error, skipped)")  # none: all rows go
    assert window.batch_panel.selected_source_row() is None
    assert _nothing_shown(window)


def test_a_skipped_row_shows_nothing(window, qtbot, pngs, tmp_path):
    import shutil

    shutil.copy(pngs[0], tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    _batch(qtbot, window, [tmp_path])
    _select(qtbot, window, 0)
    skipped = next(i for i, r in enumerate(window.batch_panel.model.rows) if r.status == "skipped")
    window.batch_panel.select_source_row(skipped)
    assert _nothing_shown(window)
    assert "skipped" in window.pred_panel.state.text().lower()


# ------------------------------------------------------------------ item 2: layout
def test_verdict_box_stays_visible_at_1024x700_while_stepping(window, qtbot, pngs):
    _batch(qtbot, window, pngs)
    QApplication.processEvents()
    assert window.size().width() == 1024 and window.size().height() == 700  # nothing forces it wider
    box = window.pred_panel.verdict_box
    bar = window.side_scroll.verticalScrollBar()
    assert bar.maximum() > 0  # the rest of the side panel does scroll at this size
    for row in range(len(pngs)):
        bar.setValue(bar.maximum())  # the user reads the metadata at the bottom
        _select(qtbot, window, row)
        QApplication.processEvents()
        assert _fully_visible(box), f"row {row}: the verdict box is scrolled away or clipped"
        assert window.pred_panel.label.text() != "—"
        top_left = box.mapTo(window, box.rect().topLeft())
        assert window.rect().contains(top_left) and window.rect().contains(
            box.mapTo(window, box.rect().bottomRight()))


def test_long_patient_uid_is_elided_and_does_not_widen_the_side_panel(window, qtbot):
    from types import SimpleNamespace

    uid = "1.2.826.0.1.3680043.8.498." + "1234567890" * 8
    meta = SimpleNamespace(path="/x/image.dcm", kind="dicom", modality="DX", body_part="CHEST", view="PA",
                           original_size=(10, 10), bits=12, photometric="MONOCHROME2", transfer_syntax="x",
                           window=None, window_source="none",
                           patient={"PatientName": "Test^Patient", "StudyInstanceUID": uid})
    QApplication.processEvents()
    side_before = window.side_panel.width()
    mp = window.meta_panel
    mp.set_meta(meta)
    mp.show_patient.setChecked(True)
    QApplication.processEvents()
    assert window.side_panel.width() == side_before
    assert window.width() == 1024
    assert uid in mp.patient.text()  # the full value is kept ...
    assert mp.patient.is_elided() and uid in mp.patient.toolTip()  # ... drawn cut, whole in the tooltip
    assert mp.patient.width() <= window.side_scroll.viewport().width()
    inner = window.side_scroll.widget()
    assert inner.width() <= window.side_scroll.viewport().width()  # nothing runs off the right edge
    window.side_scroll.ensureWidgetVisible(window.pred_panel.open_model)
    QApplication.processEvents()
    assert _fully_visible(window.pred_panel.open_model)
    assert _fully_visible(window.pred_panel.reset_threshold)


def test_table_gets_a_fair_share_with_compact_rows_at_1600x1000(qtbot, settings_file, classifier, pngs):
    win = _window(qtbot, classifier, (1600, 1000))
    try:
        _batch(qtbot, win, pngs)
        QApplication.processEvents()
        image_h, table_h = win.image_split.sizes()
        assert table_h >= 0.35 * (image_h + table_h)
        view = win.batch_panel.view
        idx = win.batch_panel.grouped.image_indexes()[0].siblingAtColumn(COL_FILE)
        row_h = view.visualRect(idx).height()
        assert 0 < row_h <= 36
        assert view.viewport().height() // row_h >= 10  # at least ten rows show
    finally:
        win.close()


def test_splitter_sizes_are_remembered(qtbot, settings_file, classifier, pngs):
    win = _window(qtbot, classifier)
    _batch(qtbot, win, pngs[:2])
    QApplication.processEvents()
    total_v = sum(win.image_split.sizes())
    win.image_split.setSizes([total_v - 400, 400])
    total_h = sum(win.main_split.sizes())
    win.main_split.setSizes([total_h - 420, 420])
    QApplication.processEvents()
    want_v, want_h = win.image_split.sizes(), win.main_split.sizes()
    win.close()

    again = _window(qtbot, classifier)
    try:
        assert abs(again.main_split.sizes()[1] - want_h[1]) <= 2
        _batch(qtbot, again, pngs[:2])
        QApplication.processEvents()
        assert abs(again.image_split.sizes()[1] - want_v[1]) <= 2
    finally:
        again.close()


def test_side_panel_hides_and_stays_hidden(qtbot, settings_file, classifier):
    win = _window(qtbot, classifier)
    act = win.layout_actions["side_panel"]
    assert {s.toString() for s in act.shortcuts()} >= {"Ctrl+B", "F9"}
    assert act in win.menuBar().actions()[1].menu().actions()  # in the View menu
    act.trigger()
    assert win.side_panel.isHidden() and not act.isChecked()
    win.close()
    again = _window(qtbot, classifier)
    try:
        assert again.side_panel.isHidden()  # remembered
        again.layout_actions["side_panel"].trigger()
        assert not again.side_panel.isHidden()
    finally:
        again.close()


def test_full_screen_hides_panels_and_esc_leaves(window, qtbot, pngs):
    _batch(qtbot, window, pngs[:2])
    fs, leave = window.layout_actions["full_screen"], window.layout_actions["leave_full_screen"]
    assert "F11" in {s.toString() for s in fs.shortcuts()}
    assert "Esc" in {s.toString() for s in leave.shortcuts()}
    assert not leave.isEnabled()
    fs.trigger()
    assert window.is_full_screen_image() and window.isFullScreen()
    assert window.side_panel.isHidden() and window.batch_panel.isHidden() and window.menuBar().isHidden()
    assert not window.statusBar().isHidden()  # the research-use notice stays
    assert leave.isEnabled()
    window.batch_panel.step(+1)  # N / P still work
    leave.trigger()
    assert not window.is_full_screen_image() and not window.isFullScreen()
    assert not window.side_panel.isHidden() and not window.batch_panel.isHidden()
    assert not window.menuBar().isHidden() and not leave.isEnabled() and not fs.isChecked()


def test_status_bar_has_one_message_line_that_is_not_squeezed(window, qtbot):
    long = "Batch results written to /a/very/long/folder/" + "sub/" * 60 + "results.csv"
    window.notifier.info(long)
    QApplication.processEvents()
    line, model = window.status_line, window.model_status
    assert line.text() == long and line.is_elided() and long in line.toolTip()
    assert line.width() >= 300  # the permanent widgets leave it room
    assert not line.geometry().intersects(model.geometry())
    window.models.loading.emit("loading model " + "x" * 300)  # a long model text is cut, not widening
    QApplication.processEvents()
    assert model.width() <= 300 and window.width() == 1024
    assert line.width() >= 300


def test_cancel_counts_agree_and_unprocessed_rows_say_so(window, qtbot, cxr1000, tmp_path):
    window.models.classifier.batch_size = 2
    files = sorted((cxr1000 / "COVID").glob("*.png"))[:20] + sorted((cxr1000 / "Normal").glob("*.png"))[:20]
    with qtbot.waitSignal(window.batch.resultAdded, timeout=WAIT):
        window.open_batch(files)
    with qtbot.waitSignal(window.batch.finished, timeout=WAIT):
        window.batch_panel.cancel.click()
    model = window.batch_panel.model
    done = model.done_count()
    assert 1 <= done < len(files)
    assert window.batch_panel.progress.value() == done
    assert window.batch_panel.eta.text().startswith(f"cancelled after {done} of {len(files)}")
    left = [i for i, r in enumerate(model.rows) if r.pred is None]
    assert len(left) == len(files) - done
    for i in left:
        assert model.data(model.index(i, COL_STATUS)) == "not classified — cancelled"
    out = window.export_csv(tmp_path / "cancelled.csv")
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    unclassified = [r for r in rows if r["status"] == "not classified"]
    assert len(unclassified) == len(left) and all(r["reason"] == "cancelled" for r in unclassified)


def test_new_rows_keep_the_selected_file_only_if_it_is_still_there(qtbot, tmp_path):
    """A worklist that grows (received DICOM images) keeps the reader's row; a
    table of other files leaves none selected and says so."""
    from xray_gui.batch_table import BatchPanel

    panel = BatchPanel()
    qtbot.addWidget(panel)
    a, b, c = (tmp_path / n for n in ("a.png", "b.png", "c.png"))
    panel.start([a, b], [])
    with qtbot.waitSignal(panel.rowActivated):
        panel.select_source_row(1)
    with qtbot.assertNotEmitted(panel.selectionCleared), qtbot.assertNotEmitted(panel.rowActivated):
        panel.start([a, b, c], [])
    assert panel.selected_source_row() == 1
    with qtbot.waitSignal(panel.selectionCleared):
        panel.start([c], [])
    assert panel.selected_source_row() is None


def test_panels_leave_no_parentless_widget_behind(qtbot):
    """Every widget a panel builds has a parent: a parentless one is a window
    nobody shows or deletes, and PySide deleted it while destroying the
    application at exit, after Python's own teardown had begun - the suite
    once passed and then died with a segmentation fault (exit 139). The
    verdict box was such a widget whenever the prediction panel stood alone."""
    from xray_gui.metadata_panel import MetadataPanel
    from xray_gui.prediction_panel import PredictionPanel

    for make in (PredictionPanel, MetadataPanel):
        before = QApplication.topLevelWidgets()  # held, so no id is reused
        panel = make()
        qtbot.addWidget(panel)
        new = [w for w in QApplication.topLevelWidgets()
               if w.parent() is None and not any(w is b for b in before)]
        assert new == [panel], [(type(w).__name__, w.objectName()) for w in new]
    alone = PredictionPanel()
    qtbot.addWidget(alone)
    assert alone.layout().indexOf(alone.summary) == 0  # a panel on its own keeps its verdict box on top


def test_the_window_pins_the_verdict_box_outside_the_scrolling_panel(window):
    summary = window.pred_panel.summary
    assert summary.parentWidget().objectName() == "sidePanel"
    assert window.pred_panel.layout().indexOf(summary) == -1
    assert not window.side_scroll.widget().isAncestorOf(summary)


def test_rows_keep_their_height_when_thumbnails_arrive(qtbot):
    """Every row is as tall as a row with its thumbnail from the start: rows do
    not grow under the reader's eyes as results come in, and the view measures
    one row instead of every row on each layout (uniform row heights)."""
    from PySide6.QtGui import QImage

    from training.inference.result import Prediction
    from xray_gui.batch_table import ROW_ICON, BatchPanel

    panel = BatchPanel()
    qtbot.addWidget(panel)
    panel.resize(900, 400)
    panel.show()
    files = [Path(f"/nowhere/film{i}.png") for i in range(4)]
    panel.start(files, [])
    QApplication.processEvents()
    view = panel.view

    def heights():
        return [view.rowHeight(view.model().index(i, 0)) for i in range(len(files))]

    before = heights()
    thumb = QImage(64, 64, QImage.Format.Format_Grayscale8)
    thumb.fill(128)
    panel.model.set_result(0, Prediction(path=files[0], status="ok", label="COVID", p_covid=0.8, threshold=0.5),
                           thumb)
    QApplication.processEvents()
    assert before == heights() and min(before) >= ROW_ICON, (before, heights())
    assert view.uniformRowHeights()
