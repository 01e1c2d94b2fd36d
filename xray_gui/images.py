"""numpy <-> QImage conversions (no image logic: the core makes the pixels),
the lung mask's outline as a QPainterPath, and a model-v2 lesion map as a
layer (fill + contour lines).

QImage and QPainterPath (unlike QPixmap) may be built in worker threads, so
thumbnails and outlines are made there and only drawn on the GUI thread.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainterPath, QPolygonF

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


def rgba_to_qimage(rgba: np.ndarray) -> QImage:
    """(H, W, 4) uint8, straight (not premultiplied) alpha -> RGBA8888 QImage (owns its data)."""
    arr = np.ascontiguousarray(np.asarray(rgba, dtype=np.uint8))
    h, w, _ = arr.shape
    img = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_RGBA8888)
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


def lung_outline_path(mask: np.ndarray | None, image_shape: tuple[int, int]) -> QPainterPath | None:
    """The contour of a lung mask (bool, any square size, in "image stretched
    to a square" coordinates, as ``Prediction.lung_mask``) as a path in the
    image's pixel coordinates; ``image_shape`` = (rows, cols).  None without a
    mask or when the mask is empty.  Worker-thread safe."""
    if mask is None or not np.any(mask):
        return None
    from contourpy import LineType, contour_generator  # matplotlib's contour engine

    m = np.asarray(mask)
    rows, cols = m.shape
    z = np.pad(m.astype(np.float32), 1)  # closes contours that touch the border
    sx, sy = image_shape[1] / cols, image_shape[0] / rows
    path = QPainterPath()
    for line in contour_generator(z=z, line_type=LineType.Separate).lines(0.5):
        if len(line) < 3:
            continue
        pts = (np.asarray(line, dtype=np.float64) - 0.5) * (sx, sy)  # -1 (pad) + 0.5 (pixel centre)
        path.addPolygon(QPolygonF([QPointF(float(x), float(y)) for x, y in pts]))
        path.closeSubpath()
    return path


class LesionLayer:
    """A model-v2 lesion map ready for the viewer and the PDF report
    (``training.inference.lesion_overlay``): ``fill`` (RGBA QImage, translucent where P >=
    the level) to stretch over ``rect`` (the model's input box, image pixels),
    and ``path``, the contour lines at the level in image pixels.  Built from
    the prediction's stored map (numpy only, no model run); worker-thread safe."""

    def __init__(self, fill: QImage, rect: QRectF, path: QPainterPath, level: float):
        self.fill, self.rect, self.path, self.level = fill, rect, path, level


def lesion_layer(pred, image_shape: tuple[int, int]) -> LesionLayer | None:
    """The lesion layer of ``pred`` (a ``Prediction``) on an image of ``image_shape``, or None
    for a result without a lesion map."""
    from training.inference.lesion_overlay import lesion_overlay

    ov = lesion_overlay(getattr(pred, "lesion_u8", None), getattr(pred, "input_box", None), image_shape)
    if ov is None:
        return None
    r0, c0, r1, c1 = ov.box_px
    path = QPainterPath()
    for pts in ov.contours():
        path.addPolygon(QPolygonF([QPointF(float(x), float(y)) for x, y in pts]))
        path.closeSubpath()
    return LesionLayer(rgba_to_qimage(ov.rgba()), QRectF(c0, r0, c1 - c0, r1 - r0), path, ov.level)


def draw_lesion(image: QImage, layer: LesionLayer, image_shape: tuple[int, int]) -> QImage:
    """A copy of ``image`` (the film as shown, any size) with the lesion fill and
    its contour lines drawn on (for the PDF report).  ``image_shape``: the
    (rows, cols) that ``layer``'s coordinates refer to."""
    from PySide6.QtGui import QPainter, QPen, QTransform

    from training.inference.lesion_overlay import LESION_RGB

    out = image.convertToFormat(QImage.Format.Format_RGB32)
    sx, sy = out.width() / max(1, image_shape[1]), out.height() / max(1, image_shape[0])
    p = QPainter(out)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    p.setTransform(QTransform.fromScale(sx, sy))
    p.drawImage(layer.rect, layer.fill)
    pen = QPen(QColor(*LESION_RGB), max(1.5, 2.0 * max(out.width(), out.height()) / 600.0))
    pen.setCosmetic(True)  # the width in output pixels, whatever the scale
    p.setPen(pen)
    p.drawPath(layer.path)
    p.end()
    return out
