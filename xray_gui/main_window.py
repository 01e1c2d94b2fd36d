"""The main window: layout, menus, drag and drop, and the wiring between the
controllers (model, current image, batch) and the widgets."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QLabel, QMainWindow, QScrollArea, QVBoxLayout,
                               QWidget)

from . import APP_NAME, RESEARCH_NOTICE
from .actions import build_menus
from .batch_controller import BatchController
from .batch_table import BatchPanel
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


class MainWindow(QMainWindow):
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

        self.viewer = ImageViewer()
        self.setCentralWidget(self.viewer)
        self.pred_panel = PredictionPanel()
        self.meta_panel = MetadataPanel()
        side = QWidget()
        sl = QVBoxLayout(side)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addWidget(self.pred_panel)
        sl.addWidget(self.meta_panel)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(side)
        scroll.setMinimumWidth(340)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.side_dock = QDockWidget("Result and image", self)
        self.side_dock.setObjectName("sideDock")
        self.side_dock.setWidget(scroll)
        self.side_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.side_dock)
        self.batch_panel = BatchPanel()
        self.batch_dock = QDockWidget("Batch results", self)
        self.batch_dock.setObjectName("batchDock")
        self.batch_dock.setWidget(self.batch_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.batch_dock)
        self.batch_dock.hide()

        sb = self.statusBar()
        self.model_status = QLabel("loading model…")
        self.model_status.setObjectName("modelStatus")
        notice = QLabel(RESEARCH_NOTICE)
        notice.setObjectName("researchNotice")
        notice.setStyleSheet("color: #c9a227; padding: 0 6px;")
        notice.setToolTip("This program is a research tool. Its output is not a medical diagnosis.")
        sb.addPermanentWidget(self.model_status)
        sb.addPermanentWidget(notice)
        self.notifier.attach(sb, self)

        self.models = ModelController(self.settings, self.jobs, self.notifier, self)
        self.images = ImageController(self, self.viewer, self.pred_panel, self.meta_panel, self.jobs, self.notifier)
        self.batch = BatchController(self.batch_panel, self.jobs, self.notifier, self)
        self.actions_by_name = build_menus(self)
        self._add_training_menu()
        from .node_menu import install_dicom_network

        self.dicom_network = install_dicom_network(self)  # DICOM menu: receive, query/retrieve, send back
        self._wire()
        self._restore()

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
        p.classifyAnywayRequested.connect(im.classify_anyway)
        p.openModelRequested.connect(self.choose_model)
        im.heatmapReady.connect(self._maybe_write_report)
        im.heatmapFailed.connect(lambda _m: self._maybe_write_report(None))
        self.batch_panel.rowActivated.connect(self._row_activated)
        self.batch_panel.exportRequested.connect(self.choose_csv)
        self.batch.started.connect(lambda _n: self.batch_dock.show())
        self.meta_panel.showPatientToggled.connect(self.batch_panel.set_show_identifiers)

    def _restore(self) -> None:
        s = self.settings
        geometry, state = s.window_state()
        self.resize(1280, 820)
        if geometry:
            self.restoreGeometry(geometry)
        if state:
            self.restoreState(state)
        self.batch_dock.hide()
        self.pred_panel.opacity.setValue(s.overlay_opacity)
        self.images.set_opacity(s.overlay_opacity)
        self.pred_panel.heatmap.setChecked(s.show_heatmap)
        self.images.show_heatmap = s.show_heatmap
        self.pred_panel.lung_outline.setChecked(s.show_lung_outline)
        self.viewer.set_outline_visible(s.show_lung_outline)
        self.device_actions[s.device].setChecked(True)

    def start_model(self, explicit: str | None = None) -> None:
        """Load ``explicit``, else the remembered model (falling back to the
        shipped default when it fails), else the shipped default."""
        from training.resources import default_model_path

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
        from training.models import ARCH_LABELS

        self.pred_panel.model_text.setToolTip(str(c.loaded.path or ""))
        return (f"<b>{c.loaded.display_name}</b><br>{ARCH_LABELS.get(c.info.arch, c.info.arch)}, "
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
        p = Path(path)
        self.settings.add_recent(str(p))
        self.settings.last_folder = str(p.parent)
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
        return self.batch.start(paths, self.models.classifier)

    def open_model(self, path) -> None:
        self.models.load(path)

    def _row_activated(self, row: int) -> None:
        r = self.batch_panel.model.rows[row]
        if r.status == "skipped":
            self.notifier.info(f"{r.path.name}: {r.reason}")
            return
        current = r.pred is not None and r.pred.status == "ok" and not self.batch_panel.model.is_stale(r)
        if self.batch_panel.model.is_stale(r):
            self.notifier.info(f"{r.path.name}: the table's result is from {r.stamp.label}; "
                               "showing the current model's result.")
        self.images.open(r.path, pred=r.pred if current else None)

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
        from training.dicom_export import has_dicom_source
        from training.dicom_source import NEEDS_DICOM_SOURCE

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
        from training.resources import model_card_path

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
        self.statusBar().showMessage("Stopping…")
        self.settings.save_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()
        self.dicom_network.shutdown()  # stop listening; received images stay in the node's store
        from training.decode_guard import abandon

        abandon()  # a decode stuck in a worker process ends now instead of holding the wait below
        self.jobs.shutdown()
        super().closeEvent(event)
