"""Small shared pieces of the wizard's pages (no core imports: torch must not
be imported on the GUI thread)."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from training.common.constants import ARCH_LABELS as MODEL_LABELS  # noqa: E402,F401  (the core's names, torch-free)

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
    """A one-or-more-line message whose colour says what kind it is.

    The text is always rich text (HTML): callers put file names and reasons
    through :func:`esc`.  With Qt's automatic format a message without a tag
    was shown as plain text, so an escaped ``'`` appeared as ``&#x27;``."""

    def __init__(self, text: str = "", kind: str = "info", parent=None):
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.RichText)
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


from training.common.formatting import duration_text as fmt_duration  # noqa: E402,F401  (one formatter, re-exported)
from training.common.formatting import exception_text as error_text  # noqa: E402,F401  (re-exported)
