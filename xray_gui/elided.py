"""Labels that never widen their panel: long values (a DICOM UID, a long model
name, a status message) are cut with "…" to the width they get, and the full
text is in the tooltip (and in the context menu's Copy).

``ElidedLabel`` is plain text only (header values are data, never markup);
each line of a multi-line text is elided on its own.  ``StatusLine`` is the
status bar's one message line (``showMessage(text, ms)``, the interface the
notifier uses)."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QGuiApplication, QPainter
from PySide6.QtWidgets import QLabel, QMenu, QSizePolicy

MIN_CHARS = 6  # the narrowest an elided label gets: a few characters and "…"


class ElidedLabel(QLabel):
    """A QLabel whose lines are elided (right) instead of widening the layout.
    ``text()`` is the full text; ``shown_lines()`` what is drawn."""

    def __init__(self, text: str = "", parent=None, *, elide=Qt.TextElideMode.ElideRight):
        super().__init__(parent)
        self._elide = elide
        self._own_tip = ""  # a tooltip set by the caller, kept when the text fits
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setWordWrap(False)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.setText(text)

    # -- text -------------------------------------------------------------------------
    def setText(self, text: str) -> None:  # noqa: N802 (Qt name)
        super().setText(str(text))
        self._update_tip()
        self.updateGeometry()
        self.update()

    def setToolTip(self, tip: str) -> None:  # noqa: N802
        """A caller's tooltip; the full text is added to it while the text is cut."""
        self._own_tip = tip
        self._update_tip()

    def lines(self) -> list[str]:
        return self.text().split("\n") if self.text() else []

    def shown_lines(self) -> list[str]:
        """The lines as drawn at the current width."""
        fm = self.fontMetrics()
        width = max(0, self.contentsRect().width() - 2 * self.margin())
        return [fm.elidedText(line, self._elide, width) for line in self.lines()]

    def is_elided(self) -> bool:
        return self.shown_lines() != self.lines()

    def _update_tip(self) -> None:
        tip = self._own_tip
        if self.is_elided():
            tip = self.text() + (f"\n\n{tip}" if tip else "")
        super().setToolTip(tip)

    # -- size -------------------------------------------------------------------------
    def minimumSizeHint(self) -> QSize:  # noqa: N802
        fm = self.fontMetrics()
        m = self.contentsMargins()
        n = max(1, len(self.lines()))
        return QSize(fm.horizontalAdvance("M" * MIN_CHARS) + m.left() + m.right(),
                     n * fm.lineSpacing() + m.top() + m.bottom())

    def sizeHint(self) -> QSize:  # noqa: N802
        fm = self.fontMetrics()
        m = self.contentsMargins()
        width = max((fm.horizontalAdvance(line) for line in self.lines()), default=0)
        return QSize(width + m.left() + m.right() + 2 * self.margin() + 2,
                     self.minimumSizeHint().height())

    def resizeEvent(self, event):  # noqa: N802
        super().resizeEvent(event)
        self._update_tip()

    # -- drawing ------------------------------------------------------------------------
    def paintEvent(self, _event):  # noqa: N802
        painter = QPainter(self)
        painter.setPen(self.palette().color(self.foregroundRole()))
        rect = self.contentsRect().adjusted(self.margin(), self.margin(), -self.margin(), -self.margin())
        fm = self.fontMetrics()
        align = self.alignment() & Qt.AlignmentFlag.AlignHorizontal_Mask
        lines = self.shown_lines()
        top = rect.top()
        if self.alignment() & Qt.AlignmentFlag.AlignVCenter:
            top += max(0, (rect.height() - len(lines) * fm.lineSpacing()) // 2)
        for k, line in enumerate(lines):
            painter.drawText(rect.left(), top + k * fm.lineSpacing(), rect.width(), fm.lineSpacing(),
                             int(align | Qt.AlignmentFlag.AlignVCenter), line)
        painter.end()

    def _menu(self, pos) -> None:
        if not self.text():
            return
        menu = QMenu(self)
        menu.addAction("Copy", lambda: QGuiApplication.clipboard().setText(self.text()))
        menu.exec(self.mapToGlobal(pos))


class StatusLine(ElidedLabel):
    """The status bar's message line: one message at a time, cut to fit, the
    full text in the tooltip.  ``showMessage(text, ms)`` clears it after ``ms``
    (0: keeps it)."""

    def __init__(self, parent=None):
        super().__init__("", parent)
        self.setObjectName("statusMessage")
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.setContentsMargins(4, 0, 4, 0)
        self._timer = QTimer(self, singleShot=True)
        self._timer.timeout.connect(self.clearMessage)

    def showMessage(self, text: str, timeout: int = 0) -> None:  # noqa: N802 (QStatusBar's name)
        self.setText(text)
        if timeout > 0:
            self._timer.start(timeout)
        else:
            self._timer.stop()

    def clearMessage(self) -> None:  # noqa: N802
        self._timer.stop()
        self.setText("")

    def currentMessage(self) -> str:  # noqa: N802
        return self.text()
