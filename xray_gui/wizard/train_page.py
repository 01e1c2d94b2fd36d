"""Page 3 - Training: runs ``training.train.trainer.train_events`` in a generator
worker and shows every event: live loss/accuracy curves per model (redrawn on
each 'epoch' event with ``training.train.plots.draw_curves``; ``curve_tabs``), a progress bar with
the time left (from 'batch' events), and the log.

Cancel sets the trainer's ``should_stop`` flag and quits the worker; either
stops between two batches.  The trainer keeps the run folder consistent
(atomic checkpoints each epoch; a model file only for a finished model), so a
cancelled run can be resumed with the same settings."""

from __future__ import annotations

import json
import threading
import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWizardPage,
)

from training.common.events import EventKind
from training.train import run_folder

from .common import JOB_TRAIN, MODEL_LABELS, MessageLabel, error_text, esc, fmt_duration
from .curve_tabs import CurveTabs
from .tasks import train_task

CANCELLED_TEXT = "Cancelled - the run folder keeps finished epochs; you can resume it."


class TrainPage(QWizardPage):
    runningChanged = Signal(bool)
    finished = Signal()  # the run ended with its 'done' event

    def __init__(self, wiz):
        super().__init__()
        self.wiz = wiz
        self.setTitle("3. Training")
        self.setSubTitle("The window stays usable while the models train. Cancel stops after the current batch; "
                         "finished epochs stay in the run folder.")
        self.running = False
        self.done = False
        self.cancelled = False
        self.failed = ""
        self.closing = False
        self._stop = threading.Event()
        self.cfg = None
        self.events: list = []
        self.results: dict[str, dict] = {}
        self.tabs = CurveTabs()  # one tab of curves per model
        self.figures, self.histories, self.best_epoch = self.tabs.figures, self.tabs.histories, self.tabs.best_epoch
        self._t_model: dict[str, tuple[float, float]] = {}
        self._finished_key = None

        self.status = QLabel("Waiting to start…")
        self.status.setObjectName("trainStatus")
        self.status.setStyleSheet("font-weight: bold;")
        self.progress = QProgressBar()
        self.progress.setObjectName("trainProgress")
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.time_left = QLabel("")
        self.time_left.setObjectName("timeLeft")
        self.time_left.setMinimumWidth(190)
        self.cancel_button = QPushButton("Cancel training")
        self.cancel_button.setObjectName("cancelTraining")
        self.cancel_button.clicked.connect(self.request_stop)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setObjectName("resumeTraining")
        self.resume_button.setToolTip("Continue this run from its last finished epoch")
        self.resume_button.clicked.connect(self.start)
        self.resume_button.hide()
        bar = QHBoxLayout()
        bar.addWidget(self.progress, 1)
        bar.addWidget(self.time_left)
        bar.addWidget(self.cancel_button)
        bar.addWidget(self.resume_button)

        self.message = MessageLabel()
        self.message.setObjectName("trainMessage")

        self.log = QPlainTextEdit()
        self.log.setObjectName("trainLog")
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.tabs)
        split.addWidget(self.log)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)
        split.setSizes([560, 170])  # curves first; the log keeps a few lines
        self.log.setMinimumHeight(90)

        lay = QVBoxLayout(self)
        lay.addWidget(self.status)
        lay.addLayout(bar)
        lay.addWidget(self.message)
        lay.addWidget(split, 1)

    # -- page life ------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        cfg = self.wiz.state.config
        key = json.dumps(cfg.to_dict(), sort_keys=True)
        if self.done and key == self._finished_key:
            return  # Back then Next with the same settings: the finished run is kept
        self.cfg = cfg
        self._reset_view()
        self.status.setText("Starting…")
        # after QWizard has shown the page and set its buttons (Back goes off then)
        QTimer.singleShot(0, self.start)

    def cleanupPage(self) -> None:  # noqa: N802
        if self.running:  # Back is disabled while training; stop anyway if it ever happens
            self.request_stop()

    def isComplete(self) -> bool:  # noqa: N802
        return self.done and not self.running

    def _reset_view(self) -> None:
        self.done, self.cancelled, self.failed = False, False, ""
        self.events.clear()
        self.results.clear()
        self._t_model.clear()
        self.tabs.reset(self.cfg.models)
        self.log.clear()
        self.progress.setValue(0)
        self.time_left.setText("")

    # -- run control -----------------------------------------------------------------------
    def start(self) -> None:
        if self.running or self.cfg is None or self.wiz.currentPage() is not self:
            return
        self._stop = threading.Event()
        self.done, self.cancelled, self.failed, self.closing = False, False, "", False
        self._t_model.clear()
        self.message.show_message("")
        resuming = run_folder.config_file(self.cfg.out_dir).exists()
        self.status.setText("Resuming the run…" if resuming else "Starting…")
        self._log(f"{'Resuming' if resuming else 'Starting'} run in {self.cfg.out_dir}")
        self.progress.setRange(0, 0)  # busy until the first batch: the images are being read
        self.cancel_button.setEnabled(True)
        self.cancel_button.show()
        self.resume_button.hide()
        self._set_running(True)
        worker = self.wiz.jobs.start(JOB_TRAIN, train_task, self.cfg, self._stop, on_yield=self._on_event,
                                     on_error=self._on_error, on_done=self._on_done)
        if worker is None:  # the wizard is closing
            self._set_running(False)

    def request_stop(self, *, closing: bool = False) -> None:
        """Stop between two batches (flag for the trainer + worker.quit())."""
        self.closing = self.closing or closing
        if not self.running:
            return
        if not self._stop.is_set():
            self._stop.set()
            self.wiz.jobs.cancel(JOB_TRAIN, keep_results=True)
            self.cancel_button.setEnabled(False)
            self.status.setText("Stopping after the current batch…")
            self._log("Cancel requested.")

    def _set_running(self, on: bool) -> None:
        self.running = on
        self.completeChanged.emit()  # QWizard updates its buttons here…
        self.runningChanged.emit(on)  # …then the wizard turns Back off while running

    # -- events ------------------------------------------------------------------------------
    def _log(self, text: str) -> None:
        self.log.appendPlainText(time.strftime("%H:%M:%S  ") + text)

    def _on_event(self, ev) -> None:
        self.events.append(ev)
        kind = ev.kind
        if kind == "batch":
            self._on_batch(ev)
            return
        if ev.message:
            self._log(ev.message)
        if kind == "data":
            self.status.setText(f"Images read: {ev.message}")
        elif kind in (EventKind.MODEL_RESUMED, EventKind.MODEL_STARTED):
            self.tabs.set_history(ev.model, ev.metrics.get("history") or [])
        elif kind == EventKind.EVALUATING:
            self.status.setText(f"{MODEL_LABELS.get(ev.model, ev.model)}: testing epoch {ev.epoch} (best validation "
                                "accuracy, ties by lower loss)…")
        elif kind == EventKind.MODEL_SKIPPED:
            self.tabs.set_history(ev.model, ev.metrics.get("history") or [])
            self.results[ev.model] = ev.metrics.get("result") or {}
            self.tabs.model_finished(ev.model, self.results[ev.model])
        elif kind == "epoch":
            self.tabs.add_epoch(ev.model, ev.epoch, ev.metrics)
        elif kind == "model_done":
            self.results[ev.model] = ev.metrics
            self.tabs.model_finished(ev.model, ev.metrics)
        elif kind == "done":
            self.done = True
            self.progress.setRange(0, 1000)
            self.progress.setValue(1000)
            self.time_left.setText("")
            self.status.setText("Finished: all models are trained, tested and saved.")
            self.message.show_message(f"Run folder: {esc(self.cfg.out_dir)}. Next shows the results.", "ok")
            self._finished_key = json.dumps(self.cfg.to_dict(), sort_keys=True)

    def _on_batch(self, ev) -> None:
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1000)
        if ev.batch == 1 and ev.epoch <= 1:
            self.tabs.show_model(ev.model)
        frac_model = ((ev.epoch - 1) + ev.batch / max(1, ev.batches)) / max(1, ev.epochs)
        overall = (ev.model_index + frac_model) / max(1, ev.model_count)
        self.progress.setValue(int(overall * 1000))
        self.progress.setFormat(f"{overall * 100:.0f} %")
        self.status.setText(f"Training {MODEL_LABELS.get(ev.model, ev.model)} (model {ev.model_index + 1} of "
                            f"{ev.model_count}) - epoch {ev.epoch}/{ev.epochs}, batch {ev.batch}/{ev.batches}, "
                            f"loss {ev.metrics.get('loss', float('nan')):.4f}"
                            + (" - validating…" if ev.batch == ev.batches else ""))
        now = time.monotonic()
        t0 = self._t_model.setdefault(ev.model, (now, frac_model))
        if frac_model > t0[1] + 1e-9 and now > t0[0]:
            per_model = (now - t0[0]) / (frac_model - t0[1])  # seconds for a whole model at this pace
            left = (1 - frac_model) * per_model
            est = self.wiz.state.estimate_s or {}
            rest = self.cfg.models[ev.model_index + 1:]
            scale = per_model / est[ev.model] if est.get(ev.model) else None
            for arch in rest:
                left += est[arch] * scale if (scale and est.get(arch)) else per_model
            self.time_left.setText(f"about {fmt_duration(left)} left")

    # -- end of the worker -----------------------------------------------------------------
    def _on_error(self, exc) -> bool:
        from training.common.errors import TrainingCancelled, XrayError

        if isinstance(exc, TrainingCancelled):
            self.cancelled = True
            return True
        self.failed = error_text(exc)
        self._log(f"ERROR: {self.failed}")
        from ..workers import TaskRuntimeError

        if isinstance(exc, (XrayError, TaskRuntimeError)):  # typed, or PyTorch's own (e.g. out of memory)
            self.wiz.notifier.warning(f"Training stopped: {self.failed}")
        else:  # a bug: the notifier shows the traceback as detail
            self.wiz.notifier.exception(exc, "Training")
        return True

    def _on_done(self) -> None:
        if self._stop.is_set() and not self.done:
            self.cancelled = True
        self.progress.setRange(0, 1000)
        self.cancel_button.hide()
        self.time_left.setText("")
        if self.done:
            pass
        elif self.cancelled:
            self.status.setText("Cancelled.")
            self.message.show_message(CANCELLED_TEXT, "warning")
            self._log(CANCELLED_TEXT)
            self.resume_button.setText("Resume")
            self.resume_button.show()
        else:
            self.status.setText("Training stopped with an error.")
            reason = self.failed or "the training ended without finishing (no 'done' event)."
            self.message.show_message(f"Training stopped: {esc(reason)}<br>Change the settings (Back) or try "
                                      "again; finished epochs are kept in the run folder.", "error")
            self.resume_button.setText("Try again")
            self.resume_button.show()
        self._set_running(False)
        if self.done:
            self.finished.emit()
        if self.closing:
            self.wiz.close_after_stop()
