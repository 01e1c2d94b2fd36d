"""Radiologist review (issue 13): window/level box after a drag, non-compounding
contrast presets, on-image corner overlays (W/L, zoom, orientation, size) and
the heatmap's presentation (colour map, lower level, colour scale, Normal
results, Settings).  The window fixtures come from test_gui_app.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("superqt")

from PySide6.QtCore import QPoint, Qt  # noqa: E402

from tests.test_gui_app import WAIT, classifier, model_file, png, settings_file, window  # noqa: E402,F401
from xray_gui import overlay_text  # noqa: E402
from xray_gui.display_state import CUSTOM_PRESET, DEFAULT_HEATMAP_COLOURS, HEATMAP_FLOOR, DisplayState  # noqa: E402


def _open(window, qtbot, path):
    with qtbot.waitSignal(window.images.imageShown, timeout=WAIT):
        window.open_image(path)


def _right_drag(qtbot, viewer, dx: int, dy: int) -> None:
    vp = viewer.viewport()
    start = vp.rect().center()
    qtbot.mousePress(vp, Qt.MouseButton.RightButton, pos=start)
    for i in range(1, 6):
        qtbot.mouseMove(vp, start + QPoint(dx * i // 5, dy * i // 5))
    qtbot.mouseRelease(vp, Qt.MouseButton.RightButton, pos=start + QPoint(dx, dy))


# ------------------------------------------------------------------ window / level
def test_more_contrast_chosen_twice_gives_the_same_window():
    raw = np.tile(np.linspace(0.0, 1000.0, 64, dtype=np.float32), (64, 1))
    img = SimpleNamespace(raw=raw, pixels=raw / 1000.0, invert=False,
                          meta=SimpleNamespace(window=(500.0, 1000.0)))
    d = DisplayState(img, raw_range=(0.0, 1000.0))
    d.preset("More contrast")
    first = (d.center, d.width)
    d.preset("More contrast")
    assert (d.center, d.width) == first == (500.0, pytest.approx(600.0))
    d.preset("Less contrast")
    d.preset("Less contrast")
    assert (d.center, d.width) == (500.0, pytest.approx(1600.0))
    d.drag(30, 0)  # from a custom window too: the presets are relative to the file default
    d.preset("More contrast")
    assert (d.center, d.width) == first


def test_drag_sets_the_box_to_custom_and_the_overlay_follows(window, qtbot, dicom_dir):
    _open(window, qtbot, dicom_dir / "cxr13_wg04_RG1_J2KI_mono1.dcm")
    viewer, box = window.viewer, window.meta_panel.preset
    assert box.currentText() == "File default"
    wl_before = viewer.overlay_lines()["bottom_left"][0]
    assert wl_before.startswith("W ") and " L " in wl_before and "File default" in wl_before
    lines = viewer.overlay_lines()  # the file records Patient Orientation L\F (read by the loader)
    assert (lines["left"], lines["right"], lines["top"], lines["bottom"]) == (["R"], ["L"], ["H"], ["F"])
    _right_drag(qtbot, viewer, 60, 25)
    assert window.images.display.windowed
    assert box.currentText() == CUSTOM_PRESET
    qtbot.waitUntil(lambda: viewer.overlay_lines()["bottom_left"][0] != wl_before, timeout=2000)
    d = window.images.display
    assert viewer.overlay_lines()["bottom_left"][0] == overlay_text.window_line(d, CUSTOM_PRESET)
    # a preset afterwards names itself again
    window.actions_by_name["window_2"].trigger()
    assert box.currentText() == "Lung" and "(Lung)" in viewer.overlay_lines()["bottom_left"][0]
    # the Custom entry cannot be chosen from the list itself
    custom = box.model().item(box.findText(CUSTOM_PRESET))
    assert not custom.isEnabled()


def test_overlay_shows_zoom_that_changes_and_can_be_turned_off(window, qtbot, png):
    _open(window, qtbot, png)
    viewer = window.viewer
    lines = viewer.overlay_lines()
    zoom = [x for x in lines["bottom_left"] if x.startswith("Zoom ")]
    assert zoom == [overlay_text.zoom_line(viewer.current_scale())]
    assert lines["top_left"][0] == png.name
    assert any(x.endswith(" px") for x in lines["top_right"])
    assert "left" not in lines and "right" not in lines  # a PNG records no orientation: nothing is said
    window.actions_by_name["zoom_in"].trigger()
    zoom2 = [x for x in viewer.overlay_lines()["bottom_left"] if x.startswith("Zoom ")]
    assert zoom2 != zoom and zoom2 == [overlay_text.zoom_line(viewer.current_scale())]
    act = window.actions_by_name["overlays"]
    assert act.isChecked() and act.shortcut().toString() == "O"
    act.trigger()
    assert viewer.overlay_lines() == {} and window.settings.show_overlays is False
    act.trigger()
    assert viewer.overlay_lines() and window.settings.show_overlays is True


def test_overlay_shows_identifiers_only_when_asked(window, qtbot, dicom_dir):
    _open(window, qtbot, dicom_dir / "cxr13_wg04_RG1_J2KI_mono1.dcm")
    patient = window.images.image.meta.patient
    values = [v for k, v in patient.items() if k in ("PatientName", "PatientID")]
    if not values:
        pytest.skip("this sample records no patient name or ID")
    text = "\n".join(sum(window.viewer.overlay_lines().values(), []))
    assert not any(v in text for v in values)
    window.meta_panel.show_patient.setChecked(True)
    text = "\n".join(sum(window.viewer.overlay_lines().values(), []))
    assert all(v in text for v in values)


def _meta(**kw):
    base = dict(path="/x/a.dcm", kind="dicom", modality="DX", view=None, original_size=(100, 80), extra={})
    base.update(kw)
    return SimpleNamespace(**base)


def test_orientation_markers_only_when_known():
    assert overlay_text.orientation_markers(_meta(view="PA")) == {"left": "R", "right": "L"}
    assert overlay_text.orientation_markers(_meta(view="AP")) == {"left": "R", "right": "L"}
    assert overlay_text.orientation_markers(_meta(view="LL")) == {}
    assert overlay_text.orientation_markers(_meta()) == {}
    assert overlay_text.orientation_markers(_meta(kind="png", view=None)) == {}
    # Patient Orientation wins: rows run to the patient's left, columns to the feet
    m = _meta(view="AP", extra={"PatientOrientation": "L\\F"})
    assert overlay_text.orientation_markers(m) == {"left": "R", "right": "L", "top": "H", "bottom": "F"}
    m = _meta(extra={"PatientOrientation": "R\\F"})  # flipped film
    assert overlay_text.orientation_markers(m)["left"] == "L"
    assert overlay_text.top_right(_meta(extra={"PixelSpacing": "0.2\\0.1"})) == ["80 × 100 px", "Pixel 0.1 × 0.2 mm"]


# ------------------------------------------------------------------ heatmap
def test_default_colour_map_is_not_jet_and_low_values_are_transparent():
    from training.inference.explain import heat_rgba, heat_weight
    from xray_gui.images import rgba_to_qimage

    assert DEFAULT_HEATMAP_COLOURS != "jet" and 0.0 < HEATMAP_FLOOR < 1.0
    heat = np.tile(np.linspace(0.0, 1.0, 101, dtype=np.float32), (4, 1))
    rgba = heat_rgba(heat, DEFAULT_HEATMAP_COLOURS, HEATMAP_FLOOR)
    below = heat[0] < HEATMAP_FLOOR
    assert (rgba[:, below, 3] == 0).all()
    assert rgba[0, -1, 3] == 255 and np.all(np.diff(rgba[0, ~below, 3].astype(int)) >= 0)  # ramps up
    img = rgba_to_qimage(rgba)
    assert img.pixelColor(10, 0).alpha() == 0 and img.pixelColor(100, 0).alpha() == 255
    assert (heat_weight(heat, 0.0) == 1.0).all()  # level 0: the whole map


def test_overlay_rgb_with_a_floor_leaves_the_low_part_grey():
    from training.inference.explain import overlay_rgb

    grey = np.full((4, 101), 0.5, dtype=np.float32)
    heat = np.tile(np.linspace(0.0, 1.0, 101, dtype=np.float32), (4, 1))
    rgb = overlay_rgb(grey, heat, 0.5, "inferno", floor=0.5)
    assert (rgb[:, :50] == 128).all() and not (rgb[:, -1] == 128).all()


def _show_heatmap(window, qtbot, png):
    window.images.set_heat_for_normal(True)  # whatever the tiny model says, show it
    with qtbot.waitSignal(window.images.heatmapShown, timeout=WAIT):
        window.open_image(png)


def test_worker_layer_is_transparent_below_the_level_and_scale_follows_heatmap(window, qtbot, png):
    assert window.images.heat_colours == DEFAULT_HEATMAP_COLOURS != "jet"
    _show_heatmap(window, qtbot, png)
    heat, colour = window.images.heatmap()
    assert colour.hasAlphaChannel()
    rel = heat / heat.max()
    ys, xs = np.nonzero(rel < HEATMAP_FLOOR * 0.9)
    assert len(ys)
    for y, x in list(zip(ys, xs))[:: max(1, len(ys) // 50)]:
        assert colour.pixelColor(int(x), int(y)).alpha() == 0
    y, x = np.unravel_index(np.argmax(rel), rel.shape)
    assert colour.pixelColor(int(x), int(y)).alpha() == 255
    viewer = window.viewer
    assert viewer.overlay_visible() and viewer.colour_scale_visible()
    window.actions_by_name["heatmap"].trigger()  # H: off
    assert not viewer.overlay_visible() and not viewer.colour_scale_visible()
    window.actions_by_name["heatmap"].trigger()
    assert viewer.colour_scale_visible()
    # another level is drawn on the GUI thread once, then cached
    window.images.set_heat_floor(0.0)
    heat2, colour2 = window.images.heatmap()
    assert heat2 is heat and colour2.pixelColor(int(xs[0]), int(ys[0])).alpha() == 255
    assert window.images.heatmap()[1] is colour2


def test_normal_result_hides_its_heatmap_by_default(window, qtbot, png):
    images = window.images
    images.set_heat_for_normal(False)
    with qtbot.waitSignal(images.predictionShown, timeout=WAIT) as sig:
        window.open_image(png)
    pred = sig.args[0]
    if not images._is_normal(pred):  # make it Normal: relabel with the highest threshold
        window.pred_panel.threshold.setValue(window.pred_panel.threshold.maximum())
        qtbot.waitUntil(lambda: images._is_normal(images.pred), timeout=2000)
    assert not window.viewer.overlay_visible() and not window.pred_panel.heatmap.isChecked()
    assert "Normal" in window.pred_panel.heat_state.text()
    assert window.settings.show_heatmap is True
    with qtbot.waitSignal(images.heatmapShown, timeout=WAIT):
        window.actions_by_name["heatmap"].trigger()  # H shows it for this image
    assert window.viewer.colour_scale_visible() and window.pred_panel.heatmap.isChecked()
    assert window.settings.show_heatmap is True  # the remembered choice is left alone
    window.actions_by_name["heatmap"].trigger()
    assert not window.viewer.overlay_visible() and window.settings.show_heatmap is True


def test_heatmap_settings_persist(window, qtbot, settings_file):
    from xray_gui.dialogs import SettingsDialog
    from xray_gui.settings import AppSettings

    s = AppSettings()
    assert s.heatmap_colours == DEFAULT_HEATMAP_COLOURS and s.heatmap_floor == HEATMAP_FLOOR
    assert s.heatmap_for_normal is False and s.show_overlays is True
    dlg = SettingsDialog("cpu", False, window)
    box = dlg.heatmap_box
    box.colours.setCurrentIndex(box.colours.findData("jet"))
    box.floor.setCurrentIndex(box.floor.findData(0.7))
    box.for_normal.setChecked(True)
    dlg.accept()
    assert window.images.heat_style() == ("jet", 0.7) and window.images.heat_for_normal
    assert window.actions_by_name["heat_colours_jet"].isChecked()
    window.settings.sync()
    s2 = AppSettings()
    assert (s2.heatmap_colours, s2.heatmap_floor, s2.heatmap_for_normal) == ("jet", 0.7, True)
    window.close()
    from tests.test_gui_app import _make_window

    win2 = _make_window(qtbot)
    assert win2.images.heat_style() == ("jet", 0.7) and win2.images.heat_for_normal
    dlg2 = SettingsDialog("cpu", False, win2)
    assert dlg2.heatmap_box.values() == ("jet", 0.7, True)
    win2.close()
