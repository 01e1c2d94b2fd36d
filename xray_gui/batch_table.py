"""Batch results: a table model (one row per file), a sort/filter proxy, the
grouping model that shows DICOM inputs under patient > study > series
(``batch_groups``), and the dock widget around them (progress, time left,
Cancel, filter, export).

Rows refused by the core (DICOM header, chest-radiograph gate) or broken are
red with their reason; "In lungs" is the heatmap's share inside the lungs.
A three-class model (v2) adds "P(pneumonia)" and "Lung inv." (its lesion
map's share of the lung area); the two columns are shown once such a result
is in the table, and are empty for two-class rows.
Each result remembers the model that made it (``training.model.audit``); when the
current model is another one the row is marked stale (grey, "stale" in the
Prediction column) and the threshold no longer relabels it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelectionModel,
    QModelIndex,
    QSize,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from training.common.csv_out import csv_cell, csv_text
from training.common.formatting import sentence_join
from training.gate.notes import ATTENTION_OUTSIDE_THRESHOLD
from training.inference.result import PNEUMONIA
from training.model.audit import AUDIT_COLUMNS, audit_cells

from .elided import ElidedLabel

COLUMNS = ("", "File", "Prediction", "P(COVID)", "P(pneumonia)", "In lungs", "Lung inv.", "Status", "Study date",
           "Accession", "Series", "View", "Path", "Patient")
(COL_THUMB, COL_FILE, COL_PRED, COL_P, COL_P_PNEUMONIA, COL_LUNGS, COL_INVOLVEMENT, COL_STATUS, COL_STUDY_DATE,
 COL_ACCESSION, COL_SERIES, COL_VIEW, COL_PATH, COL_PATIENT) = range(14)
V2_COLUMNS = (COL_P_PNEUMONIA, COL_INVOLVEMENT)  # shown once a three-class / lesion-map result is in the table
STALE_TEXT = QBrush(QColor(150, 150, 150))
STALE_COLUMN = "result_stale"
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
BAD_BRUSH = QBrush(QColor(120, 30, 30))
BAD_TEXT = QBrush(QColor(255, 225, 220))
SKIPPED_TEXT = QBrush(QColor(140, 140, 140))
CAUTION_TEXT = QBrush(QColor(230, 150, 40))  # heatmap mostly outside the lungs
PNEUMONIA_TEXT = QBrush(QColor(95, 125, 230))  # = prediction_panel.PNEUMONIA_COLOUR: "Other pneumonia"
NOT_CLASSIFIED = "not classified"  # a file the batch never reached (cancelled or stopped)
ROW_ICON = 30  # thumbnails drawn at 30 px in the table: compact rows (made at THUMB_SIZE)
FILTERS = ("All", "COVID", "Normal", "Other pneumonia", "Indeterminate", "Problems (refused, error, skipped)",
           "Warnings")
BAR_INTERVAL_MS = 100  # the batch progress bar follows at most this often (one repaint)


@dataclass
class Row:
    path: Path
    pred: object | None = None  # training.inference.classifier.Prediction
    thumb: QImage | None = None
    skipped_reason: str = ""
    info: object | None = None  # training.imaging.study_info.StudyInfo for a DICOM input
    rel: str = ""  # path relative to the batch's common folder: tells same-named files apart
    stamp: object | None = None  # training.model.audit.ModelStamp of the model that made ``pred``
    when: object | None = None  # datetime the result arrived
    icon: QIcon | None = None  # ``thumb`` as drawn in the table (made on first paint)
    unprocessed: str = ""  # why a file got no result: the batch was cancelled / stopped before it

    @property
    def reading_key(self) -> str:
        """Reading order: DICOMs by patient/study/series/instance, then other files by path."""
        return ("0" + self.info.reading_key(self.rel)) if self.info is not None else ("1" + self.rel.lower())

    @property
    def status(self) -> str:
        if self.skipped_reason:
            return "skipped"
        if self.pred is None:
            return NOT_CLASSIFIED if self.unprocessed else "pending"
        return self.pred.status

    @property
    def reason(self) -> str:
        return self.skipped_reason or (self.pred.reason if self.pred is not None else self.unprocessed)

    @property
    def bad(self) -> bool:
        """Broken or refused: a red row."""
        return self.status in ("refused", "error")

    @property
    def problem(self) -> bool:
        return self.bad or self.status in ("skipped", NOT_CLASSIFIED)


class BatchTableModel(QAbstractTableModel):
    v2ResultSeen = Signal()  # the first result with P(pneumonia) or a lung involvement since the last reset

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[Row] = []
        self.has_v2 = False  # a row has P(pneumonia) or a lung involvement: their columns are worth showing
        self.batch_stamp = None  # the model running the batch (training.model.audit.ModelStamp)
        self.current_key = ""  # ModelStamp.key of the model now loaded
        self.show_identifiers = False  # patient name / ID / birth date only when the user asks

    # -- filling -------------------------------------------------------------
    def reset(self, files: list[Path], skipped: list[tuple[Path, str]] = (), infos=None) -> None:
        import os

        self.beginResetModel()
        infos = list(infos) if infos is not None else [None] * len(files)
        self.rows = ([Row(Path(f), info=info) for f, info in zip(files, infos)]
                     + [Row(Path(p), skipped_reason=r) for p, r in skipped])
        self.has_v2 = False
        parents = [os.path.abspath(r.path.parent) for r in self.rows]
        try:
            root = os.path.commonpath(parents) if parents else ""
        except ValueError:  # different drives
            root = ""
        for r in self.rows:
            try:
                r.rel = os.path.relpath(os.path.abspath(r.path), root) if root else str(r.path)
            except ValueError:
                r.rel = str(r.path)
        self.endResetModel()

    def set_result(self, i: int, pred, thumb: QImage | None) -> None:
        from training.model.audit import now_utc

        row = self.rows[i]
        row.pred, row.thumb, row.icon = pred, thumb, None
        row.stamp, row.when = self.batch_stamp, now_utc()
        self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))
        if not self.has_v2 and (_p_pneumonia(pred) is not None or _involvement(pred) is not None):
            self.has_v2 = True
            self.v2ResultSeen.emit()

    def is_stale(self, row: Row) -> bool:
        """The row's result was computed by another model than the current one."""
        return (row.pred is not None and row.stamp is not None and bool(self.current_key)
                and row.stamp.key != self.current_key)

    def set_current_model(self, stamp) -> None:
        self.current_key = "" if stamp is None else stamp.key
        if self.rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.rows) - 1, len(COLUMNS) - 1))

    def relabel(self, classifier) -> None:
        """New threshold: the core's ``Classifier.relabel``; the model is not run.
        Stale rows (another model's results) are left as they were."""
        for r in self.rows:
            if not self.is_stale(r):
                classifier.relabel(r.pred)
        if self.rows:
            self.dataChanged.emit(self.index(0, COL_PRED), self.index(len(self.rows) - 1, COL_PRED))

    def done_count(self) -> int:
        return sum(r.pred is not None for r in self.rows)

    def mark_unprocessed(self, why: str) -> int:
        """The batch ended early: the files it never reached read
        "not classified — <why>" (table and CSV).  Returns how many."""
        n = 0
        for r in self.rows:
            if r.pred is None and not r.skipped_reason:
                r.unprocessed = why
                n += 1
        if n:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.rows) - 1, len(COLUMNS) - 1))
        return n

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
        stale = self.is_stale(r)
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(r, c, stale)
        if role == SORT_ROLE:
            return self._sort_value(r, c, index)
        if role == Qt.ItemDataRole.DecorationRole and c == COL_THUMB:
            if r.thumb is None or r.thumb.isNull():
                return None
            if r.icon is None:  # an icon is drawn at the view's icon size (an image at its own)
                r.icon = QIcon(QPixmap.fromImage(r.thumb))
            return r.icon
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(r, stale)
        if role == Qt.ItemDataRole.BackgroundRole and r.bad:
            return BAD_BRUSH
        if role == Qt.ItemDataRole.ForegroundRole:
            return self._foreground(r, c, stale)
        if role == Qt.ItemDataRole.TextAlignmentRole and c in (COL_P, COL_LUNGS, COL_P_PNEUMONIA, COL_INVOLVEMENT):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _text(self, r: Row, c: int, stale: bool):
        """What a cell shows (DisplayRole)."""
        p, info = r.pred, r.info
        if c == COL_FILE:
            return r.path.name
        if c == COL_PRED:
            if p is None or p.status != "ok":
                return "—"
            text = (p.result or "—") if p.valid else "not valid"
            return f"{text} (stale)" if stale else text
        if c in (COL_STUDY_DATE, COL_ACCESSION, COL_SERIES, COL_VIEW, COL_PATIENT):
            return self._study_text(info, c)
        if c == COL_PATH:
            return r.rel
        if c == COL_P:
            if p is None or p.p_covid is None:
                return ""
            return f"{p.p_covid:.3f}" + ("" if p.valid else " (not valid)")  # forced: the reason beside it
        if c == COL_LUNGS:
            share = _share(p)
            return f"{share * 100:.0f} %" if share is not None else ""
        if c == COL_P_PNEUMONIA:
            pn = _p_pneumonia(p)
            return "" if pn is None else f"{pn:.3f}" + ("" if p.valid else " (not valid)")
        if c == COL_INVOLVEMENT:
            inv = _involvement(p)
            return f"{inv * 100:.0f} %" if inv is not None else ""
        if c == COL_STATUS:
            return self._status_text(r, stale)
        return None

    def _study_text(self, info, c: int) -> str:
        """The study columns of a DICOM input (empty for other files; the patient only when shown)."""
        if info is None:
            return ""
        if c == COL_STUDY_DATE:
            return info.study_date_text
        if c == COL_ACCESSION:
            return info.accession
        if c == COL_SERIES:
            number = "" if info.series_number is None else f"{info.series_number} "
            return (number + info.series_description).strip()
        if c == COL_VIEW:
            return info.view
        if not self.show_identifiers:  # COL_PATIENT
            return ""
        born = f", born {info.birth_date_text}" if info.birth_date else ""
        return f"{info.patient_name} ({info.patient_id}){born}"

    @staticmethod
    def _status_text(r: Row, stale: bool) -> str:
        p = r.pred
        if r.status == "pending":
            return "waiting…"
        if r.status == NOT_CLASSIFIED:
            return f"{NOT_CLASSIFIED} — {r.unprocessed}"
        if r.problem:
            return f"{r.status}: {r.reason}"
        if stale:
            return f"stale: computed by {r.stamp.display_name}, not the current model; classify again"
        if not p.valid:
            if getattr(p.meta, "header_overridden", ()):
                return "not valid: classified anyway, the header says not a frontal chest film"
            return "not valid: classified anyway, not a frontal chest radiograph"
        return "ok" + (" (warnings)" if p.warnings else "")

    def _sort_value(self, r: Row, c: int, index):
        """SORT_ROLE: numbers for the figures (-1 when none), reading order for the study columns."""
        p = r.pred
        if c == COL_P:
            return -1.0 if p is None or p.p_covid is None else float(p.p_covid)
        figure = {COL_LUNGS: _share, COL_P_PNEUMONIA: _p_pneumonia, COL_INVOLVEMENT: _involvement}.get(c)
        if figure is not None:
            v = figure(p)
            return -1.0 if v is None else v
        if c in (COL_THUMB, COL_STUDY_DATE, COL_SERIES, COL_PATIENT):
            return r.reading_key  # chronological / by series number, not alphabetical
        return str(self.data(index) or "").lower()

    @staticmethod
    def _tooltip(r: Row, stale: bool) -> str:
        p = r.pred
        tips = [str(r.path)]
        if r.reason:
            tips.append(r.reason)
        if p is not None and p.warnings:
            tips.append("Warnings: " + sentence_join(p.warnings))
        if stale:
            tips.append(f"Computed by {r.stamp.display_name}; the current model is another one. Classify the "
                        "folder again for the current model's result.")
        return "\n".join(tips)

    @staticmethod
    def _foreground(r: Row, c: int, stale: bool):
        """The text colour: red rows, grey skipped / stale / not valid, amber indeterminate, blue pneumonia."""
        p = r.pred
        if r.bad:
            return BAD_TEXT
        if r.status in ("skipped", NOT_CLASSIFIED):
            return SKIPPED_TEXT
        if stale or (p is not None and p.ok and not p.valid):
            return STALE_TEXT  # grey: another model's result, or a forced one that is not valid
        if c == COL_PRED and p is not None and p.indeterminate:
            return CAUTION_TEXT
        if c == COL_PRED and p is not None and p.label == PNEUMONIA:
            return PNEUMONIA_TEXT
        if c == COL_LUNGS:
            share = _share(p)
            return CAUTION_TEXT if share is not None and share < ATTENTION_OUTSIDE_THRESHOLD else None
        return None

    # -- export -------------------------------------------------------------------
    def csv_text(self, rows: list[int], columns) -> str:
        """CSV for ``rows`` in the given order: the core's ``CSV_COLUMNS``, then
        the audit columns of the model that made each row, and whether that row
        is stale (made by another model than the current one)."""
        return csv_text(list(columns) + list(AUDIT_COLUMNS) + [STALE_COLUMN], (self._csv_row(i) for i in rows))

    def _csv_row(self, i: int) -> dict:
        r = self.rows[i]
        if r.pred is None:
            return {"path": csv_cell(r.path), "status": r.status, "reason": csv_cell(r.reason)}
        row = r.pred.as_row()
        row.update(audit_cells(r.stamp, r.when))
        row[STALE_COLUMN] = "yes" if self.is_stale(r) else ""
        return row


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
        if self.mode == "Other pneumonia":
            return p is not None and p.verdict and not p.indeterminate and p.label == PNEUMONIA
        return p is not None and p.verdict and not p.indeterminate and (p.label or "").lower() == self.mode.lower()


class ThumbnailRowDelegate(QStyledItemDelegate):
    """Every image row as tall as a row with its thumbnail, result or not, so
    rows do not grow under the reader's eyes as thumbnails arrive.  Group rows
    (patient, study, series: not selectable) keep their text height.

    A flat table (no groups) then has uniform row heights: the view measures
    one row instead of asking every row's every column on each layout (a
    100-row batch start froze the window for ~0.1 s)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._heights: dict[tuple, int] = {}  # (style, font) -> row height

    def sizeHint(self, option, index):  # noqa: N802 - Qt's name
        hint = super().sizeHint(option, index)
        if not index.flags() & Qt.ItemFlag.ItemIsSelectable:  # a group row
            return hint
        style = option.widget.style() if option.widget is not None else QApplication.style()
        key = (id(style), option.font.key())
        if key not in self._heights:
            opt = QStyleOptionViewItem(option)
            self.initStyleOption(opt, index)
            opt.features |= QStyleOptionViewItem.ViewItemFeature.HasDecoration
            opt.decorationSize = QSize(ROW_ICON, ROW_ICON)
            self._heights[key] = style.sizeFromContents(QStyle.ContentsType.CT_ItemViewItem, opt, QSize(),
                                                        option.widget).height()
        return QSize(hint.width(), max(hint.height(), self._heights[key]))


class BatchTreeView(QTreeView):
    """The grouped table; ``selectRow(r)`` selects the image at proxy row ``r``."""

    def selectRow(self, proxy_row: int) -> None:  # noqa: N802 - QTableView's name, kept for callers
        idx = self.model().index_for_flat(proxy_row, COL_FILE)
        if idx.isValid():
            self.select_index(idx)

    def select_index(self, idx) -> None:
        p = idx.parent()
        while p.isValid():
            self.expand(p)
            p = p.parent()
        self.setCurrentIndex(idx)
        self.scrollTo(idx)


class BatchPanel(QWidget):
    """The table and its controls; the window drives it."""

    rowActivated = Signal(int)  # source row
    selectionCleared = Signal()  # the selected row went away (filtered out, a new batch)
    cancelRequested = Signal()
    exportRequested = Signal()

    def __init__(self, parent=None):
        from .batch_groups import GroupedBatchModel

        super().__init__(parent)
        self.model = BatchTableModel(self)
        self.proxy = BatchFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.grouped = GroupedBatchModel(self.proxy, self.model, self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        # QProgressBar.setValue repaints at once, which flushes the whole window's pending
        # paints (the table's too): once per result that froze the GUI thread for
        # ~17 ms a row, 0.2-0.4 s per batch of 16 (bench/bench_gui_responsiveness.py).
        # During a batch the bar follows at most every BAR_INTERVAL_MS instead.
        self._bar_value = 0
        self._bar_timer = QTimer(self, singleShot=True, interval=BAR_INTERVAL_MS)
        self._bar_timer.timeout.connect(lambda: self.progress.setValue(self._bar_value))
        self.eta = ElidedLabel("")  # cut to fit: the panel must fit a 1024 px window
        self.eta.setObjectName("batchEta")
        self.eta.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.cancel.clicked.connect(self.cancelRequested)
        self.filter = QComboBox()
        self.filter.addItems(FILTERS)
        self.filter.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.filter.setMinimumContentsLength(12)
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
        self.view = BatchTreeView()
        self.view.setModel(self.grouped)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(COL_THUMB, Qt.SortOrder.AscendingOrder)
        self.view.setSelectionBehavior(QTreeView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QTreeView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QTreeView.EditTrigger.NoEditTriggers)
        self.view.setIconSize(QSize(ROW_ICON, ROW_ICON))
        self.view.setItemDelegate(ThumbnailRowDelegate(self.view))
        self.view.setUniformRowHeights(True)  # flat: every row as tall as a thumbnail row (see _after_rebuild)
        self.view.setIndentation(14)
        self.view.setAllColumnsShowFocus(True)
        hh = self.view.header()
        hh.setStretchLastSection(False)
        hh.setSectionResizeMode(COL_THUMB, QHeaderView.ResizeMode.Interactive)
        widths = {COL_THUMB: ROW_ICON + 50, COL_FILE: 170, COL_PRED: 170, COL_P: 75, COL_P_PNEUMONIA: 90,
                  COL_LUNGS: 65, COL_INVOLVEMENT: 70, COL_STATUS: 220, COL_STUDY_DATE: 90, COL_ACCESSION: 90,
                  COL_SERIES: 130, COL_VIEW: 45,
                  COL_PATH: 200, COL_PATIENT: 200}
        for col, width in widths.items():
            self.view.setColumnWidth(col, width)
        self.view.setColumnHidden(COL_PATIENT, True)  # identifiers: only when the user turns them on
        self.model.v2ResultSeen.connect(lambda: self.set_v2_columns_visible(True))
        self.set_v2_columns_visible(False)  # two-class models: no empty P(pneumonia) / Lung inv. columns
        self.view.selectionModel().currentChanged.connect(self._current_changed)
        self.grouped.modelAboutToBeReset.connect(self._remember_current)
        self.grouped.modelReset.connect(self._after_rebuild)
        self._keep_source_row: int | None = None
        lay.addWidget(self.view)
        self._after_rebuild()

    # -- driving ------------------------------------------------------------------
    def start(self, files, skipped, infos=None) -> None:
        """New rows.  The selected file stays selected if it is among them (a
        worklist that grew); otherwise nothing is selected (``selectionCleared``)."""
        current = self.selected_source_row()
        keep = self.model.rows[current].path if current is not None and current < len(self.model.rows) else None
        self.clear_selection()  # a row number of the old table means nothing in the new one
        self.model.reset(files, skipped, infos)
        self.set_v2_columns_visible(False)  # until a three-class result arrives
        if keep is not None:
            row = self.find_source_row(keep)
            if row is None or not self.select_source_row(row, quiet=True):
                self.selectionCleared.emit()
        self._bar_timer.stop()
        self.progress.setRange(0, max(1, len(files)))
        self.progress.setValue(0)
        self.eta.setText("starting…" if files else "no images found")
        self.cancel.setEnabled(bool(files))

    def show_done(self, done: int) -> None:
        """The bar shows ``done`` files within ``BAR_INTERVAL_MS`` (coalesced, see __init__)."""
        self._bar_value = int(done)
        if not self._bar_timer.isActive():
            self._bar_timer.start()

    def set_progress(self, done: int, total: int, seconds_left: float) -> None:
        if self.progress.maximum() != max(1, total):
            self.progress.setRange(0, max(1, total))
        self.show_done(done)
        self.eta.setText(f"{done}/{total} · about {_fmt_secs(seconds_left)} left" if done < total
                         else f"{done}/{total} done")

    def finish(self, text: str, done: int | None = None) -> None:
        """The batch ended; ``done``: the files classified (the bar agrees with ``text``)."""
        self.cancel.setEnabled(False)
        self._bar_timer.stop()
        if done is not None:
            self._bar_value = int(done)
        self.progress.setValue(self._bar_value)  # the final figure, at once
        self.eta.setText(text)

    def set_v2_columns_visible(self, on: bool) -> None:
        """Show / hide the three-class columns (P(pneumonia), Lung inv.)."""
        for col in V2_COLUMNS:
            self.view.setColumnHidden(col, not on)

    def set_show_identifiers(self, on: bool) -> None:
        self.model.show_identifiers = bool(on)
        self.view.setColumnHidden(COL_PATIENT, not on)
        self.grouped.set_show_identifiers(on)

    def _source_row(self, idx) -> int | None:
        return self.grouped.source_row(idx)

    def visible_source_rows(self) -> list[int]:
        """The source rows of the images shown, in display (reading) order."""
        return [self._source_row(i) for i in self.grouped.image_indexes()]

    def select_source_row(self, row: int, *, quiet: bool = False) -> bool:
        """Select source row ``row`` (False: it is filtered out).  ``quiet``: no
        ``rowActivated`` (the caller shows the image itself)."""
        flat = self.proxy.mapFromSource(self.model.index(row, 0))
        if not flat.isValid():
            return False
        if quiet:
            sm = self.view.selectionModel()
            sm.blockSignals(True)
            self.view.selectRow(flat.row())
            sm.blockSignals(False)
            self.view.viewport().update()
        else:
            self.view.selectRow(flat.row())
        return True

    def clear_selection(self) -> None:
        """No row selected (without ``rowActivated``): the viewer shows something else."""
        sm = self.view.selectionModel()
        sm.blockSignals(True)
        sm.clear()
        sm.blockSignals(False)
        self.view.viewport().update()

    def selected_source_row(self) -> int | None:
        return self._source_row(self.view.currentIndex())

    def find_source_row(self, path) -> int | None:
        """The row of the file ``path`` (same file, however it is spelled), or None."""
        import os

        want = os.path.normcase(os.path.abspath(str(path)))
        return next((i for i, r in enumerate(self.model.rows)
                     if os.path.normcase(os.path.abspath(str(r.path))) == want), None)

    def step(self, delta: int) -> None:
        """Select the next (+1) / previous (-1) image in display (reading) order, across groups."""
        images = self.grouped.image_indexes()
        if not images:
            return
        cur = self.view.currentIndex()
        node = cur.internalPointer() if cur.isValid() else None
        pos = next((k for k, i in enumerate(images) if i.internalPointer() is node), None)
        k = 0 if pos is None else max(0, min(len(images) - 1, pos + delta))
        self.view.select_index(images[k].siblingAtColumn(COL_FILE))

    def _remember_current(self) -> None:
        self._keep_source_row = self._source_row(self.view.currentIndex())

    def _after_rebuild(self) -> None:
        groups = self._group_indexes()
        self.view.setUniformRowHeights(not groups)  # group rows are lower than image rows
        if groups:  # a flat list (PNGs, no DICOM studies) has nothing to expand: expandAll would still walk every row
            self.view.expandAll()
        for idx in groups:
            self.view.setFirstColumnSpanned(idx.row(), idx.parent(), True)
        keep, self._keep_source_row = self._keep_source_row, None
        if keep is not None:
            flat = self.proxy.mapFromSource(self.model.index(keep, 0)) if keep < len(self.model.rows) else None
            if flat is None or not flat.isValid():
                self.selectionCleared.emit()  # filtered out: its image leaves the screen too
            else:
                idx = self.grouped.index_for_flat(flat.row(), COL_FILE)
                sm = self.view.selectionModel()
                sm.blockSignals(True)  # the same image stays current: no reload
                sm.setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect
                                   | QItemSelectionModel.SelectionFlag.Rows)
                sm.blockSignals(False)
                self.view.viewport().update()

    def _group_indexes(self) -> list:
        out = []

        def walk(parent) -> None:
            for r in range(self.grouped.rowCount(parent)):
                idx = self.grouped.index(r, 0, parent)
                if self.grouped.flat_row(idx) is None:
                    out.append(idx)
                    walk(idx)

        walk(QModelIndex())
        return out

    def _current_changed(self, current, _previous) -> None:
        row = self._source_row(current)
        if row is not None:
            self.rowActivated.emit(row)
        elif current.isValid():  # a patient / study / series group row: no one image, so none on screen
            self.selectionCleared.emit()


def _p_pneumonia(pred) -> float | None:
    """P(Other pneumonia) of a classified three-class row (None: a two-class model's row)."""
    if pred is None or pred.status != "ok":
        return None
    v = (getattr(pred, "probs", None) or {}).get(PNEUMONIA)
    return None if v is None else float(v)


def _involvement(pred) -> float | None:
    """The lung involvement of a classified, valid lesion-map row, if known."""
    if pred is None or pred.status != "ok" or not pred.valid:
        return None
    return getattr(pred, "lung_involvement", None)


def _share(pred) -> float | None:
    """The heatmap's share inside the lungs of a classified row, if known."""
    return getattr(pred, "heat_in_lungs", None) if pred is not None and pred.status == "ok" else None


from training.common.formatting import duration_text as _fmt_secs  # noqa: E402  (the one duration formatter)
