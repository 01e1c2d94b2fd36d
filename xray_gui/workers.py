"""The app's one threading pattern and its one notification path.

Threading
    Every slow thing (importing torch, loading a model, decoding an image,
    prediction, Grad-CAM, a batch) is a *generator function* run by superqt's
    ``create_worker`` on Qt's global thread pool.  Each ``yield`` hands one
    result to the GUI thread (the ``yielded`` signal, delivered queued) and is
    a cancel point: ``Jobs.cancel(name)`` calls ``worker.quit()`` and the
    generator is not resumed again.  A newer job of the same *name* replaces an
    older one (its late results are dropped), so the GUI only ever shows
    results of the latest request.  ``Jobs.shutdown()`` quits everything and
    waits (window close).

    The model is shared by workers (a batch and a Grad-CAM may run at once);
    every use of it goes through ``MODEL_LOCK`` (Grad-CAM hooks the model's
    layers, so two concurrent passes would disturb each other).

Notification
    Worker errors and user-facing problems reach the user through
    ``Notifier.notify`` only: a status-bar message always, plus a dialog for
    level ``"error"``.  Tests set ``Notifier.dialogs = False`` and read
    ``Notifier.history`` instead of clicking dialogs away.
"""

from __future__ import annotations

import itertools
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from PySide6.QtCore import QObject, Qt, QThreadPool, Signal
from PySide6.QtWidgets import QMessageBox, QWidget
from superqt.utils import GeneratorWorker, create_worker

MODEL_LOCK = threading.Lock()


def locked_iter(it: Iterator) -> Iterator:
    """Advance ``it`` (which uses the model) under ``MODEL_LOCK`` one item at a time."""
    while True:
        with MODEL_LOCK:
            try:
                item = next(it)
            except StopIteration:
                return
        yield item


class ClosingGeneratorWorker(GeneratorWorker):
    """A GeneratorWorker that closes its generator when it ends (also on
    ``quit()``), so ``finally:`` blocks in the task run at once, on the worker
    thread, instead of whenever the generator is garbage-collected."""

    def work(self):
        try:
            result = super().work()
        finally:
            try:
                self._gen.close()
            except Exception:  # pragma: no cover - a finally block that raised
                pass
        if isinstance(result, RuntimeError):
            # superqt only *warns* about a RuntimeError returned by work() (it
            # assumes a deleted Qt object) and emits neither errored nor
            # finished.  torch reports out-of-memory and device failures as
            # RuntimeError, so re-type it: it then reaches the notification path.
            wrapped = TaskRuntimeError(f"{type(result).__name__}: {result}")
            wrapped.__cause__ = result
            return wrapped
        return result


class TaskRuntimeError(Exception):
    """A RuntimeError raised inside a worker task (re-typed, see above)."""


@dataclass
class Notice:
    level: str  # "info" | "warning" | "error"
    text: str
    detail: str = ""


class Notifier(QObject):
    """The one place messages for the user go (status bar + dialog)."""

    notified = Signal(object)  # Notice

    def __init__(self, parent: QWidget | None = None, *, dialogs: bool = True):
        super().__init__(parent)
        self.dialogs = dialogs
        self.history: list[Notice] = []
        self._status_bar = None
        self._dialog_parent = parent

    def attach(self, status_bar, dialog_parent: QWidget) -> None:
        self._status_bar = status_bar
        self._dialog_parent = dialog_parent

    def notify(self, text: str, level: str = "info", detail: str = "") -> Notice:
        notice = Notice(level, text, detail)
        self.history.append(notice)
        if self._status_bar is not None:
            prefix = {"error": "Error: ", "warning": "Warning: "}.get(level, "")
            self._status_bar.showMessage(prefix + text, 12000 if level != "info" else 6000)
        self.notified.emit(notice)
        if level == "error" and self.dialogs:
            box = QMessageBox(QMessageBox.Icon.Critical, "Chest X-ray Assistant", text,
                              QMessageBox.StandardButton.Ok, self._dialog_parent)
            if detail:
                box.setDetailedText(detail)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.setModal(True)
            box.open()  # window-modal, non-blocking: the event loop keeps running
        return notice

    def info(self, text: str) -> Notice:
        return self.notify(text, "info")

    def warning(self, text: str) -> Notice:
        return self.notify(text, "warning")

    def error(self, text: str, detail: str = "") -> Notice:
        return self.notify(text, "error", detail)

    def exception(self, exc: BaseException, context: str = "") -> Notice:
        """An exception from a worker: typed errors show their reason, anything
        else is a bug and shows its type plus the traceback as detail."""
        reason = getattr(exc, "reason", None)
        if reason:
            text = f"{context}: {reason}" if context else reason
            return self.error(text)
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        from training.common.formatting import exception_text

        text = (f"{context} failed unexpectedly: " if context else "Unexpected error: ") + exception_text(exc)
        return self.error(text, detail)


class Jobs(QObject):
    """Starts generator workers, one live job per name; quits them on demand."""

    busy_changed = Signal(bool)

    def __init__(self, notifier: Notifier, parent: QObject | None = None):
        super().__init__(parent)
        self.notifier = notifier
        self._live: dict[str, GeneratorWorker] = {}
        self._tokens: dict[str, int] = {}
        self._counter = itertools.count(1)
        self._closing = False

    def start(self, name: str, gen_func: Callable[..., Iterator], *args: Any,
              on_yield: Callable[[Any], None] | None = None,
              on_done: Callable[[], None] | None = None,
              on_error: Callable[[BaseException], bool] | None = None,
              context: str = "", **kwargs: Any) -> GeneratorWorker | None:
        """Run ``gen_func(*args, **kwargs)`` in a worker.

        ``on_yield(item)`` gets every yielded item on the GUI thread;
        ``on_done()`` runs once when the job ends for any reason (finished,
        cancelled, failed) unless a newer job of the same name replaced it;
        ``on_error(exc)`` may return True to say it handled the error, else the
        notifier shows it (prefixed with ``context``)."""
        if self._closing:
            return None
        self.cancel(name)
        token = next(self._counter)
        self._tokens[name] = token

        def current() -> bool:
            return not self._closing and self._tokens.get(name) == token

        def _yielded(item):
            if current() and on_yield is not None:
                on_yield(item)

        def _errored(exc):
            if not current():
                return
            if on_error is not None and on_error(exc):
                return
            self.notifier.exception(exc, context)

        def _finished():
            if self._live.get(name) is worker:
                del self._live[name]
                self.busy_changed.emit(bool(self._live))
            if current() and on_done is not None:
                on_done()

        worker = create_worker(gen_func, *args, _start_thread=False, _ignore_errors=True,
                               _worker_class=ClosingGeneratorWorker, **kwargs)
        worker.yielded.connect(_yielded)
        worker.errored.connect(_errored)
        worker.finished.connect(_finished)
        self._live[name] = worker
        self.busy_changed.emit(True)
        worker.start()
        return worker

    def cancel(self, name: str, *, keep_results: bool = False) -> bool:
        """Ask job ``name`` to stop at its next yield.  Its later results are
        dropped, unless ``keep_results``: then what it yields until it stops is
        still delivered and its ``on_done`` runs (the batch's and training's Cancel)."""
        if not keep_results:
            self._tokens.pop(name, None)
        worker = self._live.get(name)
        if worker is None:
            return False
        worker.quit()
        return True

    def running(self, name: str) -> bool:
        return name in self._live

    def worker(self, name: str) -> GeneratorWorker | None:
        return self._live.get(name)

    def shutdown(self, msecs: int = 30000) -> bool:
        """Quit every job and wait for the threads (True when all stopped)."""
        self._closing = True
        for worker in list(self._live.values()):
            worker.quit()
        return QThreadPool.globalInstance().waitForDone(msecs)
