"""Page 5 - Finish: the model files the trainer saved (``<run>/models``), the
run folder, switching the main window to a new model, and exporting the
report for filing."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWizardPage,
)

from training.common.formatting import ci_text
from training.train import run_folder

from .common import MODEL_LABELS, MessageLabel, error_text, esc
from .results_page import load_run


def preferred_model(results: dict[str, dict]) -> str | None:
    """ResNet50-LSTM (the paper's model) when trained, else the best by test accuracy."""
    if "resnet50_lstm" in results:
        return "resnet50_lstm"
    if not results:
        return None
    return max(results, key=lambda a: results[a]["evaluations"]["test"]["at_0.5"]["accuracy"])


class FinishPage(QWizardPage):
    def __init__(self, wiz):
        super().__init__()
        self.wiz = wiz
        self.setTitle("5. Finish")
        self.setSubTitle("The trained models are saved in the run folder. Use one in the main window now (you "
                         "see its test figures beside the current model's first), or open it later with File → "
                         "Open Model….")
        self.run_dir: Path | None = None
        self.results: dict[str, dict] = {}
        self.model_paths: dict[str, Path] = {}
        self.exported: list[Path] = []

        self.run_label = QLabel()
        self.run_label.setObjectName("runFolder")
        self.run_label.setWordWrap(True)
        open_button = QPushButton("Open run folder")
        open_button.setObjectName("openRunFolder")
        open_button.clicked.connect(self.open_folder)
        rl = QHBoxLayout()
        rl.addWidget(self.run_label, 1)
        rl.addWidget(open_button)

        self.table = QTableWidget(0, 5)
        self.table.setObjectName("modelFiles")
        self.table.setHorizontalHeaderLabels(["Model", "File", "Size", "Chosen epoch",
                                              "Test accuracy at 0.5 (95 % CI)"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.doubleClicked.connect(lambda _i: self.use_selected())

        self.use_button = QPushButton("Use the ResNet50-LSTM model now")
        self.use_button.setObjectName("useModel")
        self.use_button.clicked.connect(self.use_selected)
        self.export_button = QPushButton("Export report…")
        self.export_button.setObjectName("exportReport")
        self.export_button.setToolTip("An HTML page (or PDF) with the tables and figures, plus copies of "
                                      f"{run_folder.REPORT_MD} and {run_folder.REPORT_JSON}")
        self.export_button.clicked.connect(self.choose_export)
        bl = QHBoxLayout()
        bl.addWidget(self.use_button)
        bl.addWidget(self.export_button)
        bl.addStretch(1)
        self.message = MessageLabel()
        self.message.setObjectName("finishMessage")

        box = QGroupBox("Model files")
        blay = QVBoxLayout(box)
        blay.addWidget(self.table)
        blay.addLayout(bl)
        blay.addWidget(self.message)
        files = QLabel(
            "<b>Also in the run folder</b><ul>"
            f"<li><code>{run_folder.REPORT_MD}</code>, <code>{run_folder.REPORT_JSON}</code>: the paper's tables "
            "beside this run's numbers</li>"
            "<li><code>&lt;model&gt;/</code>: history (CSV/JSON), metrics, predictions, curves, confusion matrix, "
            "reliability diagram</li>"
            f"<li><code>{run_folder.SPLIT}</code>: which image went to training, validation and test; reuse it in "
            "Setup → Split file to compare runs on the same test images</li>"
            f"<li><code>{run_folder.CHECKPOINTS}/</code>: the last and best epoch of each model; a cancelled run "
            "resumes from them (same settings, same run folder, or <code>xray-train --resume RUN_FOLDER</code>)</li></ul>")
        files.setWordWrap(True)
        files.setStyleSheet("color:#444")
        lay = QVBoxLayout(self)
        lay.addLayout(rl)
        lay.addWidget(box)
        lay.addWidget(files)
        lay.addStretch(1)
        lay.addWidget(QLabel("<span style='color:#a33'>Research use only — not a diagnosis.</span> "
                             "<span style='color:#666'>A model trained here has not been validated for clinical "
                             "use; check its test metrics and confidence intervals before relying on it.</span>"))

    def initializePage(self) -> None:  # noqa: N802
        self.show_run(self.wiz.state.config.out_dir)

    def show_run(self, run_dir) -> None:
        self.run_dir = Path(run_dir)
        self.run_label.setText(f"<b>Run folder:</b> {esc(self.run_dir)}")
        _report, self.results = load_run(self.run_dir)
        self.model_paths = {}
        self.table.setRowCount(0)
        for arch, r in self.results.items():
            p = run_folder.model_file(self.run_dir, arch)
            if not p.is_file():
                continue
            self.model_paths[arch] = p
            row = self.table.rowCount()
            self.table.insertRow(row)
            m = r["evaluations"]["test"]["at_0.5"]
            cells = [MODEL_LABELS[arch], str(p), f"{p.stat().st_size / 1e6:.1f} MB",
                     f"{r['best_epoch']} of {r['epochs_run']}", f"{ci_text(m, 'accuracy')} (n={m['n']})"]
            for c, text in enumerate(cells):
                it = QTableWidgetItem(text)
                if c == 1:
                    it.setToolTip(str(p))
                self.table.setItem(row, c, it)
        self.table.resizeRowsToContents()
        self.table.setFixedHeight(self.table.horizontalHeader().height() + 2 * self.table.frameWidth() + 4
                                  + sum(self.table.rowHeight(r) for r in range(self.table.rowCount())))
        pref = preferred_model({a: r for a, r in self.results.items() if a in self.model_paths})
        if pref is not None:
            self.table.selectRow(list(self.model_paths).index(pref))
        self._selection_changed()
        self.use_button.setEnabled(pref is not None and self.wiz.use_model is not None)
        if self.wiz.use_model is None:
            self.use_button.setToolTip("Open the wizard from the main window (Tools → Train models…) to switch "
                                       "its model")

    def selected_arch(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        return list(self.model_paths)[rows[0].row()]

    def _selection_changed(self) -> None:
        arch = self.selected_arch()
        label = MODEL_LABELS.get(arch, "selected")
        self.use_button.setText(f"Use the {label} model now")
        self.use_button.setEnabled(arch is not None and self.wiz.use_model is not None)

    def use_selected(self) -> None:
        arch = self.selected_arch()
        if arch is None or self.wiz.use_model is None:
            return
        path = self.model_paths[arch]
        # the main window asks first (its test figures beside the current model's; this session only or
        # as the default); the answer comes back: "session", "default" or None (cancelled)
        choice = self.wiz.use_model(str(path))
        if choice is None:
            self.message.show_message(f"The main window keeps its current model; the {MODEL_LABELS[arch]} model "
                                      f"({esc(path.name)}) was not loaded.", "muted")
            return
        when = ("for this session only (the next start uses the model remembered before)" if choice == "session"
                else "and remembers it for the next start")
        self.message.show_message(f"The main window is loading the {MODEL_LABELS[arch]} model ({esc(path.name)}) "
                                  f"{when}; its status bar says when it is ready.", "ok")

    def open_folder(self) -> None:
        if self.run_dir is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.run_dir)))

    def choose_export(self) -> None:
        if self.run_dir is None:
            return
        start = Path.home() / f"training_report_{self.run_dir.name}.html"
        f, filt = QFileDialog.getSaveFileName(self, "Export training report", str(start),
                                              "Web page (*.html);;PDF (*.pdf)")
        if f:
            if not Path(f).suffix:
                f += ".pdf" if "pdf" in filt.lower() else ".html"
            self.export(f)

    def export(self, target) -> list[Path]:
        from .report_export import export_report

        try:
            self.exported = export_report(self.run_dir, target)
        except Exception as exc:  # OSError (unwritable folder) or a missing report file
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else error_text(exc)
            self.message.show_message(f"Could not export the report to {esc(target)}: {esc(reason)}", "error")
            self.wiz.notifier.warning(f"Could not export the report: {reason}")
            return []
        self.message.show_message("Report written: " + ", ".join(esc(p.name) for p in self.exported)
                                  + f" in {esc(self.exported[0].parent)}", "ok")
        self.wiz.notifier.info(f"Training report written to {self.exported[0]}")
        return self.exported
