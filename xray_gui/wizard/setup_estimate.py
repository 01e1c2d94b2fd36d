"""The Setup page's "Estimated run time" box: *Measure on this device* times
two training steps of each chosen model in a worker (``tasks.estimate_task``),
then scales them by batches × epochs (``tasks.run_seconds``); see WIZARD.md,
"Run-time estimate"."""

from __future__ import annotations

import os

from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from .common import JOB_ESTIMATE, MODEL_LABELS, error_text, esc, fmt_duration
from .tasks import batches_per_epoch, estimate_task, run_seconds


class RunEstimate(QGroupBox):
    """Reads the settings from ``page`` (the Setup page); keeps the measured
    step times (``step_s``), build times and the fixed overhead."""

    def __init__(self, page):
        super().__init__("Estimated run time")
        self.page = page
        self.step_s: dict[str, float] = {}
        self.build_s: dict[str, float] = {}
        self.overhead_s: float | None = None
        self.measuring = False
        self._key = None  # the settings measured
        self._device = ""
        el = QVBoxLayout(self)
        er = QHBoxLayout()
        self.button = QPushButton("Measure on this device")
        self.button.setObjectName("estimateButton")
        self.button.setToolTip("Times two training steps of each chosen model at the chosen input and "
                               "batch size, then multiplies by batches × epochs")
        self.button.clicked.connect(self.start)
        er.addWidget(self.button)
        er.addStretch(1)
        el.addLayout(er)
        self.text = QLabel("Not measured yet.")
        self.text.setObjectName("estimateText")
        self.text.setWordWrap(True)
        el.addWidget(self.text)

    def settings_key(self):
        """What the step time depends on: models, input and batch size, device, threads."""
        p = self.page
        return (tuple(p.chosen_models()), p.input_size.value(), p.batch_size.value(), p.device.currentData(),
                p.thread_count())

    def start(self) -> None:
        p = self.page
        models = p.chosen_models()
        if not models:
            self.text.setText("Choose at least one model.")
            return
        self.step_s = {}
        self.measuring = True
        self._key = self.settings_key()
        self.button.setEnabled(False)
        self.text.setText("Measuring… (two training steps per model)")
        sizes = p.split_counts() or {}
        self.build_s, self.overhead_s = {}, None
        p.wiz.jobs.start(JOB_ESTIMATE, estimate_task, models, p.input_size.value(), p.batch_size.value(),
                         p.device.currentData(), p.thread_count(), max(sizes.get("val", 0), sizes.get("test", 0), 2),
                         on_yield=self._on_item, on_error=self._failed, on_done=self._done)

    def stop(self) -> None:
        """The page is left: a measurement still running is dropped."""
        self.page.wiz.jobs.cancel(JOB_ESTIMATE)
        self.measuring = False
        self.button.setEnabled(True)

    def settings_changed(self) -> None:
        if self.step_s and not self.measuring:
            self.show_estimate()

    def _on_item(self, item) -> None:
        if item[0] == "device":
            self._device = item[1]
        elif item[0] == "warm":
            self.text.setText(f"Measuring {MODEL_LABELS[item[1]]}…")
        elif item[0] == "step":
            self.step_s[item[1]] = item[2]
            self.build_s[item[1]] = item[3]
            self.show_estimate()
        elif item[0] == "overhead":
            self.overhead_s = item[1]
            self.show_estimate()

    def _failed(self, exc) -> bool:
        self.step_s = {}
        self.text.setText(f"<span style='color:#b00020'>Could not measure: {esc(error_text(exc))}</span>")
        return True

    def _done(self) -> None:
        self.measuring = False
        self.button.setEnabled(True)
        if self.step_s:
            self.show_estimate()

    def seconds(self) -> dict[str, float]:
        """Estimated seconds per model from the measured step times."""
        p = self.page
        sizes = p.split_counts() or {"train": 0, "val": 0}
        batches = batches_per_epoch(sizes["train"], p.batch_size.value())
        val_b = batches_per_epoch(sizes["val"], 64)
        fixed = self.overhead_s or 0.0
        return {a: run_seconds(s, batches, p.epochs.value(), val_b, fixed + self.build_s.get(a, 0.0))
                for a, s in self.step_s.items()}

    def show_estimate(self) -> None:
        p = self.page
        sizes = p.split_counts() or {"train": 0}
        batches = batches_per_epoch(sizes["train"], p.batch_size.value())
        est = self.seconds()
        lines = []
        for arch, s in self.step_s.items():
            lines.append(f"{MODEL_LABELS[arch]}: {s:.2f} s per step × {batches} batches × {p.epochs.value()} "
                         f"epochs, with validation and testing ≈ <b>{fmt_duration(est[arch])}</b>")
        total = sum(est.values())
        state = p.wiz.state
        n_img = sum((state.counts or {}).values())
        if state.decode_s:
            read = state.decode_s * n_img / min(4, os.cpu_count() or 1)
            lines.append(f"Reading {n_img} images: about {fmt_duration(read)}")
            total += read
        head = f"Total: about <b>{fmt_duration(total)}</b> on {esc(self._device)}"
        if self.settings_key() != self._key:
            head += " <span style='color:#9a6700'>(settings changed: measure again)</span>"
        elif self.measuring:
            head += " (still measuring…)"
        self.text.setText(head + "<br>" + "<br>".join(lines))
        state.estimate_s = est
