"""What the viewer draws over its viewport, fixed on screen (not zoomed): corner
texts like Weasis / OHIF (window/level, zoom, orientation markers, size, file;
see ``overlay_text.py``; View > Overlays, O), the heatmap's colour scale and
the lesion map's legend (bottom right), and the placeholder of an empty viewer.

Part of ``viewer.ImageViewer`` (``viewer.overlays``)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QLinearGradient, QPainter, QPainterPath, QPen

from .viewer_layers import LESION_COLOUR

TEXT_MARGIN = 8  # px between the overlay texts and the viewport's edges
SCALE_BAR = (12, 120)  # colour scale: width, height in px


def outlined(painter: QPainter, x: float, y: float, text: str, font: QFont, colour=QColor(240, 240, 240)):
    """``text`` with its baseline at (x, y): light fill, dark outline (readable on any image)."""
    path = QPainterPath()
    path.addText(QPointF(x, y), font, text)
    pen = QPen(QColor(0, 0, 0, 220), 3)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    painter.strokePath(path, pen)
    painter.fillPath(path, QBrush(colour))


class ViewportOverlays:
    """The texts and scales over the viewport of ``view`` (an ImageViewer)."""

    def __init__(self, view):
        self.view = view
        self.corners: dict[str, list[str]] = {}  # "top_left", "top_right", "bottom_left" -> lines
        self.markers: dict[str, str] = {}  # "left", "right", "top", "bottom" -> orientation letters
        self.on = True
        self.scale_colours: list[QColor] | None = None  # the heatmap's colour map, low -> high
        self.scale_floor = 0.0
        self.placeholder = "Open a chest X-ray (Ctrl+O) or drop files or folders here"

    # -- what they say ---------------------------------------------------------------
    def set_corner_text(self, corners: dict[str, list[str]], markers: dict[str, str] | None = None) -> None:
        """Texts for the corners (``top_left``, ``top_right``, ``bottom_left``; the
        zoom is added below ``bottom_left``) and the edge orientation markers."""
        self.corners = {k: [line for line in v if line] for k, v in corners.items()}
        if markers is not None:
            self.markers = dict(markers)
        self.view.viewport().update()

    def set_overlays_visible(self, on: bool) -> None:
        self.on = bool(on)
        self.view.viewport().update()

    def overlays_visible(self) -> bool:
        return self.on

    def overlay_lines(self) -> dict[str, list[str]]:
        """What the corner overlays say now (empty when they are off or no image is shown)."""
        if not (self.on and self.view.has_image()):
            return {}
        from .overlay_text import zoom_line

        lines = {k: list(v) for k, v in self.corners.items()}
        lines["bottom_left"] = lines.get("bottom_left", []) + [zoom_line(self.view.current_scale())]
        for edge, text in self.markers.items():
            if text:
                lines[edge] = [text]
        return lines

    def set_colour_scale(self, colours: list[QColor] | None, floor: float = 0.0) -> None:
        """The heatmap's colour map (low -> high) for the scale bar; ``floor``: the
        level below which the map is transparent (marked on the bar)."""
        self.scale_colours = list(colours) if colours else None
        self.scale_floor = max(0.0, min(1.0, float(floor)))
        self.view.viewport().update()

    def colour_scale_visible(self) -> bool:
        """The scale bar is drawn whenever the heatmap is."""
        return self.scale_colours is not None and self.view.overlay_visible()

    # -- drawing -------------------------------------------------------------------
    def draw(self, painter: QPainter) -> None:
        """Everything over the viewport (the view's drawForeground)."""
        painter.save()
        painter.resetTransform()
        if self.view.has_image():
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            lines = self.overlay_lines()
            if lines:
                self._draw_corners(painter, lines)
            if self.colour_scale_visible():
                self._draw_scale(painter)
            if self.view.lesion_visible():
                self._draw_lesion_legend(painter)
        elif self.placeholder:
            painter.setPen(QColor(170, 170, 175))
            f = QFont(self.view.font())
            f.setPointSizeF(f.pointSizeF() * 1.15)
            painter.setFont(f)
            painter.drawText(self.view.viewport().rect().adjusted(24, 24, -24, -24),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)
        painter.restore()

    def _font(self) -> QFont:
        f = QFont(self.view.font())
        f.setPointSizeF(max(8.0, f.pointSizeF() * 0.95))
        return f

    def _draw_corners(self, painter: QPainter, lines: dict[str, list[str]]) -> None:
        font = self._font()
        fm = QFontMetricsF(font)
        r = self.view.viewport().rect()
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
                outlined(painter, x, y0 + i * step, text, font)
        self._draw_markers(painter, lines, font)

    def _draw_markers(self, painter: QPainter, lines: dict[str, list[str]], font: QFont) -> None:
        """The orientation letters at the middle of each edge, large and yellow."""
        r = self.view.viewport().rect()
        m = TEXT_MARGIN
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
            outlined(painter, x, y, text, big, QColor(255, 235, 140))

    def _draw_lesion_legend(self, painter: QPainter) -> None:
        """"Lesion map: P >= 0.5" in the lesion colour, bottom right (above the heatmap's scale when shown)."""
        font = self._font()
        fm = QFontMetricsF(font)
        r = self.view.viewport().rect()
        y = r.height() - TEXT_MARGIN - fm.descent()
        if self.colour_scale_visible():  # the scale and its title take the corner
            bh = int(min(SCALE_BAR[1], max(40, r.height() * 0.3)))
            y -= bh + 2 * fm.height() + 4
        text = f"Lesion map: P \u2265 {self.view.layers.lesion_level:g}"
        outlined(painter, r.width() - TEXT_MARGIN - fm.horizontalAdvance(text), y, text, font, LESION_COLOUR)

    def _draw_scale(self, painter: QPainter) -> None:
        """Vertical colour bar, bottom right: the colour map from low (bottom) to
        high (top); the part below the floor (transparent on the image) is dimmed
        and cut by a dashed line."""
        font = self._font()
        fm = QFontMetricsF(font)
        r = self.view.viewport().rect()
        bw, bh = SCALE_BAR
        bh = int(min(bh, max(40, r.height() * 0.3)))
        x = r.width() - TEXT_MARGIN - bw
        bottom = r.height() - TEXT_MARGIN - fm.descent()
        top = bottom - bh
        bar = QRectF(x, top, bw, bh)
        grad = QLinearGradient(bar.bottomLeft(), bar.topLeft())
        n = len(self.scale_colours)
        for i, c in enumerate(self.scale_colours):
            grad.setColorAt(i / max(1, n - 1), c)
        painter.fillRect(bar, QBrush(grad))
        if self.scale_floor > 0:
            y = bottom - self.scale_floor * bh
            painter.fillRect(QRectF(x, y, bw, bottom - y), QColor(18, 18, 20, 165))
            dash = QPen(QColor(255, 255, 255), 1, Qt.PenStyle.DashLine)
            painter.setPen(dash)
            painter.drawLine(QPointF(x - 4, y), QPointF(x + bw, y))
        painter.setPen(QPen(QColor(0, 0, 0, 220), 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(bar)
        for text, yy in (("high", top + fm.ascent() / 2), ("low", bottom)):
            outlined(painter, x - 6 - fm.horizontalAdvance(text), yy, text, font)
        if self.scale_floor > 0:
            text = f"{self.scale_floor:g}"
            y = bottom - self.scale_floor * bh
            outlined(painter, x - 6 - fm.horizontalAdvance(text), y + fm.ascent() / 2, text, font)
        title = "Grad-CAM (relative)"
        outlined(painter, r.width() - TEXT_MARGIN - fm.horizontalAdvance(title), top - fm.height() - 2, title, font)
