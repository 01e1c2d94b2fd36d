"""The heatmap's colour layer of a large image is drawn smaller and stretched
over the image by the viewer (explain.COLOUR_LAYER_MAX_SIDE): same place, same
transparency, a fraction of the time."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from training.inference.explain import COLOUR_LAYER_MAX_SIDE, colour_layer_size, heat_rgba  # noqa: E402


def _blob(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.exp(-(((yy - 0.3 * h) / (0.1 * h)) ** 2 + ((xx - 0.7 * w) / (0.1 * w)) ** 2)).astype(np.float32)


def test_layer_size_keeps_the_aspect_and_small_maps_untouched():
    assert colour_layer_size((2048, 1024)) == (COLOUR_LAYER_MAX_SIDE, COLOUR_LAYER_MAX_SIDE // 2)
    assert colour_layer_size((3000, 2000), 1000) == (1000, 667)
    assert colour_layer_size((300, 200)) == (300, 200)
    small = _blob(300, 200)
    assert np.array_equal(heat_rgba(small, "inferno", 0.5, COLOUR_LAYER_MAX_SIDE), heat_rgba(small, "inferno", 0.5))


def test_smaller_layer_matches_the_full_one_where_it_lands():
    heat = _blob(2048, 1536)
    full = heat_rgba(heat, "inferno", 0.5)
    small = heat_rgba(heat, "inferno", 0.5, COLOUR_LAYER_MAX_SIDE)
    assert small.shape == (1024, 768, 4)
    # the peak and the transparent background are where they are on the full layer
    assert full[int(0.3 * 2048), int(0.7 * 1536), 3] == 255
    sy, sx = 2048 / 1024, 1536 / 768
    y, x = int(0.3 * 2048 / sy), int(0.7 * 1536 / sx)
    assert small[y, x, 3] == 255
    assert small[10, 10, 3] == 0 and full[20, 20, 3] == 0
    # alpha agrees with the full layer sampled at the same places (within a ramp step)
    sampled = full[::2, ::2, 3].astype(int)
    assert np.abs(sampled - small[..., 3].astype(int)).max() <= 16


def test_viewer_stretches_a_smaller_layer_over_the_whole_image(qtbot):
    from PySide6.QtGui import QImage

    from xray_gui.images import grey_to_qimage, rgba_to_qimage
    from xray_gui.viewer import ImageViewer

    v = ImageViewer()
    qtbot.addWidget(v)
    v.resize(800, 600)
    v.set_image(grey_to_qimage((np.random.default_rng(0).random((1800, 1200)) * 255).astype(np.uint8)))
    layer = rgba_to_qimage(heat_rgba(_blob(1800, 1200), "inferno", 0.5, 900))
    assert (layer.width(), layer.height()) == (600, 900)
    v.set_overlay(layer, 0.5)
    assert v.overlay_visible()
    assert v._overlay.sceneBoundingRect() == v._item.sceneBoundingRect()
    v.set_overlay(QImage(), 0.5)
    assert not v.overlay_visible()
