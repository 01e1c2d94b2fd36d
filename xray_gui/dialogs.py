"""Dialogs: Help → About (model card + model metadata) and Settings (device)."""

from __future__ import annotations

import html

from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QRadioButton,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
)

from training.common.constants import (
    APP_DEVICES,  # noqa: E402
    PRECISION_LABELS,
)
from training.common.constants import DEVICE_LABELS as _ALL_LABELS

from . import APP_NAME, RESEARCH_NOTICE

DEVICE_LABELS = {k: _ALL_LABELS[k] for k in APP_DEVICES}  # the app's choices, in the core's words


def _readable(value) -> str:
    """A metadata value for people: rounded numbers, lists and records spelled out (no JSON)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_readable(v)}" for k, v in value.items()) or "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(_readable(v) for v in value) or "—"
    return str(value) if value not in (None, "") else "—"


def _table(rows) -> str:
    return ("<table cellpadding='3'>" + "".join(
        f"<tr><td><b>{html.escape(str(k))}</b></td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        + "</table>")


def model_info_html(classifier) -> str:
    """The About box's Model tab: the model's description, its test figures at
    the threshold in use (labelled with it, 95 % CIs, with a caution when they
    rest on few images), and its training, as tables; no raw JSON."""
    if classifier is None:
        return "<p>No model loaded — use <b>File → Open Model…</b>.</p>"
    from training.common.constants import ARCH_LABELS
    from training.model.summary import summarize

    info = classifier.info
    path = classifier.loaded.path
    rows = [("Name", info.title), ("Version", info.version),
            ("Architecture", ARCH_LABELS.get(info.arch, info.arch)),
            ("Classes", ", ".join(info.class_names)), ("Positive class", info.positive_class),
            ("Input size", f"{info.input_size} × {info.input_size}"),
            ("Decision threshold (file)", f"{info.threshold:.3f}"),
            ("Threshold in use", f"{classifier.threshold:.3f}"),
            ("Created", info.created or "—"), ("File", str(path or "—")),
            ("Running on", classifier.device_type),
            ("Engine", getattr(classifier, "engine_note", "") or "not started yet")]
    if info.band:
        rows.append(("Borderline band (Indeterminate)", f"{info.band[0]:.3f}–{info.band[1]:.3f}"))
    if info.operating_points:
        rows.append(("Operating points", ", ".join(f"{k}: {v:.3f}" for k, v in info.operating_points.items())))
    if info.description:
        rows.append(("Description", info.description))
    out = _table(rows)
    s = summarize(info, path, classifier.threshold)
    if s.has_metrics:
        out += f"<h4>Test metrics at threshold {s.threshold:.3f}"
        out += (" (the threshold in use)" if s.at_threshold_in_use else "") + "</h4>"
        out += _table(s.rows())
        out += f"<p style='color:#666'>Source: {html.escape(s.source)}; 95 % confidence intervals in brackets.</p>"
    if s.warning():
        out += f"<p style='color:#9a6700'><b>Caution:</b> {html.escape(s.warning())}</p>"
    from training.inference.engine_fast import summary_lines

    fast = summary_lines(info.fast_mode)
    out += "<h4>Fast mode (int8)</h4><p>" + "<br>".join(html.escape(line.strip()) for line in fast) + "</p>"
    if info.training:
        out += "<h4>Training</h4>" + _table((k.replace("_", " ").capitalize(), _readable(v))
                                            for k, v in info.training.items())
    return out


class AboutDialog(QDialog):
    def __init__(self, classifier, card_path, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"About {APP_NAME}")
        self.resize(720, 620)
        lay = QVBoxLayout(self)
        from training import __version__

        head = QLabel(f"<h2>{APP_NAME}</h2><p>Version {__version__}. COVID-19 vs normal on chest radiographs "
                      f"with a ResNet50-LSTM, Grad-CAM explanations and batch folders.</p>"
                      f"<p style='color:#c44'><b>{RESEARCH_NOTICE}.</b></p>")
        head.setWordWrap(True)
        lay.addWidget(head)
        tabs = QTabWidget()
        info = QTextBrowser()
        info.setHtml(model_info_html(classifier))
        tabs.addTab(info, "Model")
        card = QTextBrowser()
        card.setOpenExternalLinks(True)
        text = None
        if card_path is not None:
            try:
                text = card_path.read_text(encoding="utf-8")
            except OSError:
                text = None
        if text:
            card.setMarkdown(text)
        else:
            card.setHtml("<p>No model card is installed with this copy of the program.</p>")
        tabs.addTab(card, "Model card")
        lay.addWidget(tabs, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)


class SettingsDialog(QDialog):
    """Device choice; applying reloads the model on that device."""

    def __init__(self, device: str, cuda_available: bool | None, parent=None, precision: str = "fp32"):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("<b>Run the model on:</b>"))
        self.group = QButtonGroup(self)
        self.buttons: dict[str, QRadioButton] = {}
        for key, text in DEVICE_LABELS.items():
            b = QRadioButton(text)
            if key == "cuda" and cuda_available is False:
                b.setEnabled(False)
                b.setText(text + " — not available on this computer")
            self.group.addButton(b)
            self.buttons[key] = b
            lay.addWidget(b)
        self.buttons.get(device, self.buttons["auto"]).setChecked(True)
        lay.addWidget(QLabel("<b>Precision on the CPU:</b>"))
        self.precision_group = QButtonGroup(self)
        self.precision_buttons: dict[str, QRadioButton] = {}
        for key, text in PRECISION_LABELS.items():
            b = QRadioButton(text)
            self.precision_group.addButton(b)
            self.precision_buttons[key] = b
            lay.addWidget(b)
        self.precision_buttons.get(precision, self.precision_buttons["fp32"]).setChecked(True)
        note = QLabel("Fast runs only where the CPU has AMX, AVX-512 VNNI, AVX-VNNI or AVX-512 BF16 and the model "
                      "file carries its int8 mode; it can change results - Help → About shows how often it agreed "
                      "with fp32, and a model whose check missed is run with a warning.")
        note.setWordWrap(True)
        note.setStyleSheet("color: #666")
        lay.addWidget(note)

        # -- heatmap presentation (heatmap_settings.py): applied on OK --------------
        self.heatmap_box = None
        if parent is not None and hasattr(parent, "settings") and hasattr(parent, "images"):
            from .heatmap_settings import HeatmapSettingsBox

            self.heatmap_box = HeatmapSettingsBox(parent.settings, self)
            lay.addWidget(self.heatmap_box)
            self.accepted.connect(lambda: self.heatmap_box.apply(parent))
        # ---------------------------------------------------------------------------

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

    def precision(self) -> str:
        return next((k for k, b in self.precision_buttons.items() if b.isChecked()), "fp32")

    def device(self) -> str:
        for key, b in self.buttons.items():
            if b.isChecked():
                return key
        return "auto"
