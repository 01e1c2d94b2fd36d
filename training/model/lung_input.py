"""The classifier's view of an image: the lung region, intensity-normalised.

One function, :func:`model_view`, is used by training (once per image, when the
data set is decoded), by prediction (single image and batch) and by Grad-CAM,
so a model always sees what it was trained on.  What a model needs is stored
in its file (``ModelInfo.preprocessing``) and read back by :class:`InputSpec`.

* ``region = "whole"``: the image as the loader returns it (the paper's input).
* ``region = "lungs"``: the bounding box of the lung mask (the lung segmenter's
  two largest components), widened by ``margin`` of the box size on every side
  and clamped to the image, cropped from the full-resolution pixels.  When the
  segmenter finds almost no lung (< ``MIN_LUNG_SHARE`` of the image) the whole
  image is used and the result says so.
* ``intensity = "clahe"``: contrast-limited adaptive histogram equalisation
  (OpenCV, clip limit 2, 8 x 8 tiles) on the crop resized to ``WORK_SIZE``
  square, which removes most of the scanner's and the hospital's grey-level
  style (exposure, processing curve) while keeping local contrast.
  ``"none"`` leaves the grey levels alone.
* ``outside = "masked"`` (lung-region models only): after the crop and the
  intensity step, everything outside the lung mask, widened by
  ``MASK_DILATE`` of the view's side and feathered over ``MASK_FEATHER`` of it,
  is set to black, so the model cannot read markers, tubes, the chest wall or
  the hospital's labels around the lungs.  ``"keep"`` (v1, v2) keeps them.

:func:`model_input` is the path from loader pixels to the model's input tensor
(prediction, the batch pipeline, Grad-CAM): one resize to the input size, or
for a CLAHE model the canvas the file records (``work_size``), CLAHE, then the
input size.  :func:`model_view` is the training cache's view: at the work size
(aspect not kept, like the rest of the pipeline), augmented and resized to the
input size by the trainer.  ``Box`` fractions let Grad-CAM put a
heatmap computed on the crop back in place on the full image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from training.imaging.components import parts
from training.imaging.resize import bilinear, preprocess, resize_grey

REGIONS = ("whole", "lungs")
INTENSITIES = ("none", "clahe")
OUTSIDES = ("keep", "masked")
MASK_DILATE = 0.04  # the lung mask widened by 4 % of the view's side (pleura, costophrenic angles)
MASK_FEATHER = 0.02  # then a soft edge (Gaussian, sigma 2 % of the side): no hard border to learn
WORK_SIZE = 256
DEFAULT_MARGIN = 0.10
MIN_LUNG_SHARE = 0.02
CLAHE_CLIP = 2.0
CLAHE_TILES = 8


@dataclass(frozen=True)
class Box:
    """A region as fractions of the image: rows ``top..bottom``, columns ``left..right``."""

    top: float = 0.0
    left: float = 0.0
    bottom: float = 1.0
    right: float = 1.0

    @property
    def whole(self) -> bool:
        return self == Box()

    def pixels(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """(r0, c0, r1, c1) in an image of ``shape``; at least 2 x 2 pixels."""
        h, w = int(shape[0]), int(shape[1])
        r0 = min(max(0, int(np.floor(self.top * h))), h - 2)
        c0 = min(max(0, int(np.floor(self.left * w))), w - 2)
        r1 = max(r0 + 2, min(h, int(np.ceil(self.bottom * h))))
        c1 = max(c0 + 2, min(w, int(np.ceil(self.right * w))))
        return r0, c0, r1, c1


@dataclass(frozen=True)
class InputSpec:
    """What a model's input is made of (stored in the model file)."""

    region: str = "whole"
    intensity: str = "none"
    margin: float = DEFAULT_MARGIN
    work_size: int = WORK_SIZE  # CLAHE's canvas: its 8 x 8 tiles are defined on this square
    outside: str = "keep"  # "masked": black outside the (widened) lung mask

    def __post_init__(self):
        if self.region not in REGIONS:
            raise ValueError(f"unknown input region {self.region!r}; choose from {', '.join(REGIONS)}")
        if self.intensity not in INTENSITIES:
            raise ValueError(f"unknown intensity normalisation {self.intensity!r}; choose from {', '.join(INTENSITIES)}")
        if not (0.0 <= float(self.margin) <= 0.5):
            raise ValueError(f"lung margin {self.margin!r} must be between 0 and 0.5")
        if self.outside not in OUTSIDES:
            raise ValueError(f"unknown outside-the-lungs rule {self.outside!r}; choose from {', '.join(OUTSIDES)}")
        if self.outside != "keep" and self.region != "lungs":
            raise ValueError("masking outside the lungs needs the lung region (region = 'lungs')")
        if not (16 <= int(self.work_size) <= 4096):
            raise ValueError(f"work size {self.work_size!r} must be between 16 and 4096 pixels")

    @property
    def needs_lungs(self) -> bool:
        return self.region == "lungs"

    @property
    def plain(self) -> bool:
        """The paper's input: nothing to do before the model's resize."""
        return self.region == "whole" and self.intensity == "none"

    def to_metadata(self) -> dict[str, Any]:
        d = {"region": self.region, "intensity": self.intensity, "lung_margin": float(self.margin),
             "work_size": int(self.work_size)}
        if self.outside != "keep":  # files written before the rule existed keep their exact metadata
            d["outside_lungs"] = self.outside
        return d

    @classmethod
    def from_metadata(cls, prep: Mapping[str, Any] | None) -> "InputSpec":
        prep = prep or {}
        return cls(region=str(prep.get("region", "whole")), intensity=str(prep.get("intensity", "none")),
                   margin=float(prep.get("lung_margin", DEFAULT_MARGIN)),
                   work_size=int(prep.get("work_size", WORK_SIZE)),
                   outside=str(prep.get("outside_lungs", "keep")))

    def describe(self) -> str:
        where = (f"the lungs' box (+{self.margin:.0%} margin)" if self.needs_lungs else "the whole image")
        how = {"none": "grey levels as loaded", "clahe": "CLAHE contrast normalisation"}[self.intensity]
        masked = ", black outside the lungs" if self.outside == "masked" else ""
        return f"{where}, {how}{masked}"


def lung_box(mask: np.ndarray | None, margin: float = DEFAULT_MARGIN) -> Box:
    """The lungs' bounding box (two largest components) widened by ``margin``;
    the whole image when the mask holds almost no lung."""
    if mask is None:
        return Box()
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2 or m.mean() < MIN_LUNG_SHARE:
        return Box()
    two = sorted(parts(m), key=lambda p: -p.pixels)[:2]  # the two largest parts (ties: raster order)
    h, w = m.shape
    top, bottom = min(p.top for p in two) / h, max(p.bottom for p in two) / h
    left, right = min(p.left for p in two) / w, max(p.right for p in two) / w
    dh, dw = (bottom - top) * margin, (right - left) * margin
    return Box(max(0.0, top - dh), max(0.0, left - dw), min(1.0, bottom + dh), min(1.0, right + dw))


def clahe(pixels: np.ndarray) -> np.ndarray:
    """CLAHE on a grey [0, 1] image (8-bit internally), back to float [0, 1]."""
    import cv2

    u8 = np.clip(np.asarray(pixels, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=(CLAHE_TILES, CLAHE_TILES)).apply(u8)
    return out.astype(np.float32) / np.float32(255.0)


def model_view(pixels: np.ndarray, spec: InputSpec, mask: np.ndarray | None = None) -> tuple[np.ndarray, Box]:
    """Loader pixels ``(H, W)`` in [0, 1] -> (the model's view, the box it came from).

    ``mask``: the lung mask (any resolution, the image stretched to it), needed
    when ``spec.region == 'lungs'``.  A plain spec returns the pixels unchanged."""
    if spec.plain:
        return pixels, Box()
    box = lung_box(mask, spec.margin) if spec.needs_lungs else Box()
    view = resize_grey(_crop(pixels, box), spec.work_size)
    if spec.intensity == "clahe":
        view = clahe(view)
    if spec.outside == "masked":
        view = mask_outside(view, mask, box)
    return np.ascontiguousarray(view, dtype=np.float32), box


def soft_lung_mask(mask: np.ndarray | None, box: Box, shape: tuple[int, int]) -> np.ndarray:
    """The lung mask on the view: cropped to ``box``, resized to ``shape``,
    widened by ``MASK_DILATE`` and feathered by ``MASK_FEATHER`` of the side
    (float32 in [0, 1]); all ones when there is no usable mask (the view is then
    the whole image and the result says the lungs were not found)."""
    h, w = int(shape[0]), int(shape[1])
    if mask is None or np.asarray(mask).mean() < MIN_LUNG_SHARE:
        return np.ones((h, w), dtype=np.float32)
    m = np.asarray(mask, dtype=np.float32)
    r0, c0, r1, c1 = box.pixels(m.shape)
    # built on a canvas of at most WORK_SIZE a side (a 2k view costs the same as a 256 one), then resized
    scale = min(1.0, WORK_SIZE / max(h, w))
    ch, cw = max(2, int(round(h * scale))), max(2, int(round(w * scale)))
    on_canvas = bilinear(m[r0:r1, c0:c1], (ch, cw)) >= 0.5
    side = max(ch, cw)
    grow = max(1, int(round(MASK_DILATE * side)))
    from scipy import ndimage  # the masked input only (an experiment, not a shipped model)

    widened = ndimage.binary_dilation(on_canvas, structure=np.ones((3, 3), bool), iterations=grow)
    soft = np.clip(ndimage.gaussian_filter(widened.astype(np.float32), sigma=max(0.5, MASK_FEATHER * side)), 0, 1)
    if (ch, cw) != (h, w):
        soft = bilinear(soft, (h, w))
    return np.ascontiguousarray(soft, dtype=np.float32)


def mask_outside(view: np.ndarray, mask: np.ndarray | None, box: Box) -> np.ndarray:
    """``view`` (the crop of ``box``) black outside the widened, feathered lung mask."""
    view = np.asarray(view, dtype=np.float32)
    return view * soft_lung_mask(mask, box, view.shape)


def _crop(pixels: np.ndarray, box: Box) -> np.ndarray:
    if box.whole:
        return pixels
    r0, c0, r1, c1 = box.pixels(pixels.shape)
    return pixels[r0:r1, c0:c1]


def model_input(pixels: np.ndarray, spec: InputSpec, size: int,
                mask: np.ndarray | None = None) -> tuple[np.ndarray, Box]:
    """THE image -> model path of prediction, the batch pipeline and Grad-CAM:
    loader pixels ``(H, W)`` in [0, 1] -> the model's input ``(3, size, size)`` and
    the region it shows (a float32 array; the engines take NumPy batches).

    One resize, from the (cropped) image to the model's input size, except for
    a CLAHE model: CLAHE's tiles are defined on the model file's ``work_size``
    square, so the crop is resized to that canvas, equalised, then resized to
    the input size (a second resize only when the two sizes differ; the shipped
    models record 256 and 224 / 192: they were trained that way)."""
    box = lung_box(mask, spec.margin) if spec.needs_lungs else Box()
    view = _crop(pixels, box)
    if spec.intensity == "clahe":
        view = clahe(resize_grey(view, spec.work_size))
    if spec.outside == "masked":
        view = mask_outside(view, mask, box)
    return preprocess(view, size), box


def place_heatmap(heat: np.ndarray, box: Box, shape: tuple[int, int]) -> np.ndarray:
    """A heatmap computed on the model's view -> the full image's ``shape``
    (zero outside the box)."""
    out = np.zeros(tuple(int(s) for s in shape), dtype=np.float32)
    r0, c0, r1, c1 = box.pixels(out.shape)
    out[r0:r1, c0:c1] = bilinear(heat, (r1 - r0, c1 - c0))
    return out


__all__ = ["Box", "InputSpec", "REGIONS", "INTENSITIES", "OUTSIDES", "WORK_SIZE", "lung_box", "model_view",
           "model_input", "mask_outside", "soft_lung_mask", "place_heatmap", "clahe"]
