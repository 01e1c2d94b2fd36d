"""The main window: layout, menus, drag and drop, and the wiring between the
controllers (model, current image, batch) and the widgets."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from . import APP_NAME, RESEARCH_NOTICE
from .actions import build_menus
from .batch_controller import BatchController
from .batch_table import BatchPanel
from .elided import ElidedLabel, StatusLine
from .image_controller import ImageController, report_content
from .metadata_panel import MetadataPanel
from .model_controller import ModelController
from .model_switch import switch_model
from .prediction_panel import PredictionPanel
from .settings import AppSettings
from .viewer import ImageViewer
from .workers import Jobs, Notifier

IMAGE_FILTER = ("Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.dcm *.dicom *.DCM);;"
                "DICOM without extension (*);;All files (*)")


SIDE_WIDTH = 360          # the side panel's default width (px)
SIDE_MIN, SIDE_MAX = 300, 560
TABLE_SHARE = 0.45        # the batch table's share of the height when it first shows
MODEL_STATUS_MAX = 300    # the model name in the status bar is cut to this width
SELECT_A_ROW = "Select a row in the batch table to see its image (N / PgDown: next, P / PgUp: previous)."


class MainWindow(QMainWindow):
    """Layout: a horizontal splitter [viewer over batch table | side panel].

    The side panel pins the verdict box (``pred_panel.summary``) on top and
    scrolls the rest.  The viewer always shows the selected batch row's image,
    or a single file opened on its own (then no row is selected), or nothing
    with a placeholder; the side panel describes what the viewer shows."""

    reportWritten = Signal(str)
    dicomExported = Signal(object)  # list of (prediction, Written | None, reason)

    def __init__(self, settings: AppSettings | None = None, *, dialogs: bool = True):
        super().__init__()
        self.settings = settings or AppSettings()
        self.base_title = APP_NAME
        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)
        self.notifier = Notifier(self, dialogs=dialogs)
        self.jobs = Jobs(self.notifier, self)
        self._pending_report: Path | None = None
        self._queued_batch: list[Path] | None = None  # dropped before the model was ready
        self._showing_batch_row = False  # the viewer shows the selected batch row (not a lone file)

        self.viewer = ImageViewer()
        self.viewer.setMinimumSize(240, 200)  # the table may take more than half the height
        self.pred_panel = PredictionPanel()
        self.meta_panel = MetadataPanel()
        self.batch_panel = BatchPanel()
        self._build_layout()
        self._build_status_bar()

        self.models = ModelController(self.settings, self.jobs, self.notifier, self)
        self.images = ImageController(self, self.viewer, self.pred_panel, self.meta_panel, self.jobs, self.notifier)
        self.batch = BatchController(self.batch_panel, self.jobs, self.notifier, self)
        self.actions_by_name = build_menus(self)
        self.actions_by_name.update(self.layout_actions)
        self._add_training_menu()
        from .node_menu import install_dicom_network

        self.dicom_network = install_dicom_network(self)  # DICOM menu: receive, query/retrieve, send back
        self._wire()
        self._restore()

    # -- layout -------------------------------------------------------------------
    def _build_layout(self) -> None:
        self.image_split = QSplitter(Qt.Orientation.Vertical)
        self.image_split.setObjectName("imageTableSplitter")
        self.image_split.addWidget(self.viewer)
        self.image_split.addWidget(self.batch_panel)
        self.image_split.setStretchFactor(0, 1)
        self.image_split.setStretchFactor(1, 0)
        self.image_split.setChildrenCollapsible(False)
        self.batch_panel.setMinimumHeight(140)
        self.batch_panel.hide()  # shown when a batch starts
        self.batch_dock = self.batch_panel  # the name it had as a dock widget
        self._table_shown_here = False
        self.batch_panel.installEventFilter(self)  # shown by others (received DICOM images) too

        side = QWidget()
        side.setObjectName("sidePanel")
        sl = QVBoxLayout(side)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.setSpacing(0)
        sl.addWidget(self.pred_panel.detach_summary())  # pinned: never scrolled away
        inner = QWidget()
        il = QVBoxLayout(inner)
        il.setContentsMargins(0, 0, 0, 0)
        il.addWidget(self.pred_panel)
        il.addWidget(self.meta_panel)
        self.side_scroll = QScrollArea()
        self.side_scroll.setObjectName("sideScroll")
        self.side_scroll.setWidgetResizable(True)
        self.side_scroll.setWidget(inner)
        self.side_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.side_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        sl.addWidget(self.side_scroll, 1)
        side.setMinimumWidth(SIDE_MIN)
        side.setMaximumWidth(SIDE_MAX)
        self.side_panel = side
        self.side_dock = side  # the name it had as a dock widget

        self.main_split = QSplitter(Qt.Orientation.Horizontal)
        self.main_split.setObjectName("mainSplitter")
        self.main_split.addWidget(self.image_split)
        self.main_split.addWidget(side)
        self.main_split.setStretchFactor(0, 1)
        self.main_split.setStretchFactor(1, 0)
        self.main_split.setChildrenCollapsible(False)
        self.setCentralWidget(self.main_split)
        self._splits_restored = False
        self._full_screen_state: dict | None = None
        self.image_split.splitterMoved.connect(lambda *_: self._remember_splits())
        self.main_split.splitterMoved.connect(lambda *_: self._remember_splits())

        def action(name, text, slot, keys=(), tip="", checkable=False, checked=False):
            a = QAction(text, self)
            a.setObjectName(name)
            a.setShortcuts([QKeySequence(k) for k in keys])
            if tip:
                a.setStatusTip(tip)
            a.setCheckable(checkable)
            if checkable:
                a.setChecked(checked)
                a.toggled.connect(slot)
            else:
                a.triggered.connect(slot)
            self.addAction(a)  # works while the menu bar is hidden (full screen)
            return a

        self.layout_actions = {
            "side_panel": action("actSidePanel", "Show &Side Panel", self.set_side_panel_visible,
                                 ["Ctrl+B", "F9"], "Show or hide the result and image panel on the right",
                                 checkable=True, checked=True),
            "batch_table": action("actBatchTable", "Show &Batch Table", self.set_batch_table_visible, [],
                                  "Show or hide the batch results under the image", checkable=True),
            "full_screen": action("actFullScreen", "&Full Screen Image", self.set_full_screen, ["F11"],
                                  "Only the image: hides the side panel, the batch table and the menus "
                                  "(F11 or Esc leaves)", checkable=True),
            "leave_full_screen": action("actLeaveFullScreen", "Leave Full Screen",
                                        lambda: self.set_full_screen(False), ["Esc"]),
        }
        self.layout_actions["leave_full_screen"].setEnabled(False)

    def _build_status_bar(self) -> None:
        """One message line (``StatusLine``, fed only by the notifier) that takes
        the free width, then the model and the research notice, which never
        squeeze it below its minimum: the model name is cut to fit; full texts
        are in the tooltips."""
        sb = self.statusBar()
        self.status_line = StatusLine()
        self.model_status = ElidedLabel("loading model…")
        self.model_status.setObjectName("modelStatus")
        self.model_status.setMaximumWidth(MODEL_STATUS_MAX)
        self.model_status.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.model_status.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        notice = QLabel(RESEARCH_NOTICE)
        notice.setObjectName("researchNotice")
        notice.setStyleSheet("color: #c9a227; padding: 0 6px;")
        notice.setToolTip("This program is a research tool. Its output is not a medical diagnosis.")
        notice.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)
        sb.addWidget(self.status_line, 1)
        sb.addPermanentWidget(self.model_status)
        sb.addPermanentWidget(notice)
        self.notifier.attach(self.status_line, self)

    def showEvent(self, event):  # noqa: N802
        super().showEvent(event)
        if not self._splits_restored:  # at the window's real size: the saved sizes are pixels
            self._splits_restored = True
            state = self.settings.splitter_state("main")
            if not (state and self.main_split.restoreState(state)):
                self.main_split.setSizes([max(1, self.main_split.width() - SIDE_WIDTH), SIDE_WIDTH])
            if not self.batch_panel.isHidden():
                self._apply_table_share()

    def eventFilter(self, obj, event):  # noqa: N802
        if obj is self.batch_panel and event.type() in (QEvent.Type.ShowToParent, QEvent.Type.HideToParent):
            shown = event.type() == QEvent.Type.ShowToParent
            if hasattr(self, "layout_actions") and self._full_screen_state is None:
                act = self.layout_actions["batch_table"]
                act.blockSignals(True)  # only the tick follows; nothing else to do
                act.setChecked(shown)
                act.blockSignals(False)
            if shown and not self._table_shown_here and self._splits_restored:
                QTimer.singleShot(0, self._apply_table_share)  # shown by e.g. the DICOM node
        return super().eventFilter(obj, event)

    def _remember_splits(self) -> None:
        """Keep the splitters' states in the settings, only while both parts
        show (a hidden part's size means nothing)."""
        if self._full_screen_state is not None or not self._splits_restored:
            return
        if not self.side_panel.isHidden():
            self.settings.set_splitter_state("main", self.main_split.saveState())
        if not self.batch_panel.isHidden():
            self.settings.set_splitter_state("image_table", self.image_split.saveState())

    def _apply_table_share(self) -> None:
        """The remembered image/table split, else the table gets TABLE_SHARE of the height."""
        state = self.settings.splitter_state("image_table")
        if state and self.image_split.restoreState(state) and min(self.image_split.sizes()) > 0:
            return
        total = sum(self.image_split.sizes()) or self.image_split.height()
        table = int(total * TABLE_SHARE)
        self.image_split.setSizes([total - table, table])

    def show_batch_table(self) -> None:
        """Show the table (a batch started); in full screen it shows when full screen ends."""
        if self._full_screen_state is not None:
            self._full_screen_state["batch"] = True
            return
        self.set_batch_table_visible(True)

    def set_batch_table_visible(self, on: bool) -> None:
        on = bool(on)
        if self._full_screen_state is not None:  # applies when full screen ends
            self._full_screen_state["batch"] = on
            return
        if on != (not self.batch_panel.isHidden()):
            if not on:
                self._remember_splits()
            self._table_shown_here = True
            self.batch_panel.setVisible(on)
            self._table_shown_here = False
            if on:
                self._apply_table_share()
        self.layout_actions["batch_table"].setChecked(on)

    def set_side_panel_visible(self, on: bool) -> None:
        on = bool(on)
        if self._full_screen_state is not None:  # applies when full screen ends
            self._full_screen_state["side"] = on
            return
        if not on:
            self._remember_splits()
        self.side_panel.setVisible(on)
        self.settings.side_panel_visible = on
        self.layout_actions["side_panel"].setChecked(on)

    def is_full_screen_image(self) -> bool:
        return self._full_screen_state is not None

    def set_full_screen(self, on: bool) -> None:
        """Full screen image: the side panel, the batch table and the menu bar
        are hidden; the status bar stays (it carries the research-use notice).
        F11 or Esc leaves and brings back what was shown."""
        on = bool(on)
        if on != self.is_full_screen_image():
            if on:
                self._remember_splits()
                self._full_screen_state = {"side": not self.side_panel.isHidden(),
                                           "batch": not self.batch_panel.isHidden(),
                                           "maximized": self.isMaximized()}
                self.side_panel.hide()
                self.batch_panel.hide()
                self.menuBar().hide()
                self.showFullScreen()
                self.notifier.info("Full screen: F11 or Esc leaves; N / P step through the batch.")
            else:
                before, self._full_screen_state = self._full_screen_state, None
                self.menuBar().show()
                if before["maximized"]:
                    self.showMaximized()
                else:
                    self.showNormal()
                self.side_panel.setVisible(before["side"])
                self.settings.side_panel_visible = before["side"]
                self.layout_actions["side_panel"].setChecked(before["side"])
                self._table_shown_here = True
                self.batch_panel.setVisible(before["batch"])
                self._table_shown_here = False
                if before["batch"]:
                    self._apply_table_share()
                self.layout_actions["batch_table"].setChecked(before["batch"])
        self.layout_actions["full_screen"].setChecked(on)
        self.layout_actions["leave_full_screen"].setEnabled(on)

    # -- set-up -----------------------------------------------------------------
    def _wire(self) -> None:
        m, im, p = self.models, self.images, self.pred_panel
        m.loading.connect(self._model_loading)
        m.changed.connect(self._model_changed)
        m.failed.connect(self._model_failed)
        m.settled.connect(self._show_model_state)
        p.thresholdEdited.connect(self._threshold_edited)
        p.resetThresholdRequested.connect(self._threshold_reset)
        p.heatmapToggled.connect(self._heatmap_toggled)
        p.opacityChanged.connect(self._opacity_changed)
        p.lung_outline.toggled.connect(self._lung_outline_toggled)
        p.lesion.toggled.connect(self._lesion_toggled)
        p.classifyAnywayRequested.connect(im.classify_anyway)
        p.openModelRequested.connect(self.choose_model)
        im.heatmapReady.connect(self._maybe_write_report)
        im.heatmapFailed.connect(lambda _m: self._maybe_write_report(None))
        self.batch_panel.rowActivated.connect(self._row_activated)
        self.batch_panel.exportRequested.connect(self.choose_csv)
        self.batch.started.connect(lambda _n: self.show_batch_table())
        self.batch_panel.selectionCleared.connect(self._batch_selection_cleared)
        self.meta_panel.showPatientToggled.connect(self.batch_panel.set_show_identifiers)

    def _restore(self) -> None:
        s = self.settings
        geometry, state = s.window_state()
        self.resize(1280, 820)
        if geometry:
            self.restoreGeometry(geometry)
        if state:
            self.restoreState(state)
        self.batch_panel.hide()
        if not s.side_panel_visible:
            self.set_side_panel_visible(False)
        self.pred_panel.opacity.setValue(s.overlay_opacity)
        self.images.set_opacity(s.overlay_opacity)
        self.pred_panel.heatmap.setChecked(s.show_heatmap)
        self.images.show_heatmap = s.show_heatmap
        self.pred_panel.lung_outline.setChecked(s.show_lung_outline)
        self.viewer.set_outline_visible(s.show_lung_outline)
        self.pred_panel.lesion.setChecked(s.show_lesion_map)
        self.images.set_lesion_visible(s.show_lesion_map)
        self.device_actions[s.device].setChecked(True)

    def start_model(self, explicit: str | None = None) -> None:
        """Load ``explicit``, else the remembered model (falling back to the
        shipped default when it fails), else the shipped default."""
        from training.common.resources import default_model_path

        if explicit:
            self.models.load(explicit, remember=False)
            return
        default = default_model_path()
        remembered = self.settings.model_path
        if remembered and Path(remembered).is_file():
            if default is not None and Path(remembered) != default:
                pending = [True]  # fall back once, only for this first load

                def fallback(_reason):
                    if pending:
                        pending.clear()
                        self.models.load(default)
                self.models.failed.connect(fallback)
                self.models.changed.connect(lambda _c: pending.clear())
            self.models.load(remembered)
        elif default is not None:
            self.models.load(default)
        else:
            self._show_model_state()

    # -- model ----------------------------------------------------------------------
    def _model_loading(self, text: str) -> None:
        self.images.model_pending = True
        self.model_status.setText(text)
        if self.models.classifier is None:
            self.pred_panel.set_model_text(text, ready=False)

    def _show_model_state(self) -> None:
        if self.models.busy:
            return
        self.images.model_pending = False
        if self._queued_batch is not None and self.models.classifier is None:
            self._queued_batch = None
            self.notifier.warning("The batch was not started: no model is loaded.")
        text = self.models.status_text()
        self.model_status.setText(text)
        self.pred_panel.set_model_text(text if self.models.classifier is None else
                                       self._model_details(), ready=self.models.classifier is not None)
        if self.models.classifier is None:
            self.viewer.set_placeholder("No model loaded — open one (File → Open Model…, Ctrl+M).\n"
                                        "Images can still be viewed: Ctrl+O or drop files here.")

    def _model_details(self) -> str:
        c = self.models.classifier
        from training.model.networks import ARCH_LABELS

        self.pred_panel.model_text.setToolTip(str(c.loaded.path or ""))
        kind = ""
        if getattr(c, "multiclass", False):  # model v2: say what else its results show
            kind = (f"{len(c.info.class_names)} classes" + (" + lesion map" if getattr(c, "has_lesion_map", False)
                                                            else "") + ", ")
        return (f"<b>{c.loaded.display_name}</b><br>{ARCH_LABELS.get(c.info.arch, c.info.arch)}, {kind}"
                f"{c.info.input_size} px input, running on {c.device.type.upper()}")

    def _model_failed(self, _reason: str) -> None:
        self.device_actions.get(self.models.device, self.device_actions["auto"]).setChecked(True)
        self._show_model_state()

    def _model_changed(self, clf) -> None:
        self.pred_panel.set_threshold(clf.threshold)
        self.device_actions.get(self.models.device, self.device_actions["auto"]).setChecked(True)
        if self.models.cuda_available is False:
            self.device_actions["cuda"].setEnabled(False)
            self.device_actions["cuda"].setText("NVIDIA GPU (CUDA) — not available on this computer")
        self.viewer.set_placeholder("Open a chest X-ray (Ctrl+O) or drop files or folders here")
        self.images.set_classifier(clf)
        self.batch.model_changed(clf)
        self._show_model_state()
        if self._queued_batch is not None:
            paths, self._queued_batch = self._queued_batch, None
            self.open_batch(paths)

    def _threshold_edited(self, value: float) -> None:
        if self.models.set_threshold(value):
            self.images.relabel()
            self.batch.relabel(self.models.classifier)

    def _threshold_reset(self) -> None:
        t = self.models.reset_threshold()
        if t is not None:
            self.pred_panel.set_threshold(t)
            self.images.relabel()
            self.batch.relabel(self.models.classifier)

    def _heatmap_toggled(self, on: bool) -> None:
        self.settings.show_heatmap = on
        self.images.set_heatmap_visible(on)

    def _lung_outline_toggled(self, on: bool) -> None:
        self.settings.show_lung_outline = on
        self.viewer.set_outline_visible(on)

    def _lesion_toggled(self, on: bool) -> None:
        self.settings.show_lesion_map = on
        self.images.set_lesion_visible(on)

    def _opacity_changed(self, value: int) -> None:
        self.settings.overlay_opacity = value
        self.images.set_opacity(value)

    # -- opening ------------------------------------------------------------------------
    def open_paths(self, paths) -> None:
        """What a drop does: one file opens in the viewer; several files or any
        folder start a batch."""
        paths = [Path(p) for p in paths]
        if not paths:
            return
        if len(paths) == 1 and not paths[0].is_dir() and paths[0].name.upper() != "DICOMDIR":
            self.open_image(paths[0])
        else:
            self.open_batch(paths)

    def open_image(self, path, *, check_header: bool = True) -> None:
        """One file in the viewer.  If the batch table holds it, its row is
        selected (and its result shown); otherwise no row stays selected."""
        p = Path(path)
        self.settings.add_recent(str(p))
        self.settings.last_folder = str(p.parent)
        row = self.batch_panel.find_source_row(p) if check_header else None
        if row is not None and self.batch_panel.select_source_row(row, quiet=True):
            self._row_activated(row)
            return
        self.batch_panel.clear_selection()
        self._showing_batch_row = False
        self.images.open(p, check_header=check_header)

    def open_batch(self, paths) -> bool:
        paths = [Path(p) for p in paths]
        first = paths[0]
        self.settings.last_folder = str(first if first.is_dir() else first.parent)
        if self.models.classifier is None and self.models.busy:
            self._queued_batch = paths
            self.notifier.info("The batch starts as soon as the model is loaded.")
            return True
        if self.batch.running:
            self.batch.cancel()
        started = self.batch.start(paths, self.models.classifier)
        if started:  # the previous image belongs to no row of the new table
            self._showing_batch_row = False
            self.images.clear(SELECT_A_ROW, "No image selected: " + SELECT_A_ROW[0].lower() + SELECT_A_ROW[1:])
        return started

    def open_model(self, path) -> None:
        self.models.load(path)

    def _row_activated(self, row: int) -> None:
        """The selected row's image goes on screen (a skipped file: nothing)."""
        r = self.batch_panel.model.rows[row]
        self._showing_batch_row = True
        if r.status == "skipped":
            self.images.clear(f"{r.path.name} was skipped: {r.reason}", f"Skipped: {r.reason}")
            self.notifier.info(f"{r.path.name}: {r.reason}")
            return
        current = r.pred is not None and r.pred.status == "ok" and not self.batch_panel.model.is_stale(r)
        if self.batch_panel.model.is_stale(r):
            self.notifier.info(f"{r.path.name}: the table's result is from {r.stamp.label}; "
                               "showing the current model's result.")
        self.images.open(r.path, pred=r.pred if current else None)

    def _batch_selection_cleared(self) -> None:
        """The selected row went away (filtered out, a new batch): its image goes too."""
        if self._showing_batch_row:
            self._showing_batch_row = False
            self.images.clear(SELECT_A_ROW, "No image selected: " + SELECT_A_ROW[0].lower() + SELECT_A_ROW[1:])

    # -- file dialogs -----------------------------------------------------------------------
    def _start_dir(self) -> str:
        d = self.settings.last_folder
        return d if d and Path(d).is_dir() else str(Path.home())

    def choose_image(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open chest X-ray", self._start_dir(), IMAGE_FILTER)
        if files:
            self.open_paths(files)

    def choose_folder(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Classify all images in a folder", self._start_dir())
        if d:
            self.open_batch([d])

    def choose_dicomdir(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Open DICOMDIR (CD/DVD or USB export)", self._start_dir(),
                                           "DICOMDIR (DICOMDIR dicomdir);;All files (*)")
        if f:
            self.open_batch([f])

    def choose_model(self) -> None:
        start = str(self.models.path.parent) if self.models.path else self._start_dir()
        f, _ = QFileDialog.getOpenFileName(self, "Open model file", start,
                                           "Model files (*.safetensors);;All files (*)")
        if f:
            switch_model(self, f)  # asks first: figures side by side, this session only / make default

    def choose_report(self) -> None:
        if self.images.pred is None:
            self.notifier.warning("Classify an image first: the report is about the current image.")
            return
        name = (self.images.path.stem if self.images.path else "report") + "_report.pdf"
        f, _ = QFileDialog.getSaveFileName(self, "Export report", str(Path(self._start_dir()) / name),
                                           "PDF (*.pdf)")
        if f:
            self.export_report(f if f.lower().endswith(".pdf") else f + ".pdf")

    def choose_csv(self) -> None:
        if not self.batch_panel.model.rows:
            self.notifier.warning("There are no batch results to export yet.")
            return
        f, _ = QFileDialog.getSaveFileName(self, "Export batch results", str(Path(self._start_dir()) /
                                           "results.csv"), "CSV (*.csv)")
        if f:
            self.export_csv(f)

    def dicom_candidates(self) -> list:
        """What "Export DICOM results" writes: the batch rows shown (results of the
        current model), else the current image's result."""
        model = self.batch_panel.model
        rows = [model.rows[i] for i in self.batch_panel.visible_source_rows()]
        preds = [r.pred for r in rows if r.pred is not None and not model.is_stale(r)]
        if preds:
            return preds
        return [self.images.pred] if self.images.pred is not None else []

    def choose_dicom_export(self) -> None:
        from training.dicom_out.export import has_dicom_source
        from training.dicom_out.source import NEEDS_DICOM_SOURCE

        preds = self.dicom_candidates()
        if not preds:
            self.notifier.warning("Classify images first: there are no results of the current model to export.")
            return
        if not any(has_dicom_source(p) for p in preds):
            kind = (getattr(preds[0].meta, "kind", "") or "non-DICOM") if preds[0].meta is not None else "non-DICOM"
            self.notifier.warning(NEEDS_DICOM_SOURCE.format(kind=kind.upper()))
            return
        d = QFileDialog.getExistingDirectory(self, "Export DICOM results into a folder", self._start_dir())
        if d:
            self.export_dicom(d, preds)

    def export_dicom(self, folder, preds=None) -> bool:
        """Write SR + secondary capture for ``preds`` (default: ``dicom_candidates``) in a worker."""
        from .tasks import dicom_export_task

        clf = self.models.classifier
        preds = self.dicom_candidates() if preds is None else list(preds)
        if clf is None or not preds:
            self.notifier.warning("Nothing to export: load a model and classify images first.")
            return False
        results: list = []

        def on_item(item):
            _, i, written, reason = item
            results.append((preds[i], written, reason))

        def on_done():
            done = [w for _, w, _ in results if w is not None]
            n_sc = sum(w.sc is not None for w in done)
            text = f"DICOM results written to {folder}: {len(done)} SR, {n_sc} secondary capture(s)"
            reasons: dict[str, int] = {}
            for _, w, why in results:
                if w is None:
                    reasons[why] = reasons.get(why, 0) + 1
            if reasons:
                text += "; not written: " + "; ".join(f"{n} × {why}" for why, n in reasons.items())
            (self.notifier.info if done else self.notifier.warning)(text)
            self.dicomExported.emit(results)

        self.notifier.info(f"Writing DICOM results for {len(preds)} result(s)…")
        return self.jobs.start("dicom", dicom_export_task, clf, preds, str(folder), on_yield=on_item,
                               on_done=on_done, context="DICOM export") is not None

    def fill_recent_menu(self) -> None:
        m = self.recent_menu
        m.clear()
        items = self.settings.recent_files
        for f in items:
            m.addAction(f, lambda f=f: self.open_paths([f]))
        if not items:
            m.addAction("(none)").setEnabled(False)
        else:
            m.addSeparator()
            m.addAction("Clear list", self.settings.clear_recent)

    # -- export -----------------------------------------------------------------------------
    def export_csv(self, path) -> Path | None:
        try:
            out = self.batch.export_csv(path)
        except OSError as exc:
            self.notifier.error(f"Could not write {path}: {exc.strerror or exc}")
            return None
        self.notifier.info(f"Batch results written to {out}")
        return out

    def export_report(self, path) -> None:
        """Write the PDF; computes the heatmap first when it is not cached."""
        if self.images.pred is None:
            self.notifier.warning("Classify an image first: the report is about the current image.")
            return
        self._pending_report = Path(path)
        if self.images.heatmap() is None and self.images.compute_heatmap():
            self.notifier.info("Computing the heatmap for the report…")
            return
        self._maybe_write_report(None)

    def _maybe_write_report(self, _path) -> None:
        if self._pending_report is None:
            return
        target, self._pending_report = self._pending_report, None
        from .report_pdf import write_report

        patient = self.meta_panel.patient_items() if self.meta_panel.patient_visible() else None
        content = report_content(self.images, patient=patient)
        if content is None:
            return
        try:
            write_report(target, content)
        except OSError as exc:
            self.notifier.error(f"Could not write the report {target}: {exc.strerror or exc}")
            return
        self.notifier.info(f"Report written to {target}")
        self.reportWritten.emit(str(target))

    # -- settings / help ------------------------------------------------------------------------
    def choose_device(self, device: str) -> None:
        if device != self.models.device or self.models.classifier is None:
            self.models.set_device(device)

    def show_settings(self) -> None:
        from .dialogs import SettingsDialog

        dlg = SettingsDialog(self.models.device, self.models.cuda_available, self)
        if dlg.exec():
            self.choose_device(dlg.device())

    def show_about(self) -> None:
        from training.common.resources import model_card_path

        from .dialogs import AboutDialog

        AboutDialog(self.models.classifier, model_card_path(), self).exec()

    # -- training wizard (Tools → Train models…; see docs/WIZARD.md) ---------------------------------
    def _add_training_menu(self) -> None:
        from PySide6.QtGui import QAction

        act = QAction("&Train models…", self)
        act.setStatusTip("Retrain the paper's models on your own images (training wizard)")
        act.triggered.connect(self.show_training_wizard)
        tools = self.menuBar().addMenu("&Tools")
        tools.addAction(act)
        help_menu = next((a for a in self.menuBar().actions() if a.text() == "&Help"), None)
        if help_menu is not None:  # Tools goes before Help
            self.menuBar().insertMenu(help_menu, tools)
        self.actions_by_name["train"] = act
        self.training_wizard = None

    def show_training_wizard(self):
        """Open (or raise) the wizard; its "Use this model" loads the file here."""
        from .wizard import TrainingWizard

        if self.training_wizard is None:
            self.training_wizard = TrainingWizard(self, notifier=self.notifier, dialogs=self.notifier.dialogs,
                                                  use_model=lambda f: switch_model(self, f))  # asks first
        self.training_wizard.reopen()
        return self.training_wizard

    # -- drag and drop / closing -------------------------------------------------------------------
    def dragEnterEvent(self, event):  # noqa: N802
        if any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    dragMoveEvent = dragEnterEvent

    def dropEvent(self, event):  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def closeEvent(self, event):  # noqa: N802
        """Stop every worker (a batch stops at its next file) and wait for them."""
        self.status_line.showMessage("Stopping…")
        if self.is_full_screen_image():
            self.set_full_screen(False)  # the geometry and splitters saved are the normal ones
        self._remember_splits()
        self.settings.save_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()
        self.dicom_network.shutdown()  # stop listening; received images stay in the node's store
        from training.imaging.decode_guard import abandon

        abandon()  # a decode stuck in a worker process ends now instead of holding the wait below
        self.jobs.shutdown()
        super().closeEvent(event)
