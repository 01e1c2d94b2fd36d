"""The paper's preprocessing, in one place for training and inference.

Input contract (what every loader returns): a ``numpy.float32`` array of shape
``(H, W)`` with values in ``[0, 1]``, 0 = black, 1 = white, as a radiologist
sees it (MONOCHROME1 already inverted, DICOM window already applied).  For an
8-bit PNG this is exactly the paper's "divide by 255".

Output: a ``torch.float32`` tensor ``(3, S, S)`` in ``[0, 1]``: resized to
``S x S`` (bilinear, antialiased, aspect ratio not kept, like the Kaggle set)
and the grey channel repeated three times.  No ImageNet mean/std: the paper
mentions none, so none is applied (documented in docs/DECISIONS.md).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

PAPER_INPUT_SIZE = 224


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W) float in [0, 1] -> (1, 1, H, W) float32 tensor, validated."""
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    return t[None, None]


def resize_grey(image: np.ndarray, size: int) -> torch.Tensor:
    """The one image resize on the way to a model: grey ``(H, W)`` in [0, 1] ->
    ``(size, size)`` float32 tensor in [0, 1] (bilinear, antialiased, aspect
    ratio not kept).  Used by :func:`preprocess` (the classifier's input), the
    training cache (:func:`training.train.data.decode_all`, stored as uint8), the
    lung view (:func:`training.model.lung_input.model_view`) and the lung segmenter's
    input (:func:`training.gate.segmenter.to_seg_input`)."""
    t = to_tensor(image)
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t[0, 0].clamp(0.0, 1.0)


def preprocess(image: np.ndarray, size: int = PAPER_INPUT_SIZE) -> torch.Tensor:
    """One grey image ``(H, W)`` in [0, 1] -> ``(3, size, size)`` float32 in [0, 1]."""
    return resize_grey(image, size).expand(3, size, size).contiguous()


def preprocess_batch(images: Sequence[np.ndarray], size: int = PAPER_INPUT_SIZE) -> torch.Tensor:
    """Several grey images -> ``(N, 3, size, size)`` float32."""
    if len(images) == 0:
        return torch.empty(0, 3, size, size)
    return torch.stack([preprocess(im, size) for im in images])
