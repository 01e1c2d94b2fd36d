"""Right-hand panel: the prediction, P(COVID) bar, threshold, model, heatmap
controls, warnings and refusals.  It only shows what it is given."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (QCheckBox, QDoubleSpinBox, QFrame, QGroupBox, QHBoxLayout, QLabel,
                               QPushButton, QSizePolicy, QSlider, QVBoxLayout, QWidget)

POSITIVE_COLOUR = QColor(200, 70, 50)
NEGATIVE_COLOUR = QColor(40, 140, 90)


class ProbabilityBar(QWidget):
    """A horizontal bar for P(COVID) with a tick at the decision threshold."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._p: float | None = None
        self._threshold = 0.5
        self.setMinimumHeight(22)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_values(self, p: float | None, threshold: float) -> None:
        self._p, self._threshold = p, threshold
        self.setToolTip("" if p is None else f"P(COVID) = {p:.3f}, threshold {threshold:.3f}")
        self.update()

    def paintEvent(self, event):  # noqa: N802
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = QRectF(self.rect()).adjusted(1, 4, -1, -4)
        painter.setPen(QPen(self.palette().mid().color()))
        painter.setBrush(self.palette().base())
        painter.drawRoundedRect(r, 3, 3)
        if self._p is not None:
            fill = QRectF(r.left(), r.top(), r.width() * max(0.0, min(1.0, self._p)), r.height())
            colour = POSITIVE_COLOUR if self._p >= self._threshold else NEGATIVE_COLOUR
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour)
            painter.drawRoundedRect(fill, 3, 3)
        x = r.left() + r.width() * self._threshold
        painter.setPen(QPen(self.palette().text().color(), 2))
        painter.drawLine(int(x), int(r.top()) - 3, int(x), int(r.bottom()) + 3)
        painter.end()


class PredictionPanel(QWidget):
    thresholdEdited = Signal(float)
    resetThresholdRequested = Signal()
    heatmapToggled = Signal(bool)
    opacityChanged = Signal(int)
    classifyAnywayRequested = Signal()
    openModelRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)

        box = QGroupBox("Prediction")
        b = QVBoxLayout(box)
        self.label = QLabel("—")
        f = self.label.font()
        f.setPointSizeF(f.pointSizeF() * 1.6)
        f.setBold(True)
        self.label.setFont(f)
        self.label.setObjectName("predictionLabel")
        self.p_text = QLabel("P(COVID): —")
        self.bar = ProbabilityBar()
        self.state = QLabel("Open an image to classify it.")
        self.state.setWordWrap(True)
        self.state.setStyleSheet("color: gray;")
        self.state.setObjectName("predictionState")
        for w in (self.label, self.p_text, self.bar, self.state):
            b.addWidget(w)

        row = QHBoxLayout()
        row.addWidget(QLabel("Decision threshold:"))
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.001, 0.999)
        self.threshold.setDecimals(3)
        self.threshold.setSingleStep(0.01)
        self.threshold.setValue(0.5)
        self.threshold.setToolTip("P(COVID) at or above this value is labelled COVID. "
                                  "Changing it relabels without re-running the model.")
        self.threshold.valueChanged.connect(lambda v: self.thresholdEdited.emit(float(v)))
        self.reset_threshold = QPushButton("Model default")
        self.reset_threshold.setToolTip("Back to the threshold stored in the model file")
        self.reset_threshold.clicked.connect(self.resetThresholdRequested)
        row.addWidget(self.threshold)
        row.addWidget(self.reset_threshold)
        b.addLayout(row)
        lay.addWidget(box)

        # refusal / warnings
        self.refusal = QFrame()
        self.refusal.setObjectName("refusalBox")
        self.refusal.setStyleSheet("#refusalBox { background: #5a1f1f; border-radius: 4px; } "
                                   "#refusalBox QLabel { color: #ffe9e6; }")
        r = QVBoxLayout(self.refusal)
        self.refusal_text = QLabel()
        self.refusal_text.setWordWrap(True)
        self.refusal_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.classify_anyway = QPushButton("Classify anyway")
        self.classify_anyway.setToolTip("Ignore the header check (modality / body part / view) "
                                        "and classify this image; the result is flagged.")
        self.classify_anyway.clicked.connect(self.classifyAnywayRequested)
        r.addWidget(self.refusal_text)
        r.addWidget(self.classify_anyway, 0, Qt.AlignmentFlag.AlignLeft)
        lay.addWidget(self.refusal)
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.setObjectName("warningsLabel")
        self.warnings.setStyleSheet("#warningsLabel { background: #5b4a14; color: #fff4d6; "
                                    "border-radius: 4px; padding: 6px; }")
        lay.addWidget(self.warnings)

        heat = QGroupBox("Grad-CAM heatmap")
        h = QVBoxLayout(heat)
        hrow = QHBoxLayout()
        self.heatmap = QCheckBox("Show (H)")
        self.heatmap.toggled.connect(self.heatmapToggled)
        hrow.addWidget(self.heatmap)
        hrow.addSpacing(8)
        hrow.addWidget(QLabel("Opacity"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.valueChanged.connect(self.opacityChanged)
        hrow.addWidget(self.opacity, 1)
        self.heat_state = QLabel("")
        self.heat_state.setWordWrap(True)
        self.heat_state.setStyleSheet("color: gray;")
        h.addLayout(hrow)
        h.addWidget(self.heat_state)
        lay.addWidget(heat)

        mbox = QGroupBox("Model")
        m = QHBoxLayout(mbox)
        self.model_text = QLabel("loading model…")
        self.model_text.setWordWrap(True)
        self.model_text.setObjectName("modelText")
        self.open_model = QPushButton("Open…")
        self.open_model.setToolTip("Open another model file (Ctrl+M)")
        self.open_model.clicked.connect(self.openModelRequested)
        m.addWidget(self.model_text, 1)
        m.addWidget(self.open_model, 0, Qt.AlignmentFlag.AlignTop)
        lay.addWidget(mbox)
        self.clear()

    # -- showing -----------------------------------------------------------------
    def clear(self, state: str = "Open an image to classify it.") -> None:
        self.label.setText("—")
        self.label.setStyleSheet("")
        self.p_text.setText("P(COVID): —")
        self.bar.set_values(None, self.threshold.value())
        self.state.setText(state)
        self.show_refusal(None)
        self.show_warnings([])
        self.heat_state.setText("")

    def set_busy(self, text: str) -> None:
        self.state.setText(text)

    def show_prediction(self, label: str, p: float, threshold: float, positive: str) -> None:
        self.label.setText(label)
        colour = POSITIVE_COLOUR if label == positive else NEGATIVE_COLOUR
        self.label.setStyleSheet(f"color: {colour.name()};")
        self.p_text.setText(f"P(COVID): {p:.3f}   (threshold {threshold:.3f})")
        self.bar.set_values(p, threshold)
        self.state.setText("Model output for this image — a research aid, not a diagnosis.")

    def show_refusal(self, reason: str | None, *, can_override: bool = False) -> None:
        self.refusal.setVisible(bool(reason))
        self.refusal_text.setText(f"Not classified: {reason}" if reason else "")
        self.classify_anyway.setVisible(bool(reason) and can_override)

    def show_warnings(self, warnings: list[str]) -> None:
        self.warnings.setVisible(bool(warnings))
        self.warnings.setText("Please note: " + "; ".join(warnings) + "." if warnings else "")

    def set_threshold(self, value: float) -> None:
        """Set the spin box without emitting ``thresholdEdited``."""
        self.threshold.blockSignals(True)
        self.threshold.setValue(value)
        self.threshold.blockSignals(False)

    def set_model_text(self, text: str, *, ready: bool) -> None:
        self.model_text.setText(text)
        self.threshold.setEnabled(ready)
        self.reset_threshold.setEnabled(ready)
