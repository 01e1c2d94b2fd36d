"""The main window: the wiring between the controllers (model, current image,
batch, exports) and the widgets; opening files, drag and drop, closing.  The
layout is ``window_layout``'s, the menus ``actions``', the exports
``export_controller``'s and the model's display ``model_display``'s."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QMainWindow

from . import APP_NAME
from .actions import build_menus
from .batch_controller import BatchController
from .batch_table import BatchPanel
from .export_controller import ExportController
from .image_controller import ImageController
from .metadata_panel import MetadataPanel
from .model_controller import ModelController
from .model_display import ModelDisplay
from .model_switch import switch_model
from .overlay_options import OverlayOptions
from .prediction_panel import PredictionPanel
from .settings import AppSettings
from .viewer import ImageViewer
from .window_layout import WindowLayout
from .workers import Jobs, Notifier

IMAGE_FILTER = ("Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.dcm *.dicom *.DCM);;"
                "DICOM without extension (*);;All files (*)")
SELECT_A_ROW = "Select a row in the batch table to see its image (N / PgDown: next, P / PgUp: previous)."


class MainWindow(QMainWindow):
    """Layout (``WindowLayout``): a horizontal splitter [viewer over batch table | side panel].

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
        self._queued_batch: list[Path] | None = None  # dropped before the model was ready
        self._showing_batch_row = False  # the viewer shows the selected batch row (not a lone file)

        self.viewer = ImageViewer()
        self.viewer.setMinimumSize(240, 200)  # the table may take more than half the height
        self.pred_panel = PredictionPanel()
        self.meta_panel = MetadataPanel()
        self.batch_panel = BatchPanel()
        self.batch_dock = self.batch_panel  # the name it had as a dock widget
        lay = self.window_layout = WindowLayout(self, self.viewer, self.pred_panel, self.meta_panel,
                                                self.batch_panel, self.settings, self.notifier)
        self.image_split, self.main_split, self.side_scroll = lay.image_split, lay.main_split, lay.side_scroll
        self.side_panel = self.side_dock = lay.side_panel  # side_dock: the name it had as a dock widget
        self.status_line, self.model_status, self.layout_actions = lay.status_line, lay.model_status, lay.actions

        self.models = ModelController(self.settings, self.jobs, self.notifier, self)
        self.images = ImageController(self, self.viewer, self.pred_panel, self.meta_panel, self.jobs, self.notifier)
        self.batch = BatchController(self.batch_panel, self.jobs, self.notifier, self)
        self.exports = ExportController(self)
        self.model_display = ModelDisplay(self)
        self.training_wizard = None  # Tools → Train models… (docs/WIZARD.md)
        self.actions_by_name = build_menus(self)
        self.actions_by_name.update(self.layout_actions)
        from .node_menu import install_dicom_network

        self.dicom_network = install_dicom_network(self)  # DICOM menu: receive, query/retrieve, send back
        self.overlays = OverlayOptions(self.settings, self.pred_panel, self.images, self.viewer)
        self._wire()
        self._restore()

    # -- layout (WindowLayout) ------------------------------------------------------
    def showEvent(self, event):  # noqa: N802
        super().showEvent(event)
        self.window_layout.window_shown()

    def show_batch_table(self) -> None:
        self.window_layout.show_batch_table()

    def is_full_screen_image(self) -> bool:
        return self.window_layout.is_full_screen_image()

    # -- set-up -----------------------------------------------------------------
    def _wire(self) -> None:
        m, im, p, md = self.models, self.images, self.pred_panel, self.model_display
        m.loading.connect(md.loading)
        m.changed.connect(self._model_changed)
        m.failed.connect(self._model_failed)
        m.settled.connect(self._model_settled)
        p.thresholdEdited.connect(md.threshold_edited)
        p.resetThresholdRequested.connect(md.threshold_reset)
        p.classifyAnywayRequested.connect(im.classify_anyway)
        p.openModelRequested.connect(self.choose_model)
        im.heatmapReady.connect(self.exports.write_pending_report)
        im.heatmapFailed.connect(self.exports.write_pending_report)
        self.batch_panel.rowActivated.connect(self._row_activated)
        self.batch_panel.exportRequested.connect(self.exports.choose_csv)
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
            self.window_layout.set_side_panel_visible(False)
        self.overlays.restore()
        self.device_actions[s.device].setChecked(True)

    def start_model(self, explicit: str | None = None) -> None:
        """Load ``explicit``, else the remembered model, else the shipped default (``ModelDisplay.start``)."""
        self.model_display.start(explicit)

    # -- model ----------------------------------------------------------------------
    def _model_settled(self) -> None:
        if self.models.busy:
            return
        if self._queued_batch is not None and self.models.classifier is None:
            self._queued_batch = None
            self.notifier.warning("The batch was not started: no model is loaded.")
        self.model_display.show_state()

    def _model_failed(self, _reason: str) -> None:
        self.model_display.tick_device()
        self._model_settled()

    def _model_changed(self, clf) -> None:
        self.model_display.model_changed(clf)
        self.images.set_classifier(clf)
        self.batch.model_changed(clf)
        self._model_settled()
        if self._queued_batch is not None:
            paths, self._queued_batch = self._queued_batch, None
            self.open_batch(paths)

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
            self.notifier.info(f"{r.path.name}: the table's result is from {r.stamp.display_name}; "
                               "showing the current model's result.")
        self.images.open(r.path, pred=r.pred if current else None)

    def _batch_selection_cleared(self) -> None:
        """The selected row went away (filtered out, a new batch): its image goes too."""
        if self._showing_batch_row:
            self._showing_batch_row = False
            self.images.clear(SELECT_A_ROW, "No image selected: " + SELECT_A_ROW[0].lower() + SELECT_A_ROW[1:])

    # -- file dialogs -----------------------------------------------------------------------
    def start_dir(self) -> str:
        """Where the file dialogs open: the last folder used, else the home folder."""
        d = self.settings.last_folder
        return d if d and Path(d).is_dir() else str(Path.home())

    def choose_image(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open chest X-ray", self.start_dir(), IMAGE_FILTER)
        if files:
            self.open_paths(files)

    def choose_folder(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Classify all images in a folder", self.start_dir())
        if d:
            self.open_batch([d])

    def choose_dicomdir(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Open DICOMDIR (CD/DVD or USB export)", self.start_dir(),
                                           "DICOMDIR (DICOMDIR dicomdir);;All files (*)")
        if f:
            self.open_batch([f])

    def choose_model(self) -> None:
        start = str(self.models.path.parent) if self.models.path else self.start_dir()
        f, _ = QFileDialog.getOpenFileName(self, "Open model file", start,
                                           "Model files (*.safetensors);;All files (*)")
        if f:
            switch_model(self, f)  # asks first: figures side by side, this session only / make default

    # -- export (ExportController) ---------------------------------------------------------------
    def dicom_candidates(self) -> list:
        return self.exports.dicom_candidates()

    def export_dicom(self, folder, preds=None) -> bool:
        return self.exports.export_dicom(folder, preds)

    def export_csv(self, path) -> Path | None:
        return self.exports.export_csv(path)

    def export_report(self, path) -> None:
        self.exports.export_report(path)

    # -- settings / help ------------------------------------------------------------------------
    def show_settings(self) -> None:
        from .dialogs import SettingsDialog

        dlg = SettingsDialog(self.models.device, self.models.cuda_available, self, precision=self.models.precision)
        if dlg.exec():
            precision, device = dlg.precision(), dlg.device()
            if precision != self.models.precision:  # a new device reloads below, with the new precision
                self.models.set_precision(precision, reload=device == self.models.device)
            self.model_display.choose_device(device)

    def show_about(self) -> None:
        from training.common.resources import model_card_path

        from .dialogs import AboutDialog

        AboutDialog(self.models.classifier, model_card_path(), self).exec()

    def show_training_wizard(self):
        """Tools → Train models… (docs/WIZARD.md): open (or raise) the wizard;
        its "Use this model" loads the file here."""
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
            self.window_layout.set_full_screen(False)  # the geometry and splitters saved are the normal ones
        self.window_layout.remember_splits()
        self.settings.save_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()
        self.dicom_network.shutdown()  # stop listening; received images stay in the node's store
        from training.imaging.decode_guard import abandon

        abandon()  # a decode stuck in a worker process ends now instead of holding the wait below
        self.jobs.shutdown()
        super().closeEvent(event)
