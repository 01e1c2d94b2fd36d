"""The image viewer: fit, zoom (wheel, +/-), pan (left drag), window/level
(right drag, reported as a signal: the window applies it through the core),
and two layers over the image: the heatmap and the lung outline."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView

ZOOM_STEP = 1.25
MIN_SCALE, MAX_SCALE = 0.02, 40.0
OUTLINE_COLOUR = QColor(0, 230, 255)  # cyan: apart from the heatmap's jet colours and the grey image


class ImageViewer(QGraphicsView):
    """Shows one QImage; starts fitted to the window."""

    windowDragged = Signal(float, float)  # dx, dy in screen pixels since the last event
    windowDragFinished = Signal()
    zoomChanged = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self._item = QGraphicsPixmapItem()
        self._item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self._item)
        self._overlay = QGraphicsPixmapItem(self._item)  # child: same position and zoom
        self._overlay.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._overlay.setVisible(False)
        self._outline = QGraphicsPathItem(self._item)  # over the heatmap
        pen = QPen(OUTLINE_COLOUR, 2)
        pen.setCosmetic(True)  # 2 screen pixels at any zoom
        self._outline.setPen(pen)
        self._outline.setZValue(1)
        self._outline.setVisible(False)
        self._outline_wanted = False
        self._placeholder = "Open a chest X-ray (Ctrl+O) or drop files or folders here"
        self._fit_mode = True
        self._wl_last: QPointF | None = None
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform | QPainter.RenderHint.Antialiasing)
        self.setBackgroundBrush(QBrush(QColor(18, 18, 20)))
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setFrameShape(QGraphicsView.Shape.NoFrame)
        self.setMinimumSize(320, 320)
        # drops go to the main window, not the scene
        self.setAcceptDrops(False)
        self.viewport().setAcceptDrops(False)
        self.setToolTip("Wheel or +/-: zoom · drag: pan · right-drag: window/level · "
                        "1-4: window presets (file default, lung, mediastinum, bone) · 0: fit")

    # -- content -------------------------------------------------------------
    def has_image(self) -> bool:
        return not self._item.pixmap().isNull()

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.viewport().update()

    def set_image(self, image: QImage | None, *, keep_view: bool = False) -> None:
        """Show ``image``; a new image is fitted, ``keep_view`` keeps zoom/pan
        (used when only the window/level or the overlay changed)."""
        if image is None or image.isNull():
            self._item.setPixmap(QPixmap())
            self.set_overlay(None)
            self.set_outline(None)
            self.scene().setSceneRect(QRectF())
            self.resetTransform()
            self.viewport().update()
            return
        same_size = self.has_image() and self._item.pixmap().size() == image.size()
        self._item.setPixmap(QPixmap.fromImage(image))
        self.scene().setSceneRect(QRectF(self._item.boundingRect()))
        if not (keep_view and same_size):
            self.fit()

    def set_overlay(self, image: QImage | None, opacity: float | None = None) -> None:
        """A colour layer drawn over the image at ``opacity`` (the heatmap)."""
        if image is None or image.isNull():
            self._overlay.setPixmap(QPixmap())
            self._overlay.setVisible(False)
            return
        self._overlay.setPixmap(QPixmap.fromImage(image))
        if opacity is not None:
            self._overlay.setOpacity(opacity)
        self._overlay.setVisible(True)

    def set_overlay_opacity(self, opacity: float) -> None:
        self._overlay.setOpacity(max(0.0, min(1.0, opacity)))

    def overlay_visible(self) -> bool:
        return self._overlay.isVisible() and not self._overlay.pixmap().isNull()

    def set_outline(self, path: QPainterPath | None) -> None:
        """The lung outline in image pixel coordinates (None: no outline)."""
        self._outline.setPath(path if path is not None else QPainterPath())
        self._outline.setVisible(self._outline_wanted and not self._outline.path().isEmpty())

    def set_outline_visible(self, on: bool) -> None:
        self._outline_wanted = bool(on)
        self._outline.setVisible(self._outline_wanted and not self._outline.path().isEmpty())

    def outline_visible(self) -> bool:
        return self._outline.isVisible()

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
        anchor = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.zoom_by(ZOOM_STEP)
        self.setTransformationAnchor(anchor)

    def zoom_out(self) -> None:
        anchor = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.zoom_by(1 / ZOOM_STEP)
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

    # -- empty state -----------------------------------------------------------
    def drawForeground(self, painter: QPainter, rect) -> None:  # noqa: N802
        if self.has_image() or not self._placeholder:
            return
        painter.save()
        painter.resetTransform()
        painter.setPen(QColor(170, 170, 175))
        f = QFont(self.font())
        f.setPointSizeF(f.pointSizeF() * 1.15)
        painter.setFont(f)
        painter.drawText(self.viewport().rect().adjusted(24, 24, -24, -24),
                         Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
        painter.restore()
