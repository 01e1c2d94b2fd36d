"""Small shared pieces of the wizard's pages (no core imports: torch must not
be imported on the GUI thread)."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

# The core's architecture names and labels (training.models.ARCH_LABELS);
# repeated here so building the pages needs no torch import.  A test checks
# that both agree.
MODEL_LABELS = {"resnet50": "ResNet50", "lstm": "LSTM", "resnet50_lstm": "ResNet50-LSTM"}

JOB_SCAN = "wizard.scan"
JOB_PROBE = "wizard.probe"
JOB_ESTIMATE = "wizard.estimate"
JOB_TRAIN = "wizard.train"

_STYLES = {
    "error": "color: #b00020; font-weight: bold;",
    "warning": "color: #9a6700;",
    "ok": "color: #1a7f37;",
    "info": "color: palette(text);",
    "muted": "color: #666;",
}


class MessageLabel(QLabel):
    """A one-or-more-line message whose colour says what kind it is."""

    def __init__(self, text: str = "", kind: str = "info", parent=None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.kind = kind
        self.show_message(text, kind)

    def show_message(self, text: str, kind: str = "info") -> None:
        self.kind = kind
        self.setStyleSheet(_STYLES.get(kind, ""))
        self.setText(text)
        self.setVisible(bool(text))


def esc(text) -> str:
    return html.escape(str(text))


def fmt_duration(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def error_text(exc: BaseException) -> str:
    """A typed core error's one-line reason, else the exception in one line."""
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason)
    return f"{type(exc).__name__}: {exc}"
