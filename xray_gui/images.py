"""numpy <-> QImage conversions (no image logic: the core makes the pixels).

QImage (unlike QPixmap) may be built in worker threads, so thumbnails are
made there and only drawn on the GUI thread.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

THUMB_SIZE = 40


def grey_to_qimage(pixels: np.ndarray) -> QImage:
    """(H, W) float in [0, 1] (1 = white) -> 8-bit greyscale QImage (owns its data)."""
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape
    img = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_Grayscale8)
    return img.copy()  # detach from the numpy buffer


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """(H, W, 3) uint8 -> RGB888 QImage (owns its data)."""
    arr = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    h, w, _ = arr.shape
    img = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_RGB888)
    return img.copy()


def thumbnail(pixels: np.ndarray, size: int = THUMB_SIZE) -> QImage:
    """A small greyscale QImage, aspect ratio kept (worker-thread safe)."""
    arr = np.asarray(pixels)
    h, w = arr.shape[:2]
    step = max(1, int(max(h, w) // (size * 2)))
    small = arr[::step, ::step]  # cheap decimation first, smooth scaling after
    img = grey_to_qimage(small)
    return img.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                      Qt.TransformationMode.SmoothTransformation)
