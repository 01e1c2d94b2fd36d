"""Augmentation suited to chest radiographs, on whole batches (cheap, on the
training device).  No flips at any level: left/right anatomy (heart, aortic
knob, stomach bubble) matters in a chest film.  Used only by recipes with
``augment=True`` (not the paper's).

* ``basic``: small rotations (+-7 deg), shifts (+-6 %), scale (0.92-1.08),
  brightness (+-10 %) and contrast (+-15 %).
* ``source``: meant to break the cues that tell one hospital's films from
  another's rather than the disease: the basic geometry a little wider
  (+-10 deg, +-8 %, scale 0.85-1.15, i.e. random resized crops), then per
  image gamma (0.7-1.45), a blur or an unsharp-mask sharpening, a resolution
  drop (down to 40-100 % and back), Gaussian noise and JPEG re-compression
  (quality 30-90), each with its own probability.
"""

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


LEVELS = ("basic", "source")
SOURCE_GEOMETRY = {"rot": 10.0, "shift": 0.08, "scale": (0.85, 1.15)}
GAMMA = (0.7, 1.45)
P_BLUR, P_SHARPEN, P_LOWRES, P_NOISE, P_JPEG = 0.25, 0.25, 0.3, 0.3, 0.3
BLUR_SIGMA = (0.4, 1.2)
SHARPEN = (0.3, 1.0)
LOWRES = (0.4, 1.0)
NOISE_STD = (0.005, 0.03)
JPEG_QUALITY = (30, 90)


def augment_batch(x: torch.Tensor, generator: torch.Generator | None = None, level: str = "basic",
                  masks: torch.Tensor | None = None):
    """``x``: (B, 1, S, S) float in [0, 1] -> same shape, augmented, in [0, 1].

    ``masks`` (B, 1, s, s) float in [0, 1], any square size: moved by the same
    rotation, shift and scale as their images (bilinear, zero outside) and
    returned with them, ``(x, masks)``; the grey-level changes leave them alone."""
    if level not in LEVELS:
        raise ValueError(f"unknown augmentation level {level!r}; choose from {', '.join(LEVELS)}")
    b = x.shape[0]
    rot, shift, scl = MAX_ROT_DEG, MAX_SHIFT, SCALE
    if level == "source":
        rot, shift, scl = SOURCE_GEOMETRY["rot"], SOURCE_GEOMETRY["shift"], SOURCE_GEOMETRY["scale"]
    ang = _uniform(b, -rot, rot, generator) * math.pi / 180
    scale = _uniform(b, *scl, generator)
    tx = _uniform(b, -shift, shift, generator) * 2
    ty = _uniform(b, -shift, shift, generator) * 2
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    moved = None
    if masks is not None:
        mgrid = F.affine_grid(theta.to(masks.dtype), list(masks.shape), align_corners=False)
        moved = F.grid_sample(masks, mgrid.to(masks.device), mode="bilinear", padding_mode="zeros",
                              align_corners=False).clamp_(0.0, 1.0)
    bright = _uniform(b, -BRIGHTNESS, BRIGHTNESS, generator).to(x.device, x.dtype).view(b, 1, 1, 1)
    contrast = _uniform(b, 1 - CONTRAST, 1 + CONTRAST, generator).to(x.device, x.dtype).view(b, 1, 1, 1)
    mean = out.mean(dim=(2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + bright
    out = out.clamp_(0.0, 1.0)
    if level == "source":
        out = _source_style(out, generator)
    return out if masks is None else (out, moved)


def _chosen(b: int, p: float, g: torch.Generator | None) -> torch.Tensor:
    return torch.rand(b, generator=g) < p


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def _jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    """(1, H, W) in [0, 1] -> the same after a JPEG round trip at ``quality`` (PIL)."""
    import io

    import numpy as np
    from PIL import Image

    u8 = (img.detach().cpu()[0].clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(u8, mode="L").save(buf, format="JPEG", quality=int(quality))
    back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(back)[None].to(img.device, img.dtype)


def _source_style(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """Per-image grey-level curve, sharpness, resolution, noise and compression."""
    b, _, h, w = x.shape
    gamma = torch.exp(_uniform(b, math.log(GAMMA[0]), math.log(GAMMA[1]), g)).to(x.device, x.dtype)
    x = x.clamp(1e-4, 1.0) ** gamma.view(b, 1, 1, 1)
    blur, sharpen = _chosen(b, P_BLUR, g), _chosen(b, P_SHARPEN, g)
    sigmas = _uniform(b, *BLUR_SIGMA, g)
    amounts = _uniform(b, *SHARPEN, g)
    lowres, factors = _chosen(b, P_LOWRES, g), _uniform(b, *LOWRES, g)
    noisy, stds = _chosen(b, P_NOISE, g), _uniform(b, *NOISE_STD, g)
    jpeg, qualities = _chosen(b, P_JPEG, g), torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (b,), generator=g)
    noise = torch.randn(x.shape, generator=g).to(x.device, x.dtype)
    out = []
    for i in range(b):
        im = x[i:i + 1]
        if blur[i]:
            im = _blur(im, float(sigmas[i]))
        elif sharpen[i]:
            im = im + float(amounts[i]) * (im - _blur(im, 1.0))
        if lowres[i]:
            s = max(8, int(round(h * float(factors[i]))))
            im = F.interpolate(F.interpolate(im, size=(s, s), mode="bilinear", align_corners=False, antialias=True),
                               size=(h, w), mode="bilinear", align_corners=False)
        if noisy[i]:
            im = im + float(stds[i]) * noise[i:i + 1]
        im = im.clamp(0.0, 1.0)
        if jpeg[i]:
            im = _jpeg(im[0], int(qualities[i]))[None]
        out.append(im)
    return torch.cat(out).clamp_(0.0, 1.0)
