"""The image in the viewer's scene and the layers over it, zoomed and panned
with it: the heatmap (a colour layer, possibly drawn smaller and stretched
over the image), a model-v2 lesion map (a translucent fill where P >= 0.5
with its contour lines) and the lung outline (2 screen pixels at any zoom).

Part of ``viewer.ImageViewer`` (``viewer.layers``)."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage, QPainterPath, QPen, QPixmap, QTransform
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsPixmapItem, QGraphicsScene

OUTLINE_COLOUR = QColor(0, 230, 255)  # cyan: apart from the heatmap's colours and the grey image
LESION_COLOUR = QColor(255, 60, 200)  # magenta = training.inference.lesion_overlay.LESION_RGB (fill and contours)


def _smooth_pixmap(parent) -> QGraphicsPixmapItem:
    item = QGraphicsPixmapItem(parent)
    item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
    return item


def _cosmetic_path(parent, colour: QColor, z: float) -> QGraphicsPathItem:
    item = QGraphicsPathItem(parent)
    pen = QPen(colour, 2)
    pen.setCosmetic(True)  # 2 screen pixels at any zoom
    item.setPen(pen)
    item.setZValue(z)
    return item


class ImageLayers:
    """``item``: the image; its children (same position and zoom): ``heat`` (the
    heatmap), ``lesion_fill`` and ``lesion_line`` above it, ``outline`` on top.
    ``changed()`` is called when the viewport must repaint (the lesion legend)."""

    def __init__(self, scene: QGraphicsScene, changed: Callable[[], None]):
        self._changed = changed
        self.item = _smooth_pixmap(None)
        scene.addItem(self.item)
        self.heat = _smooth_pixmap(self.item)
        self.heat.setVisible(False)
        self.outline = _cosmetic_path(self.item, OUTLINE_COLOUR, 1)  # over the heatmap
        self.outline.setVisible(False)
        self.outline_wanted = False
        # the lesion map (model v2): a translucent fill stretched over the model's input box, and its contour
        # lines at P = 0.5; above the heatmap, below the lung outline
        self.lesion_fill = _smooth_pixmap(self.item)
        self.lesion_fill.setZValue(0.5)
        self.lesion_line = _cosmetic_path(self.item, LESION_COLOUR, 0.6)
        self.lesion_wanted = True
        self.lesion_level = 0.5
        self._set_lesion_items_visible()

    # -- the heatmap ---------------------------------------------------------------
    def set_overlay(self, image: QImage | None, opacity: float | None = None) -> None:
        """A colour layer drawn over the image at ``opacity`` (the heatmap)."""
        if image is None or image.isNull():
            self.heat.setPixmap(QPixmap())
            self.heat.setVisible(False)
            return
        self.heat.setPixmap(QPixmap.fromImage(image))
        # a colour layer drawn smaller than the image (explain.COLOUR_LAYER_MAX_SIDE) is stretched over it
        base = self.item.pixmap()
        sx = base.width() / image.width() if not base.isNull() else 1.0
        sy = base.height() / image.height() if not base.isNull() else 1.0
        self.heat.setTransform(QTransform.fromScale(sx, sy))
        if opacity is not None:
            self.heat.setOpacity(opacity)
        self.heat.setVisible(True)

    def set_overlay_opacity(self, opacity: float) -> None:
        self.heat.setOpacity(max(0.0, min(1.0, opacity)))

    def overlay_visible(self) -> bool:
        return self.heat.isVisible() and not self.heat.pixmap().isNull()

    # -- the lung outline ----------------------------------------------------------
    def set_outline(self, path: QPainterPath | None) -> None:
        """The lung outline in image pixel coordinates (None: no outline)."""
        self.outline.setPath(path if path is not None else QPainterPath())
        self.outline.setVisible(self.outline_wanted and not self.outline.path().isEmpty())

    def set_outline_visible(self, on: bool) -> None:
        self.outline_wanted = bool(on)
        self.outline.setVisible(self.outline_wanted and not self.outline.path().isEmpty())

    def outline_visible(self) -> bool:
        return self.outline.isVisible()

    # -- the lesion map ------------------------------------------------------------
    def set_lesion(self, layer) -> None:
        """The lesion layer (``images.LesionLayer``: fill image over its box,
        contour path, both in image pixel coordinates), or None: no lesion map."""
        if layer is None:
            self.lesion_fill.setPixmap(QPixmap())
            self.lesion_line.setPath(QPainterPath())
        else:
            fill = layer.fill
            self.lesion_fill.setPixmap(QPixmap.fromImage(fill))
            r = layer.rect
            self.lesion_fill.setPos(r.topLeft())
            self.lesion_fill.setTransform(QTransform.fromScale(r.width() / max(1, fill.width()),
                                                               r.height() / max(1, fill.height())))
            self.lesion_line.setPath(layer.path)
            self.lesion_level = float(layer.level)
        self._set_lesion_items_visible()

    def set_lesion_visible(self, on: bool) -> None:
        self.lesion_wanted = bool(on)
        self._set_lesion_items_visible()

    def _set_lesion_items_visible(self) -> None:
        has = not self.lesion_fill.pixmap().isNull()
        self.lesion_fill.setVisible(self.lesion_wanted and has)
        self.lesion_line.setVisible(self.lesion_wanted and has)
        self._changed()

    def has_lesion(self) -> bool:
        """A lesion layer is set (drawn or not)."""
        return not self.lesion_fill.pixmap().isNull()

    def lesion_visible(self) -> bool:
        """The lesion layer is drawn now."""
        return self.lesion_fill.isVisible() and self.has_lesion()

    def lesion_image(self) -> QImage:
        """The lesion fill as set (an empty image without one)."""
        return self.lesion_fill.pixmap().toImage()

    def lesion_path(self) -> QPainterPath:
        return self.lesion_line.path()
