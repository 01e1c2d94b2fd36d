"""Batch results: a table model (one row per file), a sort/filter proxy and
the dock widget around them (progress, time left, Cancel, filter, export).

Rows refused by the core (DICOM header, chest-radiograph gate) or broken are
red with their reason; "In lungs" is the heatmap's share inside the lungs."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PySide6.QtCore import (QAbstractTableModel, QModelIndex, QSize, QSortFilterProxyModel, Qt, Signal)
from PySide6.QtGui import QBrush, QColor, QImage
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel,
                               QProgressBar, QPushButton, QTableView, QVBoxLayout, QWidget)

from training.csv_out import csv_cell

from .images import THUMB_SIZE

COLUMNS = ("", "File", "Prediction", "P(COVID)", "In lungs", "Status")
COL_THUMB, COL_FILE, COL_PRED, COL_P, COL_LUNGS, COL_STATUS = range(6)
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
BAD_BRUSH = QBrush(QColor(120, 30, 30))
BAD_TEXT = QBrush(QColor(255, 225, 220))
SKIPPED_TEXT = QBrush(QColor(140, 140, 140))
CAUTION_TEXT = QBrush(QColor(230, 150, 40))  # heatmap mostly outside the lungs
LOW_SHARE = 0.5  # = training.gate.ATTENTION_OUTSIDE_THRESHOLD (not imported: it pulls in torch)
FILTERS = ("All", "COVID", "Normal", "Indeterminate", "Problems (refused, error, skipped)", "Warnings")


@dataclass
class Row:
    path: Path
    pred: object | None = None  # training.predict.Prediction
    thumb: QImage | None = None
    skipped_reason: str = ""

    @property
    def status(self) -> str:
        if self.skipped_reason:
            return "skipped"
        return "pending" if self.pred is None else self.pred.status

    @property
    def reason(self) -> str:
        return self.skipped_reason or (self.pred.reason if self.pred is not None else "")

    @property
    def bad(self) -> bool:
        """Broken or refused: a red row."""
        return self.status in ("refused", "error")

    @property
    def problem(self) -> bool:
        return self.bad or self.status == "skipped"


class BatchTableModel(QAbstractTableModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[Row] = []

    # -- filling -------------------------------------------------------------
    def reset(self, files: list[Path], skipped: list[tuple[Path, str]] = ()) -> None:
        self.beginResetModel()
        self.rows = [Row(Path(f)) for f in files] + [Row(Path(p), skipped_reason=r) for p, r in skipped]
        self.endResetModel()

    def set_result(self, i: int, pred, thumb: QImage | None) -> None:
        row = self.rows[i]
        row.pred, row.thumb = pred, thumb
        self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))

    def relabel(self, label_for: Callable[[float], str], threshold: float) -> None:
        """New threshold: the core's ``label_for`` relabels; the model is not run."""
        for r in self.rows:
            if r.pred is not None and r.pred.status == "ok" and r.pred.p_covid is not None:
                r.pred.label = label_for(r.pred.p_covid)
                r.pred.threshold = threshold
        if self.rows:
            self.dataChanged.emit(self.index(0, COL_PRED), self.index(len(self.rows) - 1, COL_PRED))

    def done_count(self) -> int:
        return sum(r.pred is not None for r in self.rows)

    # -- Qt model --------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()):  # noqa: N802
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()):  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        c = index.column()
        p = r.pred
        if role == Qt.ItemDataRole.DisplayRole:
            if c == COL_FILE:
                return r.path.name
            if c == COL_PRED:
                if p is None or p.status != "ok":
                    return "—"
                return (p.result or "—") if p.valid else "not valid"
            if c == COL_P:
                return f"{p.p_covid:.3f}" if p is not None and p.p_covid is not None else ""
            if c == COL_LUNGS:
                share = _share(p)
                return f"{share * 100:.0f} %" if share is not None else ""
            if c == COL_STATUS:
                if r.status == "pending":
                    return "waiting…"
                if r.problem:
                    return f"{r.status}: {r.reason}"
                return "ok" + (" (warnings)" if p.warnings else "")
            return None
        if role == SORT_ROLE:
            if c == COL_P:
                return -1.0 if p is None or p.p_covid is None else float(p.p_covid)
            if c == COL_LUNGS:
                share = _share(p)
                return -1.0 if share is None else share
            if c == COL_THUMB:
                return index.row()
            return str(self.data(index) or "").lower()
        if role == Qt.ItemDataRole.DecorationRole and c == COL_THUMB:
            return r.thumb
        if role == Qt.ItemDataRole.ToolTipRole:
            tips = [str(r.path)]
            if r.reason:
                tips.append(r.reason)
            if p is not None and p.warnings:
                tips.append("Warnings: " + "; ".join(p.warnings))
            return "\n".join(tips)
        if role == Qt.ItemDataRole.BackgroundRole and r.bad:
            return BAD_BRUSH
        if role == Qt.ItemDataRole.ForegroundRole and r.bad:
            return BAD_TEXT
        if role == Qt.ItemDataRole.ForegroundRole and r.status == "skipped":
            return SKIPPED_TEXT
        if role == Qt.ItemDataRole.ForegroundRole and c == COL_PRED and p is not None and p.indeterminate:
            return CAUTION_TEXT
        if role == Qt.ItemDataRole.ForegroundRole and c == COL_LUNGS:
            share = _share(p)
            return CAUTION_TEXT if share is not None and share < LOW_SHARE else None
        if role == Qt.ItemDataRole.TextAlignmentRole and c in (COL_P, COL_LUNGS):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    # -- export -------------------------------------------------------------------
    def csv_text(self, rows: list[int], columns) -> str:
        """CSV (the core's ``CSV_COLUMNS``) for ``rows`` in the given order."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
        w.writeheader()
        for i in rows:
            r = self.rows[i]
            if r.pred is not None:
                w.writerow(r.pred.as_row())
            else:
                w.writerow({"path": csv_cell(r.path), "status": r.status, "reason": csv_cell(r.reason)})
        return buf.getvalue()


class BatchFilterProxy(QSortFilterProxyModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.mode = "All"
        self.setSortRole(SORT_ROLE)

    def set_mode(self, mode: str) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9
            self.beginFilterChange()
            self.mode = mode
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:  # pragma: no cover - older Qt
            self.mode = mode
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row, source_parent):  # noqa: N802
        if self.mode == "All":
            return True
        r: Row = self.sourceModel().rows[source_row]
        p = r.pred
        if self.mode.startswith("Problems"):
            return r.problem
        if self.mode == "Warnings":
            return p is not None and bool(p.warnings)
        if self.mode == "Indeterminate":
            return p is not None and p.indeterminate
        return p is not None and p.verdict and not p.indeterminate and (p.label or "").lower() == self.mode.lower()


class BatchPanel(QWidget):
    """The table and its controls; the window drives it."""

    rowActivated = Signal(int)  # source row
    cancelRequested = Signal()
    exportRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = BatchTableModel(self)
        self.proxy = BatchFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.eta = QLabel("")
        self.eta.setObjectName("batchEta")
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.cancel.clicked.connect(self.cancelRequested)
        self.filter = QComboBox()
        self.filter.addItems(FILTERS)
        self.filter.currentTextChanged.connect(self.proxy.set_mode)
        self.export = QPushButton("Export CSV…")
        self.export.clicked.connect(self.exportRequested)
        top.addWidget(self.progress, 2)
        top.addWidget(self.eta, 1)
        top.addWidget(self.cancel)
        top.addWidget(QLabel("Show:"))
        top.addWidget(self.filter)
        top.addWidget(self.export)
        lay.addLayout(top)
        self.view = QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(COL_THUMB, Qt.SortOrder.AscendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.view.verticalHeader().setDefaultSectionSize(THUMB_SIZE + 4)
        self.view.verticalHeader().hide()
        hh = self.view.horizontalHeader()
        hh.setSectionResizeMode(COL_THUMB, QHeaderView.ResizeMode.Fixed)
        self.view.setColumnWidth(COL_THUMB, THUMB_SIZE + 8)
        hh.setSectionResizeMode(COL_FILE, QHeaderView.ResizeMode.Interactive)
        self.view.setColumnWidth(COL_FILE, 260)
        self.view.setColumnWidth(COL_PRED, 170)
        self.view.setColumnWidth(COL_P, 80)
        self.view.setColumnWidth(COL_LUNGS, 70)
        hh.setStretchLastSection(True)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        lay.addWidget(self.view)

    # -- driving ------------------------------------------------------------------
    def start(self, files, skipped) -> None:
        self.model.reset(files, skipped)
        self.progress.setRange(0, max(1, len(files)))
        self.progress.setValue(0)
        self.eta.setText("starting…" if files else "no images found")
        self.cancel.setEnabled(bool(files))

    def set_progress(self, done: int, total: int, seconds_left: float) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.eta.setText(f"{done}/{total} · about {_fmt_secs(seconds_left)} left" if done < total
                         else f"{done}/{total} done")

    def finish(self, text: str) -> None:
        self.cancel.setEnabled(False)
        self.eta.setText(text)

    def visible_source_rows(self) -> list[int]:
        return [self.proxy.mapToSource(self.proxy.index(r, 0)).row() for r in range(self.proxy.rowCount())]

    def step(self, delta: int) -> None:
        """Select the next (+1) / previous (-1) row as shown."""
        n = self.proxy.rowCount()
        if not n:
            return
        cur = self.view.currentIndex()
        r = 0 if not cur.isValid() else max(0, min(n - 1, cur.row() + delta))
        self.view.selectRow(r)
        self.view.setCurrentIndex(self.proxy.index(r, COL_FILE))

    def _current_changed(self, current, _previous) -> None:
        if current.isValid():
            self.rowActivated.emit(self.proxy.mapToSource(current).row())


def _share(pred) -> float | None:
    """The heatmap's share inside the lungs of a classified row, if known."""
    return getattr(pred, "heat_in_lungs", None) if pred is not None and pred.status == "ok" else None


def _fmt_secs(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"
