"""Augmentation suited to chest radiographs, on whole batches (cheap, on the
training device): small rotations (+-7 deg), shifts (+-6 %), scale (0.92-1.08),
brightness (+-10 %) and contrast (+-15 %).  No flips: left/right anatomy
(heart, aortic knob, stomach bubble) matters in a chest film.  Used only by
recipes with ``augment=True`` (not the paper's)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_ROT_DEG = 7.0
MAX_SHIFT = 0.06
SCALE = (0.92, 1.08)
BRIGHTNESS = 0.10
CONTRAST = 0.15


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def augment_batch(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x``: (B, 1, S, S) float in [0, 1] -> same shape, augmented, in [0, 1]."""
    b = x.shape[0]
    ang = _uniform(b, -MAX_ROT_DEG, MAX_ROT_DEG, generator) * math.pi / 180
    scale = _uniform(b, *SCALE, generator)
    tx = _uniform(b, -MAX_SHIFT, MAX_SHIFT, generator) * 2
    ty = _uniform(b, -MAX_SHIFT, MAX_SHIFT, generator) * 2
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    bright = _uniform(b, -BRIGHTNESS, BRIGHTNESS, generator).to(x.device, x.dtype).view(b, 1, 1, 1)
    contrast = _uniform(b, 1 - CONTRAST, 1 + CONTRAST, generator).to(x.device, x.dtype).view(b, 1, 1, 1)
    mean = out.mean(dim=(2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + bright
    return out.clamp_(0.0, 1.0)
