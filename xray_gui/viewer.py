"""The image viewer: fit, zoom (wheel, +/-), pan (left drag), window/level
(right drag, reported as a signal: the window applies it through the core),
and three layers over the image: the heatmap, a model-v2 lesion map (a
translucent fill where P >= 0.5 with its contour lines; View > Lesion Map, M)
and the lung outline (``viewer_layers.py``).

Drawn over the viewport (fixed on screen, not zoomed; ``viewer_overlays.py``):
corner texts like Weasis / OHIF (window/level, zoom, orientation markers,
size, file; see ``overlay_text.py``; View > Overlays, O) and, whenever the
heatmap is visible, its colour scale (bottom right).

The parts' methods keep their names on ``ImageViewer`` (the window, the image
controller and the tests use them)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView

from .delegate import to_parts
from .viewer_layers import LESION_COLOUR, OUTLINE_COLOUR, ImageLayers
from .viewer_overlays import SCALE_BAR, TEXT_MARGIN, ViewportOverlays

__all__ = ["ImageViewer", "LESION_COLOUR", "OUTLINE_COLOUR", "SCALE_BAR", "TEXT_MARGIN", "ZOOM_STEP"]

ZOOM_STEP = 1.25
MIN_SCALE, MAX_SCALE = 0.02, 40.0


class ImageViewer(QGraphicsView):
    """Shows one QImage; starts fitted to the window."""

    windowDragged = Signal(float, float)  # dx, dy in screen pixels since the last event
    windowDragFinished = Signal()
    zoomChanged = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.layers = ImageLayers(self.scene(), lambda: self.viewport().update())
        self._item, self._overlay, self._outline = self.layers.item, self.layers.heat, self.layers.outline
        self.overlays = ViewportOverlays(self)
        self._fit_mode = True
        self._wl_last: QPointF | None = None
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform | QPainter.RenderHint.Antialiasing)
        self.setBackgroundBrush(QBrush(QColor(18, 18, 20)))
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setFrameShape(QGraphicsView.Shape.NoFrame)
        # the corner texts stay put while the image pans: repaint the whole viewport, never scroll it
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.setMinimumSize(320, 320)
        # drops go to the main window, not the scene
        self.setAcceptDrops(False)
        self.viewport().setAcceptDrops(False)
        self.setToolTip("Wheel or +/-: zoom · drag: pan · right-drag: window/level · "
                        "1-4: window presets (file default, lung, mediastinum, bone) · 0: fit")

    # -- the parts' API under the viewer's names --------------------------------------
    set_overlay, set_overlay_opacity, overlay_visible = to_parts(
        "layers", "set_overlay", "set_overlay_opacity", "overlay_visible")
    set_outline, set_outline_visible, outline_visible = to_parts(
        "layers", "set_outline", "set_outline_visible", "outline_visible")
    set_lesion, set_lesion_visible, has_lesion, lesion_visible, lesion_image, lesion_path = to_parts(
        "layers", "set_lesion", "set_lesion_visible", "has_lesion", "lesion_visible", "lesion_image", "lesion_path")
    set_corner_text, set_overlays_visible, overlays_visible, overlay_lines = to_parts(
        "overlays", "set_corner_text", "set_overlays_visible", "overlays_visible", "overlay_lines")
    set_colour_scale, colour_scale_visible = to_parts("overlays", "set_colour_scale", "colour_scale_visible")

    # -- content -------------------------------------------------------------
    def has_image(self) -> bool:
        return not self._item.pixmap().isNull()

    def set_placeholder(self, text: str) -> None:
        self.overlays.placeholder = text
        self.viewport().update()

    def set_image(self, image: QImage | None, *, keep_view: bool = False) -> None:
        """Show ``image``; a new image is fitted, ``keep_view`` keeps zoom/pan
        (used when only the window/level or the overlay changed)."""
        if image is None or image.isNull():
            self._item.setPixmap(QPixmap())
            self.set_overlay(None)
            self.set_outline(None)
            self.set_lesion(None)
            self.scene().setSceneRect(QRectF())
            self.resetTransform()
            self.viewport().update()
            return
        same_size = self.has_image() and self._item.pixmap().size() == image.size()
        self._item.setPixmap(QPixmap.fromImage(image))
        self.scene().setSceneRect(QRectF(self._item.boundingRect()))
        if not (keep_view and same_size):
            self.fit()

    # -- zoom / pan ----------------------------------------------------------
    def current_scale(self) -> float:
        return self.transform().m11()

    def fit(self) -> None:
        self._fit_mode = True
        if self.has_image():
            self.fitInView(self._item, Qt.AspectRatioMode.KeepAspectRatio)
        self.zoomChanged.emit(self.current_scale())

    def zoom_by(self, factor: float) -> None:
        if not self.has_image():
            return
        new = self.current_scale() * factor
        if not (MIN_SCALE <= new <= MAX_SCALE):
            return
        self._fit_mode = False
        self.scale(factor, factor)
        self.zoomChanged.emit(self.current_scale())

    def zoom_in(self) -> None:
        self._zoom_centred(ZOOM_STEP)

    def zoom_out(self) -> None:
        self._zoom_centred(1 / ZOOM_STEP)

    def _zoom_centred(self, factor: float) -> None:
        """Zoom about the view's centre (the keys), not the mouse (the wheel)."""
        anchor = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.zoom_by(factor)
        self.setTransformationAnchor(anchor)

    def wheelEvent(self, event):  # noqa: N802 (Qt name)
        delta = event.angleDelta().y()
        if delta:
            self.zoom_by(ZOOM_STEP ** (delta / 120.0))
        event.accept()

    def resizeEvent(self, event):  # noqa: N802
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()

    # -- window/level by right drag ------------------------------------------
    def mousePressEvent(self, event):  # noqa: N802
        if event.button() == Qt.MouseButton.RightButton and self.has_image():
            self._wl_last = event.position()
            self.viewport().setCursor(Qt.CursorShape.SizeAllCursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event):  # noqa: N802
        if self._wl_last is not None:
            pos = event.position()
            d = pos - self._wl_last
            self._wl_last = pos
            if d.x() or d.y():
                self.windowDragged.emit(d.x(), d.y())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event):  # noqa: N802
        if event.button() == Qt.MouseButton.RightButton and self._wl_last is not None:
            self._wl_last = None
            self.viewport().unsetCursor()
            self.windowDragFinished.emit()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def contextMenuEvent(self, event):  # noqa: N802 - right button is window/level
        event.accept()

    # -- foreground: overlays, colour scale, empty state (viewer_overlays.py) -------------
    def drawForeground(self, painter: QPainter, rect) -> None:  # noqa: N802
        self.overlays.draw(painter)
