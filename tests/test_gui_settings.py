"""The remembered settings: a missing, unreadable or out-of-range value reads
as its default, and a bad value is never written (one typed descriptor,
``xray_gui.settings._Setting``, behind every plain setting)."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")


def test_bad_values_read_as_defaults_and_are_not_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAY_SETTINGS", str(tmp_path / "settings.ini"))
    from xray_gui.display_state import DEFAULT_HEATMAP_COLOURS, HEATMAP_FLOOR
    from xray_gui.settings import AppSettings

    s = AppSettings()
    assert (s.model_path, s.device, s.overlay_opacity, s.show_heatmap, s.side_panel_visible) == ("", "auto", 45,
                                                                                                  True, True)
    s.store.setValue("view/heatmap_floor", "abc")  # edited by hand
    s.store.setValue("view/show_overlays", "no")
    assert s.heatmap_floor == HEATMAP_FLOOR and s.show_overlays is False
    s.device, s.overlay_opacity, s.heatmap_colours, s.heatmap_floor = "tpu", 150, "rainbow-ish", 0.42
    s.model_path, s.show_lung_outline = None, 1
    s.sync()
    again = AppSettings()
    assert again.store.value("model/device") == "auto" and again.device == "auto"
    assert again.overlay_opacity == 100 and again.heatmap_colours == DEFAULT_HEATMAP_COLOURS
    assert again.heatmap_floor == HEATMAP_FLOOR and again.model_path == "" and again.show_lung_outline is True
