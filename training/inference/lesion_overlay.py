"""The lesion map of a model-v2 result as an overlay, with numpy and contourpy
only (no torch, no Qt): the app draws it on the GUI thread from the
prediction's stored map, without running the model again.

``Prediction.lesion_u8`` is the lesion probability on the model's view (uint8,
0-255 = P 0-1, at 1/8 of the input size) and ``Prediction.input_box`` says where
that view lies in the image.  :func:`lesion_overlay` resamples it bilinearly
over the box, the same sampling as ``lung_input.place_heatmap``
(``align_corners=False``), at a bounded size, and gives the translucent fill
where P >= ``LESION_LEVEL`` and the contour lines at that level in image pixel
coordinates (like commercial chest-X-ray tools: a tinted region, outlined)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LESION_LEVEL = 0.5  # = training.inference.classifier.LESION_LEVEL (not imported here: that module pulls in torch)
LESION_RGB = (255, 60, 200)  # magenta: apart from the heatmap's colour maps, the cyan lung outline and grey film
FILL_ALPHA = 64  # of 255: the film stays readable under the fill; the contour is drawn opaque
MAX_SIDE = 256  # the overlay's long side at most (a fill; the contours are lines, sharp at any zoom)
OVERSAMPLE = 8  # and at most this many overlay cells per map cell: enough for smooth contours of a bilinear map


def resample(prob: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``(rows, cols)``, as torch's
    ``interpolate(mode='bilinear', align_corners=False)``.  float32."""
    p = np.asarray(prob, dtype=np.float32)
    h, w = p.shape

    def axis(n_in: int, n_out: int):
        s = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        s = np.maximum(s, 0.0)
        i0 = np.minimum(np.floor(s).astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (s - i0).astype(np.float32)

    r0, r1, fr = axis(h, int(rows))
    c0, c1, fc = axis(w, int(cols))
    tall = p[r0] * (1 - fr)[:, None] + p[r1] * fr[:, None]  # (rows, w): separable, rows first
    return (tall[:, c0] * (1 - fc) + tall[:, c1] * fc).astype(np.float32, copy=False)


@dataclass(frozen=True)
class LesionOverlay:
    """The lesion probability over the model's input box, ready to draw."""

    prob: np.ndarray  # float32 (h, w) in [0, 1]: P over the box, at the overlay's resolution
    box_px: tuple[int, int, int, int]  # (r0, c0, r1, c1): the box in the image's pixels
    level: float = LESION_LEVEL

    @property
    def mask(self) -> np.ndarray:
        """bool (h, w): lesion (P at or above the level)."""
        return self.prob >= self.level

    @property
    def any(self) -> bool:
        return bool(self.mask.any())

    def rgba(self, rgb=LESION_RGB, alpha: int = FILL_ALPHA) -> np.ndarray:
        """(h, w, 4) uint8, straight alpha: ``rgb`` at ``alpha`` inside the lesion, transparent outside."""
        out = np.zeros(self.prob.shape + (4,), dtype=np.uint8)
        m = self.mask
        out[m, :3] = np.asarray(rgb, dtype=np.uint8)
        out[m, 3] = np.uint8(alpha)
        return out

    def contours(self) -> list[np.ndarray]:
        """Closed polygons at the level, each ``(n, 2)`` float64 (x, y) in the
        image's pixel coordinates (pixel centres at +0.5), inside the box."""
        if not self.any:
            return []
        from contourpy import LineType, contour_generator  # matplotlib's contour engine

        h, w = self.prob.shape
        r0, c0, r1, c1 = self.box_px
        sx, sy = (c1 - c0) / w, (r1 - r0) / h
        z = np.pad(self.prob.astype(np.float64), 1)  # zero outside the box: contours close on it
        out = []
        for line in contour_generator(z=z, line_type=LineType.Separate).lines(float(self.level)):
            if len(line) < 3:
                continue
            pts = np.asarray(line, dtype=np.float64)
            x = np.clip(c0 + (pts[:, 0] - 0.5) * sx, c0, c1)  # -1 (pad) + 0.5 (pixel centre)
            y = np.clip(r0 + (pts[:, 1] - 0.5) * sy, r0, r1)
            out.append(np.stack([x, y], axis=1))
        return out


def lesion_overlay(lesion_u8: np.ndarray | None, box, image_shape: tuple[int, int], *,
                   level: float = LESION_LEVEL, max_side: int = MAX_SIDE,
                   oversample: int | None = OVERSAMPLE) -> LesionOverlay | None:
    """The overlay of a stored lesion map (``Prediction.lesion_u8``) on an image of
    ``image_shape`` = (rows, cols).  ``box``: ``Prediction.input_box`` (anything
    with ``pixels(shape) -> (r0, c0, r1, c1)``; None = the whole image).  The
    map is resampled to the box's size, at most ``max_side`` px and ``oversample``
    x the map's size on its long side (None: no such limit); the viewer
    stretches the fill over the box.  A few ms: cheap enough for the GUI
    thread.  None without a map."""
    if lesion_u8 is None:
        return None
    rows, cols = int(image_shape[0]), int(image_shape[1])
    r0, c0, r1, c1 = box.pixels((rows, cols)) if box is not None else (0, 0, rows, cols)
    bh, bw = max(1, r1 - r0), max(1, c1 - c0)
    prob = np.asarray(lesion_u8, dtype=np.float32) / np.float32(255.0)
    side = float(max_side) if oversample is None else min(float(max_side), float(oversample) * max(prob.shape))
    scale = min(1.0, side / max(bh, bw))
    h, w = max(1, int(round(bh * scale))), max(1, int(round(bw * scale)))
    return LesionOverlay(np.clip(resample(prob, h, w), 0.0, 1.0), (int(r0), int(c0), int(r1), int(c1)),
                         float(level))


__all__ = ["LESION_LEVEL", "LESION_RGB", "FILL_ALPHA", "MAX_SIDE", "OVERSAMPLE", "LesionOverlay", "lesion_overlay",
           "resample"]
