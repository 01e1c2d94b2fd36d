"""Page 4 - Results: this run beside the paper.

Read from the run folder the trainer wrote, through the core's reader
(``training.train.run_results``: ``<run>/<arch>/metrics.json``, ``history.json`` and
``report.json``): Table 6 (test accuracy, precision,
recall, F1 with 95 % confidence intervals, ROC AUC), Table 2 (train and
validation loss/accuracy at the chosen epoch), a confusion-matrix heatmap per
model (``training.train.plots.draw_confusion``) and the curves
(``training.train.plots.draw_curves``)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWizardPage,
)

from .common import MODEL_LABELS
from .figure import FigureWidget, integer_epochs

PAPER_BG = QColor(238, 238, 238)


from training.train.run_results import load_history, load_run  # noqa: E402,F401  (the core reads run folders)


def _ci(m: dict, key: str) -> str:
    from training.common.formatting import ci_text

    return ci_text(m, key)


def _table(headers: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.verticalHeader().setVisible(False)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    t.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
    return t


def _add_row(t: QTableWidget, cells: list[str], paper: bool = False) -> None:
    r = t.rowCount()
    t.insertRow(r)
    for c, text in enumerate(cells):
        it = QTableWidgetItem(text)
        if c > 0:
            it.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        if paper:
            it.setBackground(QBrush(PAPER_BG))
            it.setForeground(QBrush(QColor(80, 80, 80)))
        t.setItem(r, c, it)


def _fit_height(t: QTableWidget) -> None:
    t.resizeRowsToContents()
    h = t.horizontalHeader().height() + sum(t.rowHeight(r) for r in range(t.rowCount())) + 2 * t.frameWidth()
    t.setFixedHeight(h + 2)


class ResultsPage(QWizardPage):
    def __init__(self, wiz):
        super().__init__()
        self.wiz = wiz
        self.setTitle("4. Results: this run beside the paper")
        self.setSubTitle("Test split, threshold 0.5, COVID positive. Brackets: 95 % confidence intervals "
                         "(Wilson for accuracy, precision and recall; bootstrap for F1 and ROC AUC). "
                         "Grey rows: the paper's numbers.")
        self.results: dict[str, dict] = {}
        self.report: dict = {}
        self.confusions: dict[str, dict] = {}

        self.table6 = _table(["Model", "Test images", "Accuracy", "Precision", "Recall", "F1", "ROC AUC"])
        self.table6.setObjectName("table6")
        self.table2 = _table(["Model", "Chosen epoch", "Train loss", "Train accuracy", "Val loss",
                              "Val accuracy"])
        self.table2.setObjectName("table2")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color:#666")
        self.confusion_fig = FigureWidget((9, 3.0), min_height=230)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("resultTabs")
        self.tabs.addTab(self.confusion_fig, "Confusion matrices (Tables 3-5)")
        self.tabs.addTab(self.table2, "Train / validation at the chosen epoch (Table 2)")
        self.curve_figs: dict[str, FigureWidget] = {}

        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("<b>Table 6 - test metrics</b>"))
        lay.addWidget(self.table6)
        lay.addWidget(self.note)
        lay.addWidget(self.tabs, 1)

    def initializePage(self) -> None:  # noqa: N802
        self.show_run(self.wiz.state.config.out_dir)

    def show_run(self, run_dir) -> None:
        from training.train.paper_reference import CONFUSION, TABLE2, TABLE6

        self.report, self.results = load_run(run_dir)
        paper = self.report.get("paper", {})
        t2_paper, t6_paper = paper.get("table2", TABLE2), paper.get("table6", TABLE6)
        cm_paper = paper.get("confusion", CONFUSION)

        self.table6.setRowCount(0)
        self.table2.setRowCount(0)
        self.confusions = {}
        for arch, r in self.results.items():
            label = MODEL_LABELS[arch]
            m = r["evaluations"]["test"]["at_0.5"]
            self.confusions[arch] = dict(m["confusion"])
            _add_row(self.table6, [f"{label} - this run", str(m["n"]), _ci(m, "accuracy"), _ci(m, "precision"),
                                   _ci(m, "recall"), _ci(m, "f1"), _ci(m, "roc_auc")])
            p = t6_paper.get(arch)
            if p:
                _add_row(self.table6, [f"{label} - paper", "100", f"{p['accuracy']:.2f}", f"{p['precision']:.2f}",
                                       f"{p['recall']:.2f}", f"{p['f1']:.2f}", "not reported"], paper=True)
            c = r["chosen_epoch"]
            _add_row(self.table2, [f"{label} - this run", f"{r['best_epoch']} of {r['epochs_run']}",
                                   f"{c['train_loss']:.4f}", f"{c['train_acc']:.4f}", f"{c['val_loss']:.4f}",
                                   f"{c['val_acc']:.4f}"])
            p = t2_paper.get(arch)
            if p:
                _add_row(self.table2, [f"{label} - paper", "best", f"{p['train_loss']:.4f}", f"{p['train_acc']:.4f}",
                                       f"{p['val_loss']:.4f}", f"{p['val_acc']:.4f}"], paper=True)
        _fit_height(self.table6)
        self._draw_confusions(cm_paper)
        self._draw_curves(run_dir)
        cfg = self.report.get("config", {})
        n_test = next(iter(self.results.values()))["evaluations"]["test"]["at_0.5"]["n"] if self.results else 0
        notes = []
        if n_test:
            notes.append(f"{n_test} test images: one image is {100 / n_test:.1f} percentage points.")
        if cfg.get("init") == "scratch":
            notes.append("This run started from random weights; the paper's ResNet50 almost certainly started "
                         "from ImageNet weights, so expect lower accuracy (see the report).")
        if cfg and (cfg.get("epochs") != 15 or cfg.get("input_size") != 224):
            notes.append(f"Settings differ from the paper's: {cfg.get('input_size')} px input, "
                         f"{cfg.get('epochs')} epochs (paper: 224 px, 15 epochs).")
        self.note.setText(" ".join(notes))

    def _draw_confusions(self, cm_paper: dict) -> None:
        from training.train.plots import draw_confusion

        fig = self.confusion_fig.figure
        fig.clear()
        n = max(1, len(self.confusions))
        for i, (arch, cm) in enumerate(self.confusions.items()):
            ax = fig.add_subplot(1, n, i + 1)
            p = cm_paper.get(arch)
            title = f"{MODEL_LABELS[arch]} (n={sum(cm.values())})"
            if p:
                title += f"\npaper: TP {p['tp']}  FN {p['fn']}  FP {p['fp']}  TN {p['tn']}"
            draw_confusion(ax, cm, title)
            ax.title.set_fontsize(10)
        self.confusion_fig.redraw()

    def _draw_curves(self, run_dir) -> None:
        from training.train.plots import draw_curves

        for arch in list(self.curve_figs):
            fw = self.curve_figs.pop(arch)
            self.tabs.removeTab(self.tabs.indexOf(fw))
            fw.deleteLater()
        for arch, r in self.results.items():
            hist = load_history(run_dir, arch)
            if not hist:
                continue
            fw = FigureWidget((9, 3.0), min_height=230)
            draw_curves(fw.figure, hist, f"{MODEL_LABELS[arch]}: loss and accuracy", r.get("best_epoch"))
            integer_epochs(fw.figure)
            fw.redraw()
            self.curve_figs[arch] = fw
            self.tabs.addTab(fw, f"Curves: {MODEL_LABELS[arch]}")
