"""Folder / multi-file mode: find the images (recursive), classify them in one
worker (results and thumbnails arrive one by one), cancel, export CSV."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from .batch_table import BatchPanel
from .tasks import batch_task

# The worker's results arrive in bursts (a batch of 16 is classified at once).
# They are queued and put in the table a few milliseconds' worth at a time, so
# the event loop runs in between: handled in one go, a burst held the GUI thread
# for 45-90 ms (bench/bench_gui_responsiveness.py).
DRAIN_SLICE_S = 0.008


class BatchController(QObject):
    started = Signal(int)      # number of files
    resultAdded = Signal(int)  # source row
    finished = Signal(str)     # "done" | "cancelled" | "failed"

    def __init__(self, panel: BatchPanel, jobs, notifier, parent=None):
        super().__init__(parent)
        self.panel, self.jobs, self.notifier = panel, jobs, notifier
        self.classifier = None  # the model that made the rows
        self.cancelled = False
        self.state = "idle"
        self._pending: deque = deque()  # worker items not yet shown
        self._drain = QTimer(self, singleShot=True, interval=0)
        self._drain.timeout.connect(self._drain_some)
        panel.cancelRequested.connect(self.cancel)

    @property
    def running(self) -> bool:
        return self.jobs.running("batch")

    def start(self, paths, classifier) -> bool:
        if classifier is None:
            self.notifier.warning("No model loaded — open one (File → Open Model…) before classifying a folder.")
            return False
        from training.model.audit import model_stamp

        self.classifier = classifier
        self.cancelled = False
        self.state = "running"
        self.panel.model.batch_stamp = model_stamp(classifier.loaded)
        self.panel.model.set_current_model(self.panel.model.batch_stamp)
        self.panel.start([], [])
        self.panel.eta.setText("looking for images…")
        self._pending.clear()  # whatever an earlier batch left belongs to its table
        self.jobs.start("batch", batch_task, classifier, [str(p) for p in paths],
                        on_yield=self._queue, on_done=self._on_done, context="Batch")
        return True

    def cancel(self) -> None:
        if self.jobs.cancel("batch", keep_results=True):
            self.cancelled = True
            self.panel.cancel.setEnabled(False)
            self.panel.eta.setText("cancelling…")

    def _queue(self, item) -> None:
        self._pending.append(item)
        if not self._drain.isActive():
            self._drain.start()

    def _drain_some(self) -> None:
        """Show queued items for at most ``DRAIN_SLICE_S``, then let the event loop run."""
        end = time.perf_counter() + DRAIN_SLICE_S
        while self._pending and time.perf_counter() < end:
            self._on_item(self._pending.popleft())
        if self._pending:
            self._drain.start()

    def _flush(self) -> None:
        self._drain.stop()
        while self._pending:
            self._on_item(self._pending.popleft())

    def _on_item(self, item) -> None:
        kind = item[0]
        if kind == "found":
            _, files, skipped, infos = item
            self.panel.start(files, skipped, infos)
            self.started.emit(len(files))
            if skipped:
                self.notifier.info(f"{len(files)} images found; {len(skipped)} other files skipped.")
        elif kind == "result":
            _, i, pred, thumb = item
            self.panel.model.set_result(i, pred, thumb)
            self.panel.show_done(self.panel.model.done_count())  # a Cancel may come before "progress"
            self.resultAdded.emit(i)
        elif kind == "progress":
            _, done, total, left = item
            self.panel.set_progress(done, total, left)

    def _on_done(self) -> None:
        self._flush()  # every result is in the table before the batch is called finished
        rows = self.panel.model.rows
        done = self.panel.model.done_count()
        bad = sum(r.status in ("refused", "error") for r in rows)
        total = sum(r.status != "skipped" for r in rows)
        if self.cancelled:
            self.state = "cancelled"
            left = self.panel.model.mark_unprocessed("cancelled")
            text = f"cancelled after {done} of {total}" + (f"; {left} not classified" if left else "")
        elif done < total:
            self.state = "failed"
            left = self.panel.model.mark_unprocessed("the batch stopped")
            text = f"stopped after {done} of {total}; {left} not classified"
        else:
            self.state = "done"
            text = f"{done} done" + (f", {bad} not classified" if bad else "")
        self.panel.finish(text, done)
        self.notifier.info(f"Batch {text}.")
        self.finished.emit(self.state)

    def relabel(self, classifier) -> None:
        """New threshold: relabel the rows made by this model (stale rows stay as they were)."""
        if classifier is not None:
            self.panel.model.relabel(classifier)

    def model_changed(self, classifier) -> None:
        """Another model is loaded: rows computed by a previous model become stale."""
        from training.model.audit import model_stamp

        self.panel.model.set_current_model(None if classifier is None else model_stamp(classifier.loaded))

    def export_csv(self, path) -> Path:
        """Write the rows as shown (sorted and filtered) as CSV, atomically."""
        from training.common import atomic
        from training.inference.result import CSV_COLUMNS

        text = self.panel.model.csv_text(self.panel.visible_source_rows(), CSV_COLUMNS)
        out = Path(path)
        atomic.write_text(out, text)
        return out
