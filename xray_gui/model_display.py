"""The loaded model as the main window shows it: the status bar's model text,
the side panel's model box and threshold, the device menu's tick, the viewer's
placeholder; the threshold edits; which model file is loaded at start.  The
model itself (loading in a worker, device, threshold) is ``model_controller``'s."""

from __future__ import annotations

from pathlib import Path

NO_MODEL_PLACEHOLDER = ("No model loaded — open one (File → Open Model…, Ctrl+M).\n"
                        "Images can still be viewed: Ctrl+O or drop files here.")
READY_PLACEHOLDER = "Open a chest X-ray (Ctrl+O) or drop files or folders here"


class ModelDisplay:
    """Shows MainWindow ``window``'s ``models`` (a ``ModelController``) in its widgets."""

    def __init__(self, window):
        self.w = window
        self.models = window.models

    def start(self, explicit: str | None = None) -> None:
        """Load ``explicit``, else the remembered model (falling back to the
        shipped default when it fails), else the shipped default."""
        from training.common.resources import default_model_path

        models = self.models
        if explicit:
            models.load(explicit, remember=False)
            return
        default = default_model_path()
        remembered = self.w.settings.model_path
        if remembered and Path(remembered).is_file():
            if default is not None and Path(remembered) != default:
                pending = [True]  # fall back once, only for this first load

                def fallback(_reason):
                    if pending:
                        pending.clear()
                        models.load(default)
                models.failed.connect(fallback)
                models.changed.connect(lambda _c: pending.clear())
            models.load(remembered)
        elif default is not None:
            models.load(default)
        else:
            self.show_state()

    # -- states ------------------------------------------------------------------------
    def loading(self, text: str) -> None:
        self.w.images.model_pending = True
        self.w.model_status.setText(text)
        if self.models.classifier is None:
            self.w.pred_panel.set_model_text(text, ready=False)

    def show_state(self) -> None:
        """The model's state once no load is running."""
        w, models = self.w, self.models
        if models.busy:
            return
        w.images.model_pending = False
        text = models.status_text()
        w.model_status.setText(text)
        w.pred_panel.set_model_text(text if models.classifier is None else self.details(),
                                    ready=models.classifier is not None)
        if models.classifier is None:
            w.viewer.set_placeholder(NO_MODEL_PLACEHOLDER)

    def details(self) -> str:
        c = self.models.classifier
        from training.common.constants import ARCH_LABELS

        self.w.pred_panel.model_text.setToolTip(str(c.loaded.path or ""))
        kind = ""
        if getattr(c, "multiclass", False):  # model v2: say what else its results show
            kind = (f"{len(c.info.class_names)} classes" + (" + lesion map" if getattr(c, "has_lesion_map", False)
                                                            else "") + ", ")
        return (f"<b>{c.loaded.display_name}</b><br>{ARCH_LABELS.get(c.info.arch, c.info.arch)}, {kind}"
                f"{c.info.input_size} px input, running on {c.device_type.upper()}")

    def choose_device(self, device: str) -> None:
        """Settings → Device: reload the model on ``device`` (a failure keeps the old one)."""
        if device != self.models.device or self.models.classifier is None:
            self.models.set_device(device)

    def tick_device(self) -> None:
        """The device menu ticks the device the model runs on."""
        actions = self.w.device_actions
        actions.get(self.models.device, actions["auto"]).setChecked(True)

    def model_changed(self, clf) -> None:
        w = self.w
        w.pred_panel.set_threshold(clf.threshold)
        self.tick_device()
        if self.models.cuda_available is False:
            w.device_actions["cuda"].setEnabled(False)
            w.device_actions["cuda"].setText("NVIDIA GPU (CUDA) — not available on this computer")
        w.viewer.set_placeholder(READY_PLACEHOLDER)

    # -- threshold -----------------------------------------------------------------------
    def threshold_edited(self, value: float) -> None:
        if self.models.set_threshold(value):
            self.w.images.relabel()
            self.w.batch.relabel(self.models.classifier)

    def threshold_reset(self) -> None:
        t = self.models.reset_threshold()
        if t is not None:
            self.w.pred_panel.set_threshold(t)
            self.w.images.relabel()
            self.w.batch.relabel(self.models.classifier)
