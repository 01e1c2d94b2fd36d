"""The paper's preprocessing, in one place for training and inference.

Input contract (what every loader returns): a ``numpy.float32`` array of shape
``(H, W)`` with values in ``[0, 1]``, 0 = black, 1 = white, as a radiologist
sees it (MONOCHROME1 already inverted, DICOM window already applied).  For an
8-bit PNG this is exactly the paper's "divide by 255".

Output: a ``numpy.float32`` array ``(3, S, S)`` in ``[0, 1]``: resized to
``S x S`` (bilinear, antialiased, aspect ratio not kept, like the Kaggle set)
and the grey channel repeated three times.  No ImageNet mean/std: the paper
mentions none, so none is applied (documented in docs/DECISIONS.md).

No torch here (a run whose networks come from cached ONNX Runtime graphs never
imports it): :func:`resize_grey` computes PyTorch's ``interpolate(mode="bilinear",
antialias=True, align_corners=False)`` in NumPy - the same float32 filter weights
(a triangle widened by the scale when shrinking, PIL's algorithm that PyTorch
ported), applied as banded matrix products along each axis, within 3e-7 of PyTorch
(``tests/test_resize.py``), so a model trained on PyTorch's resize sees the same
input; :func:`bilinear`, the ``antialias=False`` form for heatmaps and masks, is
OpenCV's (within 1e-4 on noise, less on smooth maps).  (Pillow's float resize computes the
weights in double precision and differs by up to 1.2e-5, enough to move a CLAHE
level and P(COVID) by up to 0.003.)
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

PAPER_INPUT_SIZE = 224


def _grey(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


@functools.lru_cache(maxsize=64)
def _aa_blocks(n_in: int, n_out: int) -> tuple:
    """PyTorch's antialiased bilinear weights from ``n_in`` to ``n_out`` samples (float32, as its CPU kernel
    computes them), as blocks of 32 output rows ``(r0, r1, c0, c1, weights (r1-r0, c1-c0))``: the band of
    inputs each block reads."""
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)
    support = scale if scale >= 1.0 else f32(1.0)  # the triangle's half-width, widened when shrinking
    invscale = f32(1.0) / scale if scale >= 1.0 else f32(1.0)
    center = scale * (np.arange(n_out, dtype=f32) + f32(0.5))
    xmin = np.maximum((center - support + f32(0.5)).astype(np.int64), 0)
    xmax = np.minimum((center + support + f32(0.5)).astype(np.int64), n_in)
    taps = np.arange(int((xmax - xmin).max()), dtype=np.int64)
    w = np.maximum(f32(0.0), f32(1.0) - np.abs(((taps[None, :] + xmin[:, None]).astype(f32) - center[:, None]
                                                   + f32(0.5)) * invscale))
    w[taps[None, :] >= (xmax - xmin)[:, None]] = 0
    total = w.sum(axis=1, keepdims=True, dtype=f32)
    w = (w / np.where(total != 0, total, f32(1.0))).astype(f32)
    blocks = []
    for r0 in range(0, n_out, 32):
        r1 = min(n_out, r0 + 32)
        c0, c1 = int(xmin[r0:r1].min()), int(xmax[r0:r1].max())
        band = np.zeros((r1 - r0, c1 - c0), dtype=f32)
        for r in range(r0, r1):
            n = int(xmax[r] - xmin[r])
            band[r - r0, xmin[r] - c0:xmin[r] - c0 + n] = w[r, :n]
        blocks.append((r0, r1, c0, c1, band))
    return tuple(blocks)


def _along_rows(a: np.ndarray, n_out: int) -> np.ndarray:
    out = np.empty((n_out, a.shape[1]), dtype=np.float32)
    for r0, r1, c0, c1, band in _aa_blocks(a.shape[0], n_out):
        out[r0:r1] = band @ a[c0:c1]
    return out


def resize_grey(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """The one image resize on the way to a model: grey ``(H, W)`` in [0, 1] ->
    ``(size, size)`` (or ``(rows, cols)``) float32 in [0, 1] (bilinear, antialiased,
    aspect ratio not kept).  Used by :func:`preprocess` (the classifier's input), the
    training cache (:func:`training.train.data.decode_all`, stored as uint8), the
    lung view (:func:`training.model.lung_input.model_view`), the lung segmenter's
    and the orientation check's inputs."""
    arr = _grey(image)
    rows, cols = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if arr.shape[0] != rows:
        arr = _along_rows(arr, rows)
    if arr.shape[1] != cols:
        arr = np.ascontiguousarray(_along_rows(np.ascontiguousarray(arr.T), cols).T)
    return np.clip(arr, 0.0, 1.0)


def bilinear(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(..., h, w)`` -> ``(..., rows, cols)`` float32, bilinear with half-pixel centres and no
    antialiasing (PyTorch's ``interpolate(mode="bilinear", align_corners=False)``, within 1e-4 on noise):
    heatmaps put in place, masks brought to another grid.  OpenCV's ``INTER_LINEAR`` - the resize
    pytorch-grad-cam itself uses for Grad-CAM - which is fast and releases the GIL while it works
    (a 2k heatmap in 5 ms, beside a GUI thread)."""
    import cv2

    a = np.asarray(arr, dtype=np.float32)
    rows, cols = int(shape[0]), int(shape[1])
    if a.shape[-2:] == (rows, cols):
        return np.ascontiguousarray(a)
    if a.ndim != 2:
        flat = a.reshape(-1, *a.shape[-2:])
        return np.stack([bilinear(x, (rows, cols)) for x in flat]).reshape(*a.shape[:-2], rows, cols)
    return cv2.resize(np.ascontiguousarray(a), (cols, rows), interpolation=cv2.INTER_LINEAR)


def preprocess(image: np.ndarray, size: int = PAPER_INPUT_SIZE) -> np.ndarray:
    """One grey image ``(H, W)`` in [0, 1] -> ``(3, size, size)`` float32 in [0, 1]."""
    return np.ascontiguousarray(np.broadcast_to(resize_grey(image, size), (3, size, size)))


def preprocess_batch(images: Sequence[np.ndarray], size: int = PAPER_INPUT_SIZE) -> np.ndarray:
    """Several grey images -> ``(N, 3, size, size)`` float32."""
    if len(images) == 0:
        return np.empty((0, 3, size, size), dtype=np.float32)
    return np.stack([preprocess(im, size) for im in images])
