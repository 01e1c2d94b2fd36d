"""Right-hand panel: the prediction, P(COVID) bar, threshold, model, heatmap,
lesion-map and lung-outline controls, warnings and refusals.  It only shows
what it is given.  A three-class result (model v2) adds P(Normal) and P(Other
pneumonia) under the headline P(COVID), its own colour for "Other pneumonia
(not a COVID-19 pattern)", and the lung involvement of its lesion map.  A
result that is not valid (a gate refusal classified anyway) is shown
without a verdict: "Not valid" in grey, P(COVID) greyed and marked.

``summary`` (the verdict box and the refusal box) is a separate widget: the
main window pins it at the top of the side panel, outside its scroll area, so
moving through a batch never scrolls the verdict out of view."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from training.inference.result import INDETERMINATE, OTHER_PNEUMONIA, PNEUMONIA

POSITIVE_COLOUR = QColor(200, 70, 50)
NEGATIVE_COLOUR = QColor(40, 140, 90)
MUTED_COLOUR = QColor(140, 140, 140)
CAUTION_COLOUR = QColor(230, 150, 40)
PNEUMONIA_COLOUR = QColor(95, 125, 230)  # "Other pneumonia": apart from COVID red, Normal green, amber, grey
PNEUMONIA_LABEL = "Other pneumonia"  # P(...) of the third class, as the panel, table and report name it
NOT_VALID_LABEL = "Not valid"
NOT_VALID_NOTE = "not valid: not a frontal chest radiograph"
HEADER_NOT_VALID_NOTE = "not valid: the header says not a frontal chest film"


class ProbabilityBar(QWidget):
    """A horizontal bar for P(COVID) with a tick at the decision threshold."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._p: float | None = None
        self._threshold = 0.5
        self._muted = False
        self._band: tuple[float, float] | None = None
        self._below: QColor | None = None
        self.setMinimumHeight(22)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_values(self, p: float | None, threshold: float, *, muted: bool = False,
                   band: tuple[float, float] | None = None, below: QColor | None = None) -> None:
        """``muted``: a result that is not valid; grey, no verdict colour.
        ``band``: the model's borderline band, drawn hatched behind the bar.
        ``below``: the fill's colour below the threshold (default Normal green;
        an "Other pneumonia" verdict gives its own)."""
        self._p, self._threshold, self._muted, self._band = p, threshold, muted, band
        self._below = below
        self.setToolTip("" if p is None else f"P(COVID) = {p:.3f}, threshold {threshold:.3f}"
                        + (f", borderline band {band[0]:.3f}–{band[1]:.3f}" if band else "")
                        + (f" ({NOT_VALID_NOTE})" if muted else ""))
        self.update()

    def _in_band(self) -> bool:
        return self._band is not None and self._p is not None and self._band[0] <= self._p <= self._band[1]

    def paintEvent(self, event):  # noqa: N802
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = QRectF(self.rect()).adjusted(1, 4, -1, -4)
        painter.setPen(QPen(self.palette().mid().color()))
        painter.setBrush(self.palette().base())
        painter.drawRoundedRect(r, 3, 3)
        if self._band is not None:
            lo, hi = self._band
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QBrush(CAUTION_COLOUR, Qt.BrushStyle.BDiagPattern))
            painter.drawRect(QRectF(r.left() + r.width() * lo, r.top(), r.width() * (hi - lo), r.height()))
        if self._p is not None:
            fill = QRectF(r.left(), r.top(), r.width() * max(0.0, min(1.0, self._p)), r.height())
            colour = (MUTED_COLOUR if self._muted else CAUTION_COLOUR if self._in_band() else
                      POSITIVE_COLOUR if self._p >= self._threshold else self._below or NEGATIVE_COLOUR)
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
        lay.setContentsMargins(6, 0, 6, 6)
        # the verdict and a refusal: the window pins this part above the side
        # panel's scroll area, so moving through a batch never scrolls it away
        self.summary = QWidget(self)  # never a parentless window of its own
        self.summary.setObjectName("predictionSummary")
        lay.addWidget(self.summary)
        top = QVBoxLayout(self.summary)
        top.setContentsMargins(6, 6, 6, 0)
        top.addWidget(self._build_verdict())
        top.addWidget(self._build_refusal())
        self.warnings = QLabel()
        self.warnings.setTextFormat(Qt.TextFormat.PlainText)
        self.warnings.setWordWrap(True)
        self.warnings.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.warnings.setObjectName("warningsLabel")
        self.warnings.setStyleSheet("#warningsLabel { background: #5b4a14; color: #fff4d6; "
                                    "border-radius: 4px; padding: 6px; }")
        lay.addWidget(self.warnings)
        lay.addWidget(self._build_heatmap())
        lay.addWidget(self._build_lesion())
        lay.addWidget(self._build_model())
        self.clear()

    def _build_verdict(self) -> QGroupBox:
        """The verdict, P(COVID) and its bar, P per class, lung involvement, the threshold."""
        box = QGroupBox("Prediction")
        self.verdict_box = box
        b = QVBoxLayout(box)
        self.label = QLabel("—")
        f = self.label.font()
        f.setPointSizeF(f.pointSizeF() * 1.6)
        f.setBold(True)
        self.label.setFont(f)
        self.label.setObjectName("predictionLabel")
        self.label.setWordWrap(True)  # "Other pneumonia (not a COVID-19 pattern)" must not widen the panel
        self.p_text = QLabel("P(COVID): —")
        self.p_text.setWordWrap(True)
        self.class_probs = QLabel("")  # three-class models: P(Normal), P(Other pneumonia)
        self.class_probs.setObjectName("classProbs")
        self.class_probs.setWordWrap(True)
        self.class_probs.setToolTip("The model's calibrated probability of each of its three classes "
                                    "(they add up to 1). P(COVID) above is the headline score.")
        self.involvement = QLabel("")  # lesion-map models: the lesion area's share of the lungs
        self.involvement.setObjectName("lungInvolvement")
        self.involvement.setWordWrap(True)
        self.involvement.setToolTip("Share of the lung area (found by the lung segmenter) where the model's "
                                    "lesion map is at or above P 0.5. An estimate of the model, not a measurement.")
        self.bar = ProbabilityBar()
        self.state = QLabel("Open an image to classify it.")
        self.state.setWordWrap(True)
        self.state.setStyleSheet("color: gray;")
        self.state.setObjectName("predictionState")
        for w in (self.label, self.p_text, self.class_probs, self.bar, self.involvement, self.state):
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
        return box

    def _build_refusal(self) -> QFrame:
        """The red box with a refusal's reason and "Classify anyway"."""
        self.refusal = QFrame()
        self.refusal.setObjectName("refusalBox")
        self.refusal.setStyleSheet("#refusalBox { background: #5a1f1f; border-radius: 4px; } "
                                   "#refusalBox QLabel { color: #ffe9e6; }")
        r = QVBoxLayout(self.refusal)
        self.refusal_text = QLabel()
        self.refusal_text.setWordWrap(True)
        # a reason may hold a long path or UID: wrap within the panel, never widen it
        self.refusal_text.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.refusal_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.classify_anyway = QPushButton("Classify anyway")
        self.classify_anyway.clicked.connect(self.classifyAnywayRequested)
        r.addWidget(self.refusal_text)
        r.addWidget(self.classify_anyway, 0, Qt.AlignmentFlag.AlignLeft)
        return self.refusal

    def _build_heatmap(self) -> QGroupBox:
        """Heatmap on/off and opacity, its state, its share inside the lungs, the lung outline."""
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
        self.lung_share = QLabel("")
        self.lung_share.setObjectName("lungShare")
        self.lung_share.setWordWrap(True)
        self.lung_share.setToolTip("Share of the heatmap's weight that lies inside the lungs found by the "
                                   "lung segmenter. Low values mean the model looked mostly elsewhere.")
        self.lung_outline = QCheckBox("Show lung outline (L)")
        self.lung_outline.setToolTip("Draw the outline of the lungs found by the lung segmenter (cyan)")
        h.addLayout(hrow)
        h.addWidget(self.heat_state)
        h.addWidget(self.lung_share)
        h.addWidget(self.lung_outline)
        return heat

    def _build_lesion(self) -> QGroupBox:
        lesion = QGroupBox("Lesion map")
        self.lesion_box = lesion
        lz = QVBoxLayout(lesion)
        self.lesion = QCheckBox("Show lesion map (M)")
        self.lesion.setObjectName("lesionCheck")
        self.lesion.setToolTip("Where the model places lung opacities: tinted where its lesion probability is "
                               "at or above 0.5, with contour lines at 0.5 (magenta)")
        self.lesion_text = QLabel("Magenta: the model's lesion probability at or above 0.5 (filled, outlined).")
        self.lesion_text.setWordWrap(True)
        self.lesion_text.setStyleSheet("color: gray;")
        lz.addWidget(self.lesion)
        lz.addWidget(self.lesion_text)
        lesion.setVisible(False)  # only for a result with a lesion map (model v2)
        return lesion

    def _build_model(self) -> QGroupBox:
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
        return mbox

    def detach_summary(self) -> QWidget:
        """Take the verdict box out of this panel's layout, for a window to pin
        it elsewhere (above its scroll area).  A panel on its own keeps it on top."""
        self.layout().removeWidget(self.summary)
        return self.summary

    # -- showing -----------------------------------------------------------------
    def clear(self, state: str = "Open an image to classify it.") -> None:
        self.label.setText("—")
        self.label.setStyleSheet("")
        self.p_text.setText("P(COVID): —")
        self.p_text.setStyleSheet("")
        self.show_class_probs(None)
        self.show_involvement(None)
        self.bar.set_values(None, self.threshold.value())
        self.state.setText(state)
        self.show_refusal(None)
        self.show_warnings([])
        self.heat_state.setText("")
        self.show_lung_share(None)

    def set_busy(self, text: str) -> None:
        self.state.setText(text)

    def show_prediction(self, label: str, p: float, threshold: float, positive: str, *,
                        valid: bool = True, band: tuple[float, float] | None = None, model: str = "",
                        header_forced: str = "", probs: dict | None = None,
                        involvement: float | None = None) -> None:
        """A verdict, "Indeterminate — review" (``p`` inside the model's
        borderline ``band``), or (``valid=False``) a result shown without one.
        ``model``: the name and version of the model that computed it.
        ``header_forced``: a DICOM header refusal was overridden (its reasons).
        ``probs``: P per class name (a three-class model's P(Normal) and
        P(Pneumonia) are shown under P(COVID)); ``involvement``: the lesion
        map's share of the lung area (shown only for a valid result)."""
        source = f"Model: {model}. " if model else ""
        self.show_class_probs(probs, muted=not valid)
        self.show_involvement(involvement if valid else None)
        if not valid:
            self.label.setText(NOT_VALID_LABEL)
            self.label.setStyleSheet(f"color: {MUTED_COLOUR.name()};")
            self.p_text.setText(f"P(COVID): {p:.3f}   ({HEADER_NOT_VALID_NOTE if header_forced else NOT_VALID_NOTE})")
            self.p_text.setStyleSheet(f"color: {MUTED_COLOUR.name()};")
            self.bar.set_values(p, threshold, muted=True)
            if header_forced:
                self.state.setText(source + "Classified only because you chose “Classify anyway”: the DICOM header "
                                   f"says this is not a frontal chest radiograph ({header_forced}), so this output "
                                   "is not a valid result.")
            else:
                self.state.setText(source + "Classified only because you chose “Classify anyway”: the image does not "
                                   "look like a frontal chest radiograph, so this output means nothing.")
            return
        indeterminate = band is not None and band[0] <= p <= band[1]
        if indeterminate:
            self.label.setText(INDETERMINATE)
            self.label.setStyleSheet(f"color: {CAUTION_COLOUR.name()};")
            self.p_text.setText(f"P(COVID): {p:.3f}   (borderline band {band[0]:.3f}–{band[1]:.3f}; "
                                f"threshold {threshold:.3f})")
        else:
            other = label == PNEUMONIA
            self.label.setText(OTHER_PNEUMONIA if other else label)
            colour = POSITIVE_COLOUR if label == positive else PNEUMONIA_COLOUR if other else NEGATIVE_COLOUR
            self.label.setStyleSheet(f"color: {colour.name()};")
            self.p_text.setText(f"P(COVID): {p:.3f}   (threshold {threshold:.3f})")
        self.p_text.setStyleSheet("")
        self.bar.set_values(p, threshold, band=band,
                            below=PNEUMONIA_COLOUR if label == PNEUMONIA and not indeterminate else None)
        self.state.setText(source + ("P(COVID) is inside the model's borderline band, where its validation "
                                     "errors concentrate: a reader must decide. " if indeterminate else "")
                           + "A research aid, not a diagnosis.")

    def show_refusal(self, reason: str | None, *, can_override: bool = False, override_tip: str = "") -> None:
        """``reason``: a lower-case clause ("the modality is CT") or a whole
        sentence (the gate's "This does not look like ...")."""
        self.refusal.setVisible(bool(reason))
        text = ""
        if reason:
            text = f"Not classified. {reason}" if reason[:1].isupper() else f"Not classified: {reason}"
        self.refusal_text.setText(text)
        self.classify_anyway.setVisible(bool(reason) and can_override)
        self.classify_anyway.setToolTip(override_tip)

    def show_class_probs(self, probs: dict | None, *, muted: bool = False) -> None:
        """P(Normal) and P(Other pneumonia) of a three-class result (hidden for two classes)."""
        if not probs or PNEUMONIA not in probs:
            self.class_probs.setText("")
            self.class_probs.setVisible(False)
            return
        parts = [f"P({name}): {float(probs[key]):.3f}" for key, name in (("Normal", "Normal"),
                                                                       (PNEUMONIA, PNEUMONIA_LABEL))
                 if key in probs]
        self.class_probs.setText("   ".join(parts))
        self.class_probs.setStyleSheet(f"color: {MUTED_COLOUR.name()};" if muted else "")
        self.class_probs.setVisible(True)

    def show_involvement(self, share: float | None) -> None:
        """The lesion map's share of the lung area (None: no lesion map or no lungs found)."""
        if share is None:
            self.involvement.setText("")
            self.involvement.setVisible(False)
            return
        self.involvement.setText(f"Lung involvement: {share * 100:.0f} % of the lung area (lesion map)")
        self.involvement.setVisible(True)

    def show_lesion_controls(self, available: bool) -> None:
        """The lesion-map box only for a result that has a lesion map."""
        self.lesion_box.setVisible(bool(available))

    def show_lung_share(self, share: float | None, *, low: bool = False) -> None:
        """The heatmap's share inside the lungs (None: not known); ``low``: the
        core's caution applies (attention mostly outside the lungs)."""
        if share is None:
            self.lung_share.setText("")
            self.lung_share.setVisible(False)
            return
        self.lung_share.setText(f"Heatmap inside the lungs: {share * 100:.0f} %"
                                + ("  — mostly outside the lungs" if low else ""))
        self.lung_share.setStyleSheet(f"color: {CAUTION_COLOUR.name()}; font-weight: bold;" if low else "")
        self.lung_share.setVisible(True)

    def show_warnings(self, warnings: list[str]) -> None:
        self.warnings.setVisible(bool(warnings))
        items = [w if w.endswith((".", "!", "?")) else w + "." for w in warnings]
        self.warnings.setText("Please note: " + items[0] if len(items) == 1 else
                              "Please note:\n" + "\n".join(f"• {w}" for w in items) if items else "")

    def set_threshold(self, value: float) -> None:
        """Set the spin box without emitting ``thresholdEdited``."""
        self.threshold.blockSignals(True)
        self.threshold.setValue(value)
        self.threshold.blockSignals(False)

    def set_model_text(self, text: str, *, ready: bool) -> None:
        self.model_text.setText(text)
        self.threshold.setEnabled(ready)
        self.reset_threshold.setEnabled(ready)
