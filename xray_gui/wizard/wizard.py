"""The training wizard: Data → Setup → Training → Results → Finish.

It builds a ``TrainConfig`` with the core's ``make_config`` and runs the
core's ``train_events`` through the app's one worker pattern
(``xray_gui.workers.Jobs``); messages go through the app's ``Notifier``.
Nothing here trains or computes metrics: the pages only move data.

Closing the wizard (or the main window) while a model trains stops the run
between two batches; the wizard closes once the worker has ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QWidget, QWizard

from ..workers import Jobs, Notifier
from .common import JOB_ESTIMATE, JOB_PROBE, JOB_SCAN
from .data_page import DataPage
from .finish_page import FinishPage
from .results_page import ResultsPage
from .setup_page import SetupPage
from .train_page import TrainPage


@dataclass
class WizardState:
    """What one page hands to the next."""

    data_dir: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    decode_s: float | None = None  # seconds to read one image (from the thumbnails)
    config: Any = None  # training.train.config.TrainConfig
    resuming: bool = False
    estimate_s: dict[str, float] = field(default_factory=dict)  # measured seconds per model


class TrainingWizard(QWizard):
    PAGE_DATA, PAGE_SETUP, PAGE_TRAIN, PAGE_RESULTS, PAGE_FINISH = range(5)

    def __init__(self, parent: QWidget | None = None, *, notifier: Notifier | None = None,
                 use_model: Callable[[str], str | None] | None = None, dialogs: bool = True):
        super().__init__(parent)
        self.setWindowTitle("Train models")
        self.setObjectName("trainingWizard")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setButtonText(QWizard.WizardButton.CancelButton, "Close")
        self.setModal(False)
        self.state = WizardState()
        self.notifier = notifier or Notifier(self, dialogs=dialogs)
        self.jobs = Jobs(self.notifier, self)  # the wizard's own jobs; same pattern as the main window's
        self.use_model = use_model

        self.data_page = DataPage(self)
        self.setup_page = SetupPage(self)
        self.train_page = TrainPage(self)
        self.results_page = ResultsPage(self)
        self.finish_page = FinishPage(self)
        for pid, page in enumerate((self.data_page, self.setup_page, self.train_page, self.results_page,
                                    self.finish_page)):
            self.setPage(pid, page)
        self.setStartId(self.PAGE_DATA)
        self.train_page.runningChanged.connect(lambda _on: self._sync_buttons())
        self.currentIdChanged.connect(lambda _id: QTimer.singleShot(0, self._sync_buttons))
        self.resize(1120, 800)

        if parent is not None:
            parent.installEventFilter(self)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    # -- buttons ----------------------------------------------------------------------
    def _sync_buttons(self) -> None:
        """Back is off while a model trains (QWizard re-enables it on its own
        updates, so this runs after them)."""
        running = self.train_page.running
        back = self.button(QWizard.WizardButton.BackButton)
        if running:
            back.setEnabled(False)
        elif self.currentId() > self.PAGE_DATA:
            back.setEnabled(True)

    @property
    def training(self) -> bool:
        return self.train_page.running

    # -- closing ----------------------------------------------------------------------
    def reject(self) -> None:
        """Close (button, Esc, window close): while training, stop between two
        batches first and close when the worker has ended."""
        if self.train_page.running:
            self.train_page.request_stop(closing=True)
            return
        self._cancel_side_jobs()
        super().reject()

    def close_after_stop(self) -> None:
        QTimer.singleShot(0, self.reject)

    def _cancel_side_jobs(self) -> None:
        for name in (JOB_SCAN, JOB_PROBE, JOB_ESTIMATE):
            self.jobs.cancel(name)

    def shutdown(self) -> None:
        """The app or the main window is closing: stop everything now (the
        caller waits for the thread pool)."""
        self._cancel_side_jobs()
        self.train_page.request_stop()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if obj is self.parent() and event.type() == QEvent.Type.Close:
            self.shutdown()
        return False

    # -- reopening ----------------------------------------------------------------------
    def reopen(self) -> None:
        """Show again (Tools → Train models…): a finished or closed wizard
        starts over at the Data page; a running one is just raised."""
        if not self.isVisible() and not self.train_page.running:
            self.restart()
        self.show()
        self.raise_()
        self.activateWindow()


def open_wizard(parent=None, **kwargs) -> TrainingWizard:
    w = TrainingWizard(parent, **kwargs)
    w.show()
    return w
