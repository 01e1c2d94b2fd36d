"""Radiologist walk-through items (issue 13, item 6): window/level presets on
keys 1-4 (file default, lung, mediastinum, bone) and a choice of heatmap
colour maps.  The window fixtures come from test_gui_app.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("superqt")

from tests.test_gui_app import WAIT, classifier, model_file, png, settings_file, window  # noqa: E402,F401
from xray_gui.display_state import PRESET_PERCENTILES, WINDOW_PRESETS, DisplayState  # noqa: E402


def _image(raw: np.ndarray | None, pixels: np.ndarray, invert: bool = False):
    return SimpleNamespace(raw=raw, pixels=pixels, invert=invert,
                           meta=SimpleNamespace(window=None if raw is None else (500.0, 1000.0)))


def _ramp() -> np.ndarray:
    return np.tile(np.linspace(0.0, 1000.0, 256, dtype=np.float32), (256, 1))


@pytest.mark.parametrize("invert, gate_invert, lungs_high", [
    (False, False, False), (True, False, True), (False, True, True), (True, True, False)])
def test_lung_preset_follows_the_displayed_polarity(invert, gate_invert, lungs_high):
    """The lung window spans the grey levels shown dark: low stored values on a
    MONOCHROME2 film, high ones on a MONOCHROME1 film or one the gate inverted."""
    raw = _ramp()
    d = DisplayState(_image(raw, raw / 1000.0, invert), raw_range=(0.0, 1000.0))
    d.gate_invert = gate_invert
    d.preset("Lung")
    lo, hi = PRESET_PERCENTILES["Lung"]
    expected = (1000.0 - (lo + hi) / 2.0 * 10.0) if lungs_high else (lo + hi) / 2.0 * 10.0
    assert d.windowed and d.center == pytest.approx(expected, abs=10.0)
    assert d.width == pytest.approx((hi - lo) * 10.0, abs=10.0)
    shown = d.pixels()
    assert 0.35 < float(np.mean(shown >= 0.999)) + float(np.mean(shown <= 0.001)) < 0.45  # 40 % saturated
    d.preset("File default")
    assert not d.windowed and d.center == 500.0


def test_presets_work_on_pictures_without_stored_values():
    pixels = _ramp() / 1000.0
    d = DisplayState(_image(None, pixels))
    assert d.has_raw and not d.is_dicom and (d.center, d.width) == (0.5, 1.0)
    np.testing.assert_array_equal(d.pixels(), pixels)
    d.preset("Bone")
    assert d.windowed and d.center > 0.75
    assert float(np.mean(d.pixels() <= 0.001)) > 0.6  # all but the brightest third goes black


def test_keys_1_to_4_choose_the_presets(window, qtbot, dicom_dir):
    with qtbot.waitSignal(window.images.imageShown, timeout=WAIT):
        window.open_image(dicom_dir / "cxr13_wg04_RG1_J2KI_mono1.dcm")  # MONOCHROME1, JPEG 2000
    acts = window.actions_by_name
    assert [acts[f"window_{i}"].shortcut().toString() for i in range(1, 5)] == ["1", "2", "3", "4"]
    d = window.images.display
    shown = {}
    for i, name in enumerate(WINDOW_PRESETS, start=1):
        acts[f"window_{i}"].trigger()
        assert window.meta_panel.preset.currentText() == name
        shown[name] = window.images.display.pixels().mean()
    assert d.windowed
    acts["window_1"].trigger()
    assert not d.windowed and window.meta_panel.preset.currentText() == "File default"
    assert shown["Lung"] > shown["File default"] > shown["Bone"]  # lung window: the bright part goes white
    assert window.images.pred is None or window.images.pred.p_covid is not None  # display only


def test_heatmap_colour_map_is_chosen_and_remembered(window, qtbot, png):
    with qtbot.waitSignal(window.images.heatmapShown, timeout=WAIT):
        window.open_image(png)
    heat, inferno = window.images.heatmap()  # inferno is the default (drawn by the worker)
    assert window.pred_panel.heat_state.text().startswith("Yellow-white = regions")
    window.actions_by_name["heat_colours_jet"].trigger()
    heat2, jet = window.images.heatmap()
    assert heat2 is heat and inferno.size() == jet.size() and inferno != jet
    assert window.pred_panel.heat_state.text().startswith("Red = regions")
    assert window.settings.heatmap_colours == "jet"
    window.actions_by_name["heat_colours_inferno"].trigger()
    assert window.images.heatmap()[1] is inferno
    assert window.pred_panel.heat_state.text().startswith("Yellow-white = regions")
