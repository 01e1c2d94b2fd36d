"""Switching the model is a deliberate step (File → Open Model…, and the
training wizard's "Use … model now").

:class:`ModelSwitchDialog` puts the candidate's test figures beside the
current model's (accuracy, sensitivity, specificity, ROC AUC with 95 % CIs,
test-set size, the threshold they were computed at, calibration; from
``training.model.summary``), says plainly when they rest on a handful of
images, says what happens to the batch table's results, and offers
*Use for this session only*, *Use and make default* or *Cancel* (the default
button: Enter does not switch).

:func:`switch_model` asks and then loads: "session" loads without touching
the remembered model, "default" also remembers it for the next start.
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPushButton, QVBoxLayout

from training.common.formatting import version_label

SESSION, DEFAULT = "session", "default"


def _esc(text) -> str:
    return html.escape(str(text))


def summary_for(info, path, threshold):
    from training.model.summary import summarize

    return summarize(info, path, threshold)


def comparison_html(current, candidate) -> str:
    """A two-column table (current | candidate); each side is ``(info, path,
    MetricsSummary)`` or None (no model loaded)."""
    from training.common.constants import ARCH_LABELS

    def head(side):
        if side is None:
            return ["no model loaded", "—", "—"]
        info, path, _s = side
        return [f"<b>{_esc(version_label(info.title, info.version))}</b>", _esc(Path(path).name if path else "—"),
                _esc(f"{ARCH_LABELS.get(info.arch, info.arch)}, {info.input_size} px")]

    def figures(side):
        if side is None:
            return None
        return [_esc(text) for _label, text in side[2].rows()]

    labels = ["Model", "File", "Architecture"]
    cur_h, cand_h = head(current), head(candidate)
    cur_f, cand_f = figures(current), figures(candidate)
    ref = (candidate or current)[2].rows() if (candidate or current) else []
    labels += [label for label, _ in ref]
    cur = cur_h + (cur_f or ["—"] * len(ref))
    cand = cand_h + (cand_f or ["—"] * len(ref))
    rows = "".join(f"<tr><td><b>{_esc(k)}</b></td><td>{a}</td><td>{b}</td></tr>"
                   for k, a, b in zip(labels, cur, cand))
    return ("<table cellpadding='4' cellspacing='0' border='1' style='border-collapse:collapse'>"
            "<tr><th></th><th>Current model</th><th>Candidate</th></tr>" + rows + "</table>"
            "<p style='color:#666'>Figures on each model's own test split, with 95 % confidence intervals; "
            "the two test splits may differ, so compare with care.</p>")


class ModelSwitchDialog(QDialog):
    """Ask before switching; ``choice`` is SESSION, DEFAULT or None (cancelled)."""

    def __init__(self, current, candidate, *, stale_results: int = 0, parent=None):
        super().__init__(parent)
        self.setObjectName("modelSwitchDialog")
        self.setWindowTitle("Switch the model?")
        self.choice: str | None = None
        info, path, summary = candidate
        lay = QVBoxLayout(self)
        now = _esc(version_label(current[0].title, current[0].version)) if current else "no model"
        title = QLabel(f"<h3>Use {_esc(version_label(info.title, info.version))} instead of {now}?</h3>")
        title.setWordWrap(True)
        lay.addWidget(title)
        self.table = QLabel(comparison_html(current, candidate))
        self.table.setObjectName("switchComparison")
        self.table.setWordWrap(True)
        lay.addWidget(self.table)

        cautions = []
        if summary.warning():
            cautions.append("<b>Candidate:</b> " + _esc(summary.warning()))
        if current is not None and current[2].warning():
            cautions.append("<b>Current model:</b> " + _esc(current[2].warning()))
        self.caution = QLabel("<br>".join(cautions))
        self.caution.setObjectName("switchCaution")
        self.caution.setWordWrap(True)
        self.caution.setStyleSheet("background:#fff4d6; color:#6b4e00; border:1px solid #e0b84c; padding:6px;")
        self.caution.setVisible(bool(cautions))
        lay.addWidget(self.caution)

        stale = ("" if not stale_results else
                 f"{stale_results} result{'s' if stale_results != 1 else ''} in the batch table "
                 f"{'were' if stale_results != 1 else 'was'} computed by the current model. After the switch "
                 "they are marked stale (grey, “(stale)”), are not relabelled by the new threshold and are not "
                 "exported as DICOM; classify the images again for the new model's results. ")
        self.consequences = QLabel(
            _esc(stale) + "<b>Use for this session only</b>: the next start uses the model remembered now. "
            "<b>Use and make default</b>: the next start uses this model too.")
        self.consequences.setObjectName("switchConsequences")
        self.consequences.setWordWrap(True)
        lay.addWidget(self.consequences)
        lay.addWidget(QLabel("<span style='color:#a33'>Research use only — not a diagnosis.</span>"))

        buttons = QDialogButtonBox()
        self.session_button = QPushButton("Use for this session only")
        self.session_button.setObjectName("switchSessionOnly")
        self.default_button = QPushButton("Use and make default")
        self.default_button.setObjectName("switchMakeDefault")
        self.cancel_button = buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        buttons.addButton(self.session_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(self.default_button, QDialogButtonBox.ButtonRole.AcceptRole)
        for b in (self.session_button, self.default_button):
            b.setAutoDefault(False)
            b.setDefault(False)
        self.cancel_button.setDefault(True)  # Enter cancels: switching takes a click on purpose
        self.session_button.clicked.connect(lambda: self._choose(SESSION))
        self.default_button.clicked.connect(lambda: self._choose(DEFAULT))
        self.cancel_button.clicked.connect(self.reject)
        lay.addWidget(buttons)
        self.resize(760, self.sizeHint().height())

    def _choose(self, choice: str) -> None:
        self.choice = choice
        self.accept()

    def text(self) -> str:
        """Everything the dialog says, as plain text (tests, screen readers)."""
        from PySide6.QtGui import QTextDocument

        doc = QTextDocument()
        parts = []
        for lab in self.findChildren(QLabel):
            if lab.isVisibleTo(self):
                doc.setHtml(lab.text())
                parts.append(doc.toPlainText())
        return "\n".join(parts)


def current_side(models):
    """(info, path, summary) of the loaded model at the threshold in use, or None."""
    clf = models.classifier
    if clf is None:
        return None
    return clf.info, models.path, summary_for(clf.info, models.path, clf.threshold)


def candidate_side(models, path):
    """(info, path, summary) of the model file ``path`` at the threshold it
    would use (its remembered one, else the file's); raises ``ModelFileError``."""
    from training.model.modelfile import read_info

    info, _header = read_info(path)
    saved = models.settings.threshold_for(str(Path(path)))
    thr = saved if saved is not None and 0.0 < saved < 1.0 else info.threshold
    return info, Path(path), summary_for(info, path, thr)


def switch_model(window, path) -> str | None:
    """Ask, then switch ``window``'s model to ``path``.  Returns SESSION or
    DEFAULT when the new model is being loaded, None when cancelled.  A file
    whose description cannot be read is handed to the loader anyway, which
    shows the reason and keeps the current model."""
    from training.common.errors import XrayError

    models = window.models
    try:
        candidate = candidate_side(models, path)
    except XrayError:
        models.load(path, remember=False)  # fails with the reason in the usual place
        return None
    batch = getattr(getattr(window, "batch_panel", None), "model", None)
    current_results = 0
    if batch is not None:
        current_results = sum(1 for r in batch.rows
                              if r.pred is not None and r.pred.status == "ok" and not batch.is_stale(r))
    dlg = ModelSwitchDialog(current_side(models), candidate, stale_results=current_results, parent=window)
    dlg.exec()
    choice = dlg.choice
    dlg.deleteLater()
    if choice is None:
        window.notifier.info(f"Model not switched: {version_label(candidate[0].title, candidate[0].version)} "
                             "was not loaded.")
        return None
    models.load(path, remember=choice == DEFAULT)
    return choice


__all__ = ["ModelSwitchDialog", "switch_model", "comparison_html", "SESSION", "DEFAULT"]
