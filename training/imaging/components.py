"""Connected components of a binary mask: each part's pixel count, bounding box and centre.

OpenCV's ``connectedComponentsWithStats`` with 4-connectivity, the same parts as
``scipy.ndimage.label``'s default (``tests/test_components.py`` compares them on real lung masks):
the gate's lung measurements and the classifier's lung box use it, and a classification
never imports SciPy's image module (half a second of start-up on a 2-core CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Part:
    """One connected part: ``pixels`` counted, rows ``top..bottom`` and columns ``left..right``
    (stop excluded, like slices), centre ``(cy, cx)`` in pixels."""

    pixels: int
    top: int
    left: int
    bottom: int
    right: int
    cy: float
    cx: float


def parts(mask: np.ndarray) -> list[Part]:
    """The 4-connected parts of a 2-D boolean mask, in raster order of their first pixel."""
    import cv2

    m = np.ascontiguousarray(np.asarray(mask, dtype=bool), dtype=np.uint8)
    if m.ndim != 2 or not m.any():
        return []
    n, _, stats, centres = cv2.connectedComponentsWithStats(m, connectivity=4, ltype=cv2.CV_32S)
    out = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        out.append(Part(pixels=area, top=y, left=x, bottom=y + h, right=x + w, cy=float(centres[i][1]),
                        cx=float(centres[i][0])))
    return out


__all__ = ["Part", "parts"]
