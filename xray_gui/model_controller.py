"""The loaded model: load/verify a model file in a worker (torch is imported
there), keep the previous model when a new one fails, device choice, and the
decision threshold (per model file, remembered).

Which model becomes the default for the next start is decided by the caller
(``remember``): the confirmation dialog (``model_switch.py``) offers "this
session only" or "make default".  A model used for this session only stays
so when it is reloaded on another device."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from .tasks import load_model_task


class ModelController(QObject):
    changed = Signal(object)   # the new Classifier
    loading = Signal(str)      # a progress line ("loading model…")
    failed = Signal(str)       # the reason; the previous model is kept
    settled = Signal()         # a load attempt ended (either way)

    def __init__(self, settings, jobs, notifier, parent=None):
        super().__init__(parent)
        self.settings, self.jobs, self.notifier = settings, jobs, notifier
        self.classifier = None
        self.path: Path | None = None
        self.device = settings.device
        self.precision = settings.precision
        self.cuda_available: bool | None = None
        self.last_error = ""
        self.remembered = False  # the loaded model is the one remembered for the next start
        self._loading = False

    @property
    def busy(self) -> bool:
        """A model file is being loaded (the current model, if any, still works)."""
        return self._loading

    def status_text(self) -> str:
        if self.classifier is None:
            return "no model loaded — open one"
        return f"{self.classifier.loaded.display_name} · {self.classifier.device_type.upper()}"

    def load(self, path, device: str | None = None, *, remember: bool = True, remember_device: bool | None = None,
             context: str = "") -> None:
        """Load ``path`` on ``device`` in a worker. On success it becomes the
        current model; on failure the reason is shown and the old one stays.
        ``remember``: it becomes the model of the next start (and its device,
        unless ``remember_device`` says otherwise)."""
        remember_device = remember if remember_device is None else remember_device
        path = Path(path)
        device = device or self.device
        self._loading = True
        self.loading.emit(f"loading model {path.name}…")

        def on_item(item):
            if item[0] == "status":
                self.loading.emit(item[1])
            elif item[0] == "loaded":
                self._loading = False
                self._loaded(item[1], item[2], path, device, remember, remember_device)

        def on_error(exc) -> bool:
            self._loading = False
            from training.common.formatting import exception_text

            reason = exception_text(exc)
            self.last_error = reason
            kept = (f" The previous model ({self.classifier.loaded.display_name}) is still in use."
                    if self.classifier is not None else "")
            self.notifier.exception(exc, context or f"Could not open the model {path.name}")
            self.failed.emit(reason + kept)
            return True

        def on_done():
            self._loading = False
            self.settled.emit()

        self.jobs.start("model", load_model_task, str(path), device, self.precision, on_yield=on_item,
                        on_error=on_error, on_done=on_done)

    def use(self, classifier, path=None, *, remember: bool = False) -> None:
        """Adopt an already loaded Classifier (tests, or a model handed over by
        another part of the program)."""
        from training.common.device import cuda_available

        self._loaded(classifier, cuda_available(),
                     Path(path or classifier.loaded.path or "model"), self.device, remember)

    def _loaded(self, clf, cuda: bool | None, path: Path, device: str, remember: bool,
                remember_device: bool | None = None) -> None:
        self.cuda_available = cuda
        self.classifier, self.path, self.device = clf, path, device
        saved = self.settings.threshold_for(str(path))
        if saved is not None:
            try:
                clf.threshold = saved
            except Exception:  # an out-of-range value in the settings file
                self.settings.set_threshold_for(str(path), None)
        if remember:
            self.settings.model_path = str(path)
        if remember if remember_device is None else remember_device:
            self.settings.device = device
        self.remembered = bool(remember) or self.settings.model_path == str(path)
        self.notifier.info(f"Model loaded: {clf.loaded.display_name} on {clf.device_type}")
        self.changed.emit(clf)
        settle_memory()

    def set_device(self, device: str) -> None:
        """Reload the current model on another device (kept on failure)."""
        if self.path is None:
            self.device = device
            self.settings.device = device
            return
        # the device is a setting of its own; the model stays "this session only" if it was
        self.load(self.path, device, remember=self.remembered, remember_device=True,
                  context=f"Could not use the device '{device}'")

    def set_precision(self, precision: str, *, reload: bool = True) -> None:
        """Settings → Precision: remembered, and the current model reloaded with it (kept on failure)."""
        self.precision = precision
        self.settings.precision = precision
        if reload and self.path is not None:
            self.load(self.path, self.device, remember=self.remembered, remember_device=False,
                      context=f"Could not use the precision '{precision}'")

    # -- threshold ---------------------------------------------------------------
    def set_threshold(self, value: float) -> bool:
        if self.classifier is None:
            return False
        try:
            self.classifier.threshold = value
        except Exception as exc:  # XrayError from the core's validation
            self.notifier.exception(exc, "Threshold")
            return False
        self.settings.set_threshold_for(str(self.path), value)
        return True

    def reset_threshold(self) -> float | None:
        if self.classifier is None:
            return None
        self.classifier.threshold = float(self.classifier.info.threshold)
        self.settings.set_threshold_for(str(self.path), None)
        return self.classifier.threshold


def settle_memory() -> None:
    """After a model load: collect once, then move every object alive now (Qt, torch, the model) out of
    the cyclic garbage collector's way (``gc.freeze``), so its full collections stay short.  Measured
    (``bench/bench_gui_latency.py``): without it a full collection fell inside one image open in six and
    delayed its prediction by 0.2 s.  The previous freeze is undone first, so a replaced model is freed."""
    import gc

    gc.unfreeze()
    gc.collect()
    gc.freeze()
