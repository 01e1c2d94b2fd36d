"""The image viewer: fit, zoom (wheel, +/-), pan (left drag), window/level
(right drag, reported as a signal: the window applies it through the core),
and three layers over the image: the heatmap, a model-v2 lesion map (a
translucent fill where P >= 0.5 with its contour lines; View > Lesion Map, M)
and the lung outline.

Drawn over the viewport (fixed on screen, not zoomed): corner texts like
Weasis / OHIF (window/level, zoom, orientation markers, size, file; see
``overlay_text.py``; View > Overlays, O) and, whenever the heatmap is visible,
its colour scale (bottom right)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPainterPath, QPen, QPixmap, QTransform
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView

ZOOM_STEP = 1.25
MIN_SCALE, MAX_SCALE = 0.02, 40.0
OUTLINE_COLOUR = QColor(0, 230, 255)  # cyan: apart from the heatmap's colours and the grey image
LESION_COLOUR = QColor(255, 60, 200)  # magenta = training.inference.lesion_overlay.LESION_RGB (fill and contours)
TEXT_MARGIN = 8  # px between the overlay texts and the viewport's edges
SCALE_BAR = (12, 120)  # colour scale: width, height in px


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
        # the lesion map (model v2): a translucent fill stretched over the model's input box, and its contour
        # lines at P = 0.5; above the heatmap, below the lung outline
        self._lesion_fill = QGraphicsPixmapItem(self._item)
        self._lesion_fill.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._lesion_fill.setZValue(0.5)
        self._lesion_line = QGraphicsPathItem(self._item)
        lpen = QPen(LESION_COLOUR, 2)
        lpen.setCosmetic(True)
        self._lesion_line.setPen(lpen)
        self._lesion_line.setZValue(0.6)
        self._lesion_wanted = True
        self._lesion_level = 0.5
        self._set_lesion_items_visible()
        self._corners: dict[str, list[str]] = {}  # "top_left", "top_right", "bottom_left" -> lines
        self._markers: dict[str, str] = {}  # "left", "right", "top", "bottom" -> orientation letters
        self._overlays_on = True
        self._scale_colours: list[QColor] | None = None  # the heatmap's colour map, low -> high
        self._scale_floor = 0.0
        self._placeholder = "Open a chest X-ray (Ctrl+O) or drop files or folders here"
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

    def set_overlay(self, image: QImage | None, opacity: float | None = None) -> None:
        """A colour layer drawn over the image at ``opacity`` (the heatmap)."""
        if image is None or image.isNull():
            self._overlay.setPixmap(QPixmap())
            self._overlay.setVisible(False)
            return
        self._overlay.setPixmap(QPixmap.fromImage(image))
        # a colour layer drawn smaller than the image (explain.COLOUR_LAYER_MAX_SIDE) is stretched over it
        base = self._item.pixmap()
        sx = base.width() / image.width() if not base.isNull() else 1.0
        sy = base.height() / image.height() if not base.isNull() else 1.0
        self._overlay.setTransform(QTransform.fromScale(sx, sy))
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

    def set_lesion(self, layer) -> None:
        """The lesion layer (``images.LesionLayer``: fill image over its box,
        contour path, both in image pixel coordinates), or None: no lesion map."""
        if layer is None:
            self._lesion_fill.setPixmap(QPixmap())
            self._lesion_line.setPath(QPainterPath())
        else:
            fill = layer.fill
            self._lesion_fill.setPixmap(QPixmap.fromImage(fill))
            r = layer.rect
            self._lesion_fill.setPos(r.topLeft())
            self._lesion_fill.setTransform(QTransform.fromScale(r.width() / max(1, fill.width()),
                                                                r.height() / max(1, fill.height())))
            self._lesion_line.setPath(layer.path)
            self._lesion_level = float(layer.level)
        self._set_lesion_items_visible()

    def set_lesion_visible(self, on: bool) -> None:
        self._lesion_wanted = bool(on)
        self._set_lesion_items_visible()

    def _set_lesion_items_visible(self) -> None:
        has = not self._lesion_fill.pixmap().isNull()
        self._lesion_fill.setVisible(self._lesion_wanted and has)
        self._lesion_line.setVisible(self._lesion_wanted and has)
        self.viewport().update()

    def has_lesion(self) -> bool:
        """A lesion layer is set (drawn or not)."""
        return not self._lesion_fill.pixmap().isNull()

    def lesion_visible(self) -> bool:
        """The lesion layer is drawn now."""
        return self._lesion_fill.isVisible() and self.has_lesion()

    def lesion_image(self) -> QImage:
        """The lesion fill as set (an empty image without one)."""
        return self._lesion_fill.pixmap().toImage()

    def lesion_path(self) -> QPainterPath:
        return self._lesion_line.path()

    # -- corner overlays and colour scale --------------------------------------
    def set_corner_text(self, corners: dict[str, list[str]], markers: dict[str, str] | None = None) -> None:
        """Texts for the corners (``top_left``, ``top_right``, ``bottom_left``; the
        zoom is added below ``bottom_left``) and the edge orientation markers."""
        self._corners = {k: [line for line in v if line] for k, v in corners.items()}
        if markers is not None:
            self._markers = dict(markers)
        self.viewport().update()

    def set_overlays_visible(self, on: bool) -> None:
        self._overlays_on = bool(on)
        self.viewport().update()

    def overlays_visible(self) -> bool:
        return self._overlays_on

    def overlay_lines(self) -> dict[str, list[str]]:
        """What the corner overlays say now (empty when they are off or no image is shown)."""
        if not (self._overlays_on and self.has_image()):
            return {}
        from .overlay_text import zoom_line

        lines = {k: list(v) for k, v in self._corners.items()}
        lines["bottom_left"] = lines.get("bottom_left", []) + [zoom_line(self.current_scale())]
        for edge, text in self._markers.items():
            if text:
                lines[edge] = [text]
        return lines

    def set_colour_scale(self, colours: list[QColor] | None, floor: float = 0.0) -> None:
        """The heatmap's colour map (low -> high) for the scale bar; ``floor``: the
        level below which the map is transparent (marked on the bar)."""
        self._scale_colours = list(colours) if colours else None
        self._scale_floor = max(0.0, min(1.0, float(floor)))
        self.viewport().update()

    def colour_scale_visible(self) -> bool:
        """The scale bar is drawn whenever the heatmap is."""
        return self._scale_colours is not None and self.overlay_visible()

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

    # -- foreground: overlays, colour scale, empty state --------------------------
    def drawForeground(self, painter: QPainter, rect) -> None:  # noqa: N802
        if self.has_image():
            painter.save()
            painter.resetTransform()
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            lines = self.overlay_lines()
            if lines:
                self._draw_corners(painter, lines)
            if self.colour_scale_visible():
                self._draw_scale(painter)
            if self.lesion_visible():
                self._draw_lesion_legend(painter)
            painter.restore()
            return
        if not self._placeholder:
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

    def _overlay_font(self) -> QFont:
        f = QFont(self.font())
        f.setPointSizeF(max(8.0, f.pointSizeF() * 0.95))
        return f

    @staticmethod
    def _outlined(painter: QPainter, x: float, y: float, text: str, font: QFont, colour=QColor(240, 240, 240)):
        """``text`` with its baseline at (x, y): light fill, dark outline (readable on any image)."""
        path = QPainterPath()
        path.addText(QPointF(x, y), font, text)
        pen = QPen(QColor(0, 0, 0, 220), 3)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        painter.strokePath(path, pen)
        painter.fillPath(path, QBrush(colour))

    def _draw_corners(self, painter: QPainter, lines: dict[str, list[str]]) -> None:
        from PySide6.QtGui import QFontMetricsF

        font = self._overlay_font()
        fm = QFontMetricsF(font)
        r = self.viewport().rect()
        m, step = TEXT_MARGIN, fm.height()
        right_w = max((fm.horizontalAdvance(t) for t in lines.get("top_right", [])), default=0.0)
        room = max(60.0, r.width() - right_w - 3 * m)  # a long file name must not run into the top right
        for corner in ("top_left", "top_right", "bottom_left"):
            items = lines.get(corner, [])
            if corner == "top_left":
                items = [fm.elidedText(t, Qt.TextElideMode.ElideMiddle, room) for t in items]
            top = corner.startswith("top")
            y0 = m + fm.ascent() if top else r.height() - m - fm.descent() - step * (len(items) - 1)
            for i, text in enumerate(items):
                x = m if corner.endswith("left") else r.width() - m - fm.horizontalAdvance(text)
                self._outlined(painter, x, y0 + i * step, text, font)
        big = QFont(font)
        big.setPointSizeF(font.pointSizeF() * 1.35)
        big.setBold(True)
        bm = QFontMetricsF(big)
        for edge in ("left", "right", "top", "bottom"):
            text = (lines.get(edge) or [""])[0]
            if not text:
                continue
            w = bm.horizontalAdvance(text)
            if edge in ("left", "right"):
                x = m if edge == "left" else r.width() - m - w
                y = r.height() / 2 + bm.ascent() / 2
            else:
                x = (r.width() - w) / 2
                y = m + bm.ascent() if edge == "top" else r.height() - m - bm.descent()
            self._outlined(painter, x, y, text, big, QColor(255, 235, 140))

    def _draw_lesion_legend(self, painter: QPainter) -> None:
        """"Lesion map: P >= 0.5" in the lesion colour, bottom right (above the heatmap's scale when shown)."""
        from PySide6.QtGui import QFontMetricsF

        font = self._overlay_font()
        fm = QFontMetricsF(font)
        r = self.viewport().rect()
        y = r.height() - TEXT_MARGIN - fm.descent()
        if self.colour_scale_visible():  # the scale and its title take the corner
            bh = int(min(SCALE_BAR[1], max(40, r.height() * 0.3)))
            y -= bh + 2 * fm.height() + 4
        text = f"Lesion map: P \u2265 {self._lesion_level:g}"
        self._outlined(painter, r.width() - TEXT_MARGIN - fm.horizontalAdvance(text), y, text, font, LESION_COLOUR)

    def _draw_scale(self, painter: QPainter) -> None:
        """Vertical colour bar, bottom right: the colour map from low (bottom) to
        high (top); the part below the floor (transparent on the image) is dimmed
        and cut by a dashed line."""
        from PySide6.QtGui import QFontMetricsF, QLinearGradient

        font = self._overlay_font()
        fm = QFontMetricsF(font)
        r = self.viewport().rect()
        bw, bh = SCALE_BAR
        bh = int(min(bh, max(40, r.height() * 0.3)))
        x = r.width() - TEXT_MARGIN - bw
        bottom = r.height() - TEXT_MARGIN - fm.descent()
        top = bottom - bh
        bar = QRectF(x, top, bw, bh)
        grad = QLinearGradient(bar.bottomLeft(), bar.topLeft())
        n = len(self._scale_colours)
        for i, c in enumerate(self._scale_colours):
            grad.setColorAt(i / max(1, n - 1), c)
        painter.fillRect(bar, QBrush(grad))
        if self._scale_floor > 0:
            y = bottom - self._scale_floor * bh
            painter.fillRect(QRectF(x, y, bw, bottom - y), QColor(18, 18, 20, 165))
            dash = QPen(QColor(255, 255, 255), 1, Qt.PenStyle.DashLine)
            painter.setPen(dash)
            painter.drawLine(QPointF(x - 4, y), QPointF(x + bw, y))
        painter.setPen(QPen(QColor(0, 0, 0, 220), 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(bar)
        for text, yy in (("high", top + fm.ascent() / 2), ("low", bottom)):
            self._outlined(painter, x - 6 - fm.horizontalAdvance(text), yy, text, font)
        if self._scale_floor > 0:
            text = f"{self._scale_floor:g}"
            y = bottom - self._scale_floor * bh
            self._outlined(painter, x - 6 - fm.horizontalAdvance(text), y + fm.ascent() / 2, text, font)
        title = "Grad-CAM (relative)"
        self._outlined(painter, r.width() - TEXT_MARGIN - fm.horizontalAdvance(title), top - fm.height() - 2, title,
                       font)
