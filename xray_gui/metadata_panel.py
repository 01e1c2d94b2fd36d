"""Image metadata (from ``LoadedImage.meta``) and the display controls:
window/level presets and invert.  Patient identifiers stay hidden unless the
user ticks "Show patient identifiers"; then each is one line, cut with "…" to
the panel's width (full text in the tooltip), so a long UID never widens the
side panel."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from .display_state import CUSTOM_PRESET, OTHER_PRESETS, PRESET_TIPS, WINDOW_PRESETS
from .elided import ElidedLabel

PRESETS = WINDOW_PRESETS + OTHER_PRESETS


def _text(value) -> str:
    if value is None or value == "" or value == {}:
        return "not recorded"
    return str(value)


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _breakable(name: str) -> str:
    """Let a long file name wrap after _ - . (zero-width spaces)."""
    for ch in "_-.":
        name = name.replace(ch, ch + "\u200b")
    return name


class MetadataPanel(QWidget):
    presetChosen = Signal(str)
    invertToggled = Signal(bool)
    showPatientToggled = Signal(bool)

    FIELDS = (("kind", "File type"), ("modality", "Modality"), ("body_part", "Body part"), ("view", "View"),
              ("size", "Size"), ("bits", "Bits"), ("photometric", "Photometric"),
              ("transfer_syntax", "Transfer syntax"), ("window", "Window (file)"))

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 0, 6, 6)

        disp = QGroupBox("Display")
        d = QVBoxLayout(disp)
        row = QHBoxLayout()
        row.addWidget(QLabel("W/L:"))
        self.preset = QComboBox()
        self.preset.addItems(PRESETS)
        for i, name in enumerate(PRESETS):
            if name in PRESET_TIPS:
                self.preset.setItemData(i, PRESET_TIPS[name], Qt.ItemDataRole.ToolTipRole)
        # shown after a right-drag; not a choice of its own (greyed in the list)
        self.preset.addItem(CUSTOM_PRESET)
        custom = self.preset.model().item(self.preset.count() - 1)
        custom.setEnabled(False)
        custom.setToolTip("set by right-dragging on the image")
        self.preset.setToolTip("Window/level: keys 1-4 = File default, Lung, Mediastinum, Bone (chosen from this "
                               "image's grey levels; radiographs have no Hounsfield scale). Right-drag on the image: "
                               "horizontal = width (contrast), vertical = level (brightness); the box then says "
                               "Custom. More / Less contrast are the file's window at 0.6 x / 1.6 x its width. "
                               "Display only.")
        self.preset.activated.connect(lambda i: self.presetChosen.emit(self.preset.itemText(i)))
        row.addWidget(self.preset, 1)
        self.invert = QCheckBox("Invert (I)")
        self.invert.toggled.connect(self.invertToggled)
        row.addWidget(self.invert)
        d.addLayout(row)
        self.window_now = QLabel("")
        self.window_now.setObjectName("windowNow")
        self.window_now.setWordWrap(True)
        self.window_now.setStyleSheet("color: gray;")
        self.window_now.setToolTip("Display only: the model always sees the file's default window.")
        d.addWidget(self.window_now)
        lay.addWidget(disp)

        box = QGroupBox("Image information")
        self.form = QFormLayout(box)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.values: dict[str, QLabel] = {}
        for key, title in self.FIELDS:
            lab = QLabel("—")
            lab.setTextFormat(Qt.TextFormat.PlainText)  # header values are data, never markup
            lab.setWordWrap(True)
            lab.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.values[key] = lab
            self.form.addRow(title + ":", lab)
        self.file_label = QLabel("—")
        self.file_label.setTextFormat(Qt.TextFormat.PlainText)
        self.file_label.setWordWrap(True)
        self.file_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.form.insertRow(0, "File:", self.file_label)
        lay.addWidget(box)

        pbox = QGroupBox("Patient")
        p = QVBoxLayout(pbox)
        self.show_patient = QCheckBox("Show patient identifiers")
        self.show_patient.setToolTip("Off by default. When on, identifiers also go into exported reports.")
        self.show_patient.toggled.connect(self._patient_toggled)
        # one line per identifier, cut with "..." to the panel's width (a long UID
        # must not widen the panel); the full text is in the tooltip and Copy
        self.patient = ElidedLabel("hidden")
        self.patient.setObjectName("patientText")
        p.addWidget(self.show_patient)
        p.addWidget(self.patient)
        lay.addWidget(pbox)
        lay.addStretch(1)
        self._patient: dict = {}
        self.set_meta(None)

    def set_meta(self, meta) -> None:
        """Show an ``ImageMeta`` (or nothing)."""
        if meta is None:
            self.file_label.setText("—")
            for lab in self.values.values():
                lab.setText("—")
            self._patient = {}
            self._refresh_patient()
            self.set_dicom_controls(False)
            return
        self.file_label.setText(_breakable(Path(str(meta.path)).name))
        self.file_label.setToolTip(str(meta.path))
        size = getattr(meta, "original_size", None)
        window = getattr(meta, "window", None)
        src = getattr(meta, "window_source", "")
        vals = {
            "kind": (getattr(meta, "kind", "") or "").upper(),
            "modality": _text(getattr(meta, "modality", None)),
            "body_part": _text(getattr(meta, "body_part", None)),
            "view": _text(getattr(meta, "view", None)),
            "size": f"{size[1]} × {size[0]} px (W × H)" if size else "—",
            "bits": _text(getattr(meta, "bits", None)),
            "photometric": _text(getattr(meta, "photometric", None)),
            "transfer_syntax": _text(getattr(meta, "transfer_syntax", None)),
            "window": (f"level {_num(window[0])}, width {_num(window[1])}"
                       + (f" ({src})" if src and src != "none" else "")) if window else "none",
        }
        for key, lab in self.values.items():
            lab.setText(vals.get(key, "—"))
        self._patient = dict(getattr(meta, "patient", None) or {})
        self._refresh_patient()

    def show_preset(self, name: str) -> None:
        """Show ``name`` (a preset or "Custom") in the W/L box without choosing it."""
        i = self.preset.findText(name)
        if i >= 0 and i != self.preset.currentIndex():
            self.preset.setCurrentIndex(i)

    def set_dicom_controls(self, enabled: bool) -> None:
        self.preset.setEnabled(enabled)
        if not enabled:
            self.window_now.setText("")
            self.window_now.setVisible(False)  # no empty line in the Display box

    def set_window_text(self, center: float | None, width: float | None) -> None:
        self.window_now.setText("" if center is None else
                                f"Level {_num(center)}, width {_num(width)} (display only; the model sees "
                                "the file's default window)")
        self.window_now.setVisible(center is not None)

    def patient_visible(self) -> bool:
        return self.show_patient.isChecked()

    def patient_items(self) -> dict:
        return dict(self._patient)

    def _patient_toggled(self, on: bool) -> None:
        self._refresh_patient()
        self.showPatientToggled.emit(on)

    def _refresh_patient(self) -> None:
        if not self.show_patient.isChecked():
            self.patient.setText("hidden" if self._patient else "none recorded")
            return
        if not self._patient:
            self.patient.setText("none recorded")
            return
        self.patient.setText("\n".join(f"{k}: {v}" for k, v in self._patient.items()))
