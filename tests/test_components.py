"""``training.imaging.components.parts`` (OpenCV) gives the same parts as ``scipy.ndimage.label``'s default
4-connectivity - sizes, boxes, centres - on real lung masks and on noise, and the gate's lung measurements and the
classifier's lung box built on it are those of the former SciPy code."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED
from scipy import ndimage

from training.imaging.components import parts


def _scipy_parts(mask):
    lab, n = ndimage.label(mask)
    out = []
    for i, sl in enumerate(ndimage.find_objects(lab)):
        ys, xs = sl
        cy, cx = ndimage.center_of_mass(mask, lab, i + 1)
        out.append((int((lab == i + 1).sum()), ys.start, xs.start, ys.stop, xs.stop, cy, cx))
    return out


def _masks():
    from PIL import Image

    folder = SHARED / "data" / "cxr-lung-masks-600" / "masks"
    files = sorted(folder.glob("*.png"))[:60] if folder.is_dir() else []
    rng = np.random.default_rng(5)
    noise = [ndimage.binary_opening(rng.random((128, 96)) > 0.55) for _ in range(4)]
    return [np.asarray(Image.open(f).convert("L")) > 127 for f in files] + noise + [np.zeros((8, 8), bool)]


def test_parts_are_scipys_components():
    masks = _masks()
    assert len(masks) > 5
    for m in masks:
        got = [(p.pixels, p.top, p.left, p.bottom, p.right, p.cy, p.cx) for p in parts(m)]
        want = _scipy_parts(m)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g[:5] == w[:5]
            assert g[5] == pytest.approx(w[5], abs=1e-9) and g[6] == pytest.approx(w[6], abs=1e-9)


def test_lung_box_is_the_two_largest_parts_box():
    from training.model.lung_input import lung_box

    for m in _masks()[:20]:
        if m.mean() < 0.02:
            continue
        lab, n = ndimage.label(m)  # the former code: the union of the two largest components
        keep = 1 + np.argsort(ndimage.sum_labels(m, lab, np.arange(1, n + 1)))[::-1][:2]
        both = np.isin(lab, keep)
        rows, cols = np.flatnonzero(both.any(axis=1)), np.flatnonzero(both.any(axis=0))
        box = lung_box(m, margin=0.0)
        h, w = m.shape
        assert (box.top, box.bottom) == (rows[0] / h, (rows[-1] + 1) / h)
        assert (box.left, box.right) == (cols[0] / w, (cols[-1] + 1) / w)
