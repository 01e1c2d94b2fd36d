"""Page 2 - Setup: split, recipe and hyperparameters, models, backbone start,
device, run folder, and a measured estimate of the run time.

Nothing here trains: ``validatePage`` builds a ``TrainConfig`` with the core's
``make_config`` (the same call ``xray-train`` makes; its ``validate`` refuses
a setting that cannot be used) and hands it to the Training page.  The form's
boxes are built in ``setup_form``, the backbone box is ``backbone_box``'s and
the run-time estimate ``setup_estimate``'s."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QVBoxLayout, QWidget, QWizardPage

from training.common.formatting import sentence_join
from training.train import run_folder

from . import setup_form
from .backbone_box import BackboneBox
from .common import JOB_PROBE, MessageLabel, error_text, esc
from .setup_estimate import RunEstimate
from .setup_form import RECIPE_WORDS, default_runs_dir, new_run_dir
from .tasks import probe_task, split_sizes


class SetupPage(QWizardPage):
    def __init__(self, wiz):
        super().__init__()
        self.wiz = wiz
        self.setTitle("2. Training setup")
        self.setSubTitle("Prefilled with the paper's recipe: 224 × 224 input, batch 32, Adam with learning rate "
                         "0.001, 15 epochs, an 80/10/10 split. The same settings as xray-train's options.")
        self._filled = False
        self._auto_out = True
        self.cuda_available: bool | None = None

        hyper = setup_form.hyper_box(self)
        models_box = setup_form.models_box(self)
        self.backbone = BackboneBox()
        self.init_group, self.init_buttons = self.backbone.group, self.backbone.buttons
        self.init_file, self.imagenet_note = self.backbone.file, self.backbone.imagenet_note
        split_box = setup_form.split_box(self)
        dev_box = setup_form.device_box(self)
        out_box = setup_form.run_folder_box(self)
        self.estimate = RunEstimate(self)
        self.estimate_button, self.estimate_text = self.estimate.button, self.estimate.text

        self.message = MessageLabel()
        self.message.setObjectName("setupMessage")
        self._lay_out((hyper, models_box, self.backbone), (split_box, dev_box, out_box, self.estimate))

        self.recipe.currentIndexChanged.connect(lambda _i: self.apply_recipe())
        for w in (self.input_size, self.batch_size, self.epochs, *self.fracs):
            w.valueChanged.connect(self._settings_changed)
        for cb in self.model_checks.values():
            cb.toggled.connect(self._settings_changed)
        self.device.currentIndexChanged.connect(self._settings_changed)
        self.threads.valueChanged.connect(self._settings_changed)
        self.split_new.toggled.connect(self._settings_changed)
        self.split_file.textChanged.connect(self._settings_changed)

    def _lay_out(self, left_boxes, right_boxes) -> None:
        """Two columns of boxes, the message under them."""
        cols = QHBoxLayout()
        for boxes in (left_boxes, right_boxes):
            column = QVBoxLayout()
            column.setContentsMargins(0, 0, 0, 0)
            for box in boxes:
                column.addWidget(box)
            column.addStretch(1)
            w = QWidget()
            w.setLayout(column)
            cols.addWidget(w, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(cols, 1)
        lay.addWidget(self.message)

    # -- the estimate's state (tests and tools/wizard_shots.py wait on it) ---------------
    @property
    def _estimating(self) -> bool:
        return self.estimate.measuring

    @property
    def _step_s(self) -> dict[str, float]:
        return self.estimate.step_s

    @property
    def _overhead_s(self) -> float | None:
        return self.estimate.overhead_s

    def start_estimate(self) -> None:
        self.estimate.start()

    def estimate_seconds(self) -> dict[str, float]:
        """Estimated seconds per model from the measured step times."""
        return self.estimate.seconds()

    # -- page life --------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        if not self._filled:
            self._filled = True
            self.apply_recipe()
            from training.train.config import TrainConfig

            self.seed.setValue(TrainConfig.__dataclass_fields__["seed"].default)
            self.wiz.jobs.start(JOB_PROBE, probe_task, on_yield=self._on_probe, on_error=lambda _e: True)
        out = self.out_dir.text().strip()
        if not out or (self._auto_out and run_folder.config_file(out).exists()):
            self.fresh_out_dir()
        self._settings_changed()

    def fresh_out_dir(self) -> None:
        self.out_dir.setText(str(new_run_dir()))
        self._auto_out = True

    def apply_recipe(self) -> None:
        """Refill the hyperparameters with the chosen recipe's values."""
        from training.train.config import RECIPES, TrainConfig

        name = self.recipe.currentData()
        fields = TrainConfig.__dataclass_fields__
        vals = {k: RECIPES[name].get(k, fields[k].default) for k in ("input_size", "batch_size", "lr", "epochs")}
        self.input_size.setValue(vals["input_size"])
        self.batch_size.setValue(vals["batch_size"])
        self.lr.setValue(vals["lr"])
        self.epochs.setValue(vals["epochs"])
        extras = [RECIPE_WORDS[k](v) for k, v in RECIPES[name].items() if k in RECIPE_WORDS]
        extras = [e for e in extras if e]
        if name == "paper":
            self.recipe_help.setText("As published: no augmentation, constant learning rate; the epoch with the "
                                     "best validation accuracy is kept.")
        else:
            self.recipe_help.setText("Paper's settings plus: " + sentence_join(extras))
        self._settings_changed()

    def _on_probe(self, item) -> None:
        _, cuda, cached = item
        self.cuda_available = cuda
        idx = self.device.findData("cuda")
        model_item = self.device.model().item(idx)
        if model_item is not None:
            model_item.setEnabled(cuda)
            if not cuda:
                model_item.setText("NVIDIA GPU (CUDA) - not available on this computer")
        self.backbone.show_cached(cached)

    def init_choice(self) -> str:
        return self.backbone.choice()

    # -- file dialogs ---------------------------------------------------------------
    def choose_init_file(self) -> None:
        self.backbone.choose_file()

    def choose_split_file(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Split file", str(default_runs_dir()), "CSV (*.csv);;All files (*)")
        if f:
            self.split_file.setText(f)
            self.split_from_file.setChecked(True)

    def choose_out_dir(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Run folder", str(default_runs_dir().parent))
        if d:
            self.out_dir.setText(d)
            self._auto_out = False

    # -- values ------------------------------------------------------------------------
    def chosen_models(self) -> list[str]:
        return [a for a, cb in self.model_checks.items() if cb.isChecked()]

    def fractions(self) -> tuple[float, float, float]:
        return tuple(sb.value() / 100.0 for sb in self.fracs)

    def thread_count(self) -> int:
        return self.threads.value() or max(1, (os.cpu_count() or 2) - 1)

    def split_counts(self) -> dict[str, int] | None:
        counts = self.wiz.state.counts or {}
        if self.split_from_file.isChecked():
            path = self.split_file.text().strip()
            if not path or not Path(path).is_file():
                return None
            try:
                from training.train.data import read_manifest

                manifest = read_manifest(path)
            except Exception:
                return None
            out = {"train": 0, "val": 0, "test": 0}
            for _label, split in manifest.values():
                out[split] = out.get(split, 0) + 1
            return out
        if sum(sb.value() for sb in self.fracs) != 100:
            return None
        return split_sizes(counts, self.fractions())

    def _settings_changed(self, *_args) -> None:
        sizes = self.split_counts()
        if sizes is None:
            self.split_info.setText("The split percentages must add up to 100 %." if self.split_new.isChecked()
                                    else "Choose a split file.")
        else:
            self.split_info.setText("About " + ", ".join(f"{v} {k}" for k, v in sizes.items()) + " images.")
        self.estimate.settings_changed()
        self.message.show_message("")

    # -- validation -------------------------------------------------------------------------
    def build_config(self):
        """The TrainConfig for these settings (``make_config``, as xray-train;
        ``TrainConfig.validate`` checks them).  Raises XrayError with the reason
        when a setting cannot be used; only the form's own gaps (a radio
        button chosen without its file) are caught here."""
        from training.common.errors import DataError
        from training.train.config import make_config

        init = self.init_choice()
        if self.backbone.file_chosen():
            if not init:
                raise DataError("Choose the weights file, or start from scratch.")
            init = str(Path(init).resolve())
        split_file = ""
        if self.split_from_file.isChecked():
            split_file = self.split_file.text().strip()
            if not split_file:
                raise DataError("Choose an existing split file (split.csv of an earlier run), or make a new split.")
            split_file = str(Path(split_file).resolve())
        out = self.out_dir.text().strip()
        cfg = make_config([self.wiz.state.data_dir], str(Path(out).expanduser().resolve()) if out else "",
                          self.recipe.currentData(), models=self.chosen_models(), input_size=self.input_size.value(),
                          batch_size=self.batch_size.value(), lr=float(self.lr.value()), epochs=self.epochs.value(),
                          init=init, seed=self.seed.value(), split=self.fractions(), split_file=split_file,
                          device=self.device.currentData(), threads=self.thread_count())
        cfg.check_run_folder()  # the core's rule: another run's folder is refused
        return cfg

    def validatePage(self) -> bool:  # noqa: N802
        try:
            cfg = self.build_config()
        except Exception as exc:  # XrayError: plain reason; anything else: one line
            self.message.show_message(esc(error_text(exc)), "error")
            return False
        self.estimate.stop()
        self.wiz.state.config = cfg
        self.wiz.state.resuming = run_folder.config_file(cfg.out_dir).exists()
        return True
