"""``xray-gui --screenshot OUT.png [FILE]``: load the model, open FILE (or a
folder with the hidden ``--screenshot-batch DIR``), wait for the prediction
and the heatmap (or for a Normal result, whose heatmap is not shown by default), save ``window.grab()`` and quit.  Exit code 0 on success;
1 with a message on stderr otherwise (no model, refused file, timeout...)."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication

SETTLE_MS = 400  # let layouts and the last repaint settle before grabbing


class Screenshot(QObject):
    def __init__(self, win, out: Path, *, file=None, batch_dir=None, model=None, timeout_s: float = 600.0):
        super().__init__(win)
        self.win, self.out, self.file, self.batch_dir, self.model = win, out, file, batch_dir, model
        self.exit_code = 1
        self._done = False
        self._failure = ""
        self._timer = QTimer(self, singleShot=True, interval=int(timeout_s * 1000))
        self._timer.timeout.connect(lambda: self.fail(f"timed out after {timeout_s:g} s"))

    def start(self) -> None:
        w = self.win
        w.models.changed.connect(self._model_ready)
        w.models.failed.connect(lambda reason: self.fail(f"the model could not be loaded: {reason}"))
        w.notifier.notified.connect(self._notice)
        w.images.heatmapShown.connect(lambda _p: self._grab_soon())
        w.images.heatmapWithheld.connect(lambda _p: self._grab_soon())  # a Normal result: no heatmap by default
        w.images.refusalShown.connect(self._refused)
        w.batch.finished.connect(self._batch_done)
        self._timer.start()
        w.start_model(self.model)
        if w.models.classifier is None and not w.models.busy:
            self.fail("no model loaded — pass --model M (no default model is installed)")

    def _model_ready(self, _clf) -> None:
        if self._done:
            return
        if self.batch_dir:
            w = self.win
            w.show_batch_table()
            w.open_batch([self.batch_dir])
        elif self.file:
            self.win.open_paths([self.file])
        else:
            self._grab_soon()

    def _batch_done(self, state: str) -> None:
        if state != "done":
            self.fail(f"the batch ended: {state}")
            return
        rows = self.win.batch_panel.model.rows
        first_ok = next((i for i, r in enumerate(rows) if r.status == "ok"), None)
        if first_ok is None:
            self._grab_soon()
            return
        view = self.win.batch_panel.view
        proxy = self.win.batch_panel.proxy
        if not any(r.info is not None for r in rows):  # studies stay in reading order (grouped)
            view.sortByColumn(3, Qt.SortOrder.AscendingOrder)  # by P(COVID): files not classified first
        idx = proxy.mapFromSource(self.win.batch_panel.model.index(first_ok, 1))
        view.selectRow(idx.row())

    def _notice(self, notice) -> None:
        if notice.level == "error":
            self.fail(notice.text)

    def _refused(self, reason: str) -> None:
        if self.batch_dir:
            return
        self._failure = f"{self.file} was not classified: {reason}"
        self._grab_soon()  # the screenshot shows the refusal; exit code says it failed

    def _grab_soon(self) -> None:
        if not self._done:
            QTimer.singleShot(SETTLE_MS, self._grab)

    def _grab(self) -> None:
        if self._done:
            return
        from training.common import atomic

        QApplication.processEvents()
        pix = self.win.grab()
        try:
            atomic.write_with(self.out, lambda tmp: _save(pix, tmp))
        except (OSError, RuntimeError) as exc:
            self.fail(f"cannot write {self.out}: {exc}")
            return
        if self._failure:
            self.fail(self._failure + f" (screenshot written to {self.out})")
            return
        self._finish(0)

    def fail(self, message: str) -> None:
        if self._done:
            return
        print(f"xray-gui: error: {message}", file=sys.stderr)
        self._finish(1)

    def _finish(self, code: int) -> None:
        self._done = True
        self.exit_code = code
        self._timer.stop()
        self.win.close()  # stops workers
        QTimer.singleShot(0, QApplication.instance().quit)  # also works before exec() started


def _save(pix, tmp: Path) -> None:
    if not pix.save(str(tmp), "PNG"):
        raise RuntimeError("Qt could not encode the PNG")
