"""The NumPy resizes (``training.imaging.resize``) compute PyTorch's ``interpolate``: antialiased bilinear
(``resize_grey``, the input of every model) and plain bilinear (``bilinear``, heatmaps and masks; OpenCV's), within 1e-6 and 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.imaging.resize import bilinear, preprocess, resize_grey

SHAPES = [((2500, 2048), (256, 256)), ((299, 299), (224, 224)), ((100, 150), (192, 192)), ((1000, 800), (96, 96)),
          ((7, 7), (192, 192)), ((300, 200), (256, 180)), ((224, 224), (224, 224)), ((31, 517), (64, 64))]


@pytest.mark.parametrize("shape,size", SHAPES)
def test_resize_grey_is_torchs_antialiased_bilinear(shape, size):
    a = np.random.default_rng(0).random(shape, dtype=np.float32)
    want = F.interpolate(torch.from_numpy(a)[None, None], size=size, mode="bilinear", align_corners=False,
                         antialias=True)[0, 0].clamp(0, 1).numpy()
    got = resize_grey(a, size)
    assert got.dtype == np.float32 and got.shape == size
    assert np.abs(got - want).max() < 1e-6


@pytest.mark.parametrize("shape,size", SHAPES + [((3, 6, 6), (192, 192)), ((256, 256), (2000, 1500))])
def test_bilinear_is_torchs_plain_bilinear(shape, size):
    a = np.random.default_rng(1).random(shape, dtype=np.float32)
    t = torch.from_numpy(a)
    t = t[None, None] if a.ndim == 2 else t[:, None]
    want = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    want = (want[0, 0] if a.ndim == 2 else want[:, 0]).numpy()
    assert np.abs(bilinear(a, size) - want).max() < 1e-4  # on noise, the worst case; smooth maps differ less


def test_preprocess_repeats_the_grey_channel():
    a = np.random.default_rng(2).random((50, 70), dtype=np.float32)
    x = preprocess(a, 32)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    assert np.array_equal(x[0], x[2]) and np.array_equal(x[0], resize_grey(a, 32))
    with pytest.raises(ValueError):
        resize_grey(np.zeros((2, 3, 4), np.float32), 8)
