"""Page 2 - Setup: split, recipe and hyperparameters, models, backbone start,
device, run folder, and a measured estimate of the run time.

Nothing here trains: ``validatePage`` builds a ``TrainConfig`` with the core's
``make_config`` (the same call ``xray-train`` makes) and hands it to the
Training page."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from PySide6.QtCore import QStandardPaths
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from .common import JOB_ESTIMATE, JOB_PROBE, MODEL_LABELS, MessageLabel, error_text, esc, fmt_duration
from .tasks import batches_per_epoch, estimate_task, probe_task, run_seconds, split_sizes

INIT_HELP = {
    "scratch": "Random weights. Works offline; from scratch the ResNet50 models need more images and epochs "
               "to come near the paper's accuracy.",
    "imagenet": "Torchvision's ImageNet weights, as Keras starts the paper's ResNet50. Needs the internet or the "
                "torch cache; offline and not cached, training stops with a clear message.",
    "file": "A ResNet50 weights file on this computer: torchvision .pth or .safetensors (a ResNet50 model "
            "file of this app works too).",
}

from training.common.constants import APP_DEVICES, DEVICE_LABELS  # noqa: E402
from training.common.formatting import sentence_join  # noqa: E402

DEVICE_ITEMS = tuple((k, DEVICE_LABELS[k]) for k in APP_DEVICES)

RECIPE_WORDS = {
    "weight_decay": lambda v: f"weight decay {v:g}",
    "lr_schedule": lambda v: f"{v} learning-rate schedule",
    "warmup_epochs": lambda v: f"{v} warm-up epoch{'s' if v != 1 else ''}",
    "augment": lambda v: "radiograph-safe augmentation" if v else "no augmentation",
    "balanced_sampling": lambda v: "class-balanced sampling" if v else "",
    "early_stopping": lambda v: f"early stop after {v} epochs without a better validation epoch" if v else "",
    "lstm_init": lambda v: ("ResNet50-LSTM starts from this run's ResNet50 (two-stage)" if v == "from_resnet50"
                            else f"ResNet50-LSTM backbone from {v}"),
    "threshold_rule": lambda v: ("threshold set for 95 % sensitivity on validation" if v == "sensitivity"
                                 else "threshold 0.5"),
    "half_weights": lambda v: "fp16 weights in the model file" if v else "",
}


def default_runs_dir() -> Path:
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".xray-cxr") / "runs"


def new_run_dir() -> Path:
    return default_runs_dir() / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


class SetupPage(QWizardPage):
    def __init__(self, wiz):
        super().__init__()
        self.wiz = wiz
        self.setTitle("2. Training setup")
        self.setSubTitle("Prefilled with the paper's recipe: 224 × 224 input, batch 32, Adam with learning rate "
                         "0.001, 15 epochs, an 80/10/10 split. The same settings as xray-train's options.")
        self._filled = False
        self._auto_out = True
        self._step_s: dict[str, float] = {}
        self._build_s: dict[str, float] = {}
        self._overhead_s: float | None = None
        self._estimating = False
        self.cuda_available: bool | None = None

        hyper = self._build_hyper()
        models_box = self._build_models()
        init_box = self._build_init()
        split_box = self._build_split()
        dev_box = self._build_device()
        out_box = self._build_out()
        est_box = self._build_estimate()

        self.message = MessageLabel()
        self.message.setObjectName("setupMessage")

        left = QVBoxLayout()
        left.addWidget(hyper)
        left.addWidget(models_box)
        left.addWidget(init_box)
        left.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(split_box)
        right.addWidget(dev_box)
        right.addWidget(out_box)
        right.addWidget(est_box)
        right.addStretch(1)
        cols = QHBoxLayout()
        lw, rw = QWidget(), QWidget()
        lw.setLayout(left)
        rw.setLayout(right)
        left.setContentsMargins(0, 0, 0, 0)
        right.setContentsMargins(0, 0, 0, 0)
        cols.addWidget(lw, 1)
        cols.addWidget(rw, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(cols, 1)
        lay.addWidget(self.message)

        self.recipe.currentIndexChanged.connect(lambda _i: self.apply_recipe())
        for w in (self.input_size, self.batch_size, self.epochs, *self.fracs):
            w.valueChanged.connect(self._settings_changed)
        for cb in self.model_checks.values():
            cb.toggled.connect(self._settings_changed)
        self.device.currentIndexChanged.connect(self._settings_changed)
        self.threads.valueChanged.connect(self._settings_changed)
        self.split_new.toggled.connect(self._settings_changed)
        self.split_file.textChanged.connect(self._settings_changed)
        self.init_group.buttonToggled.connect(lambda *_: self._init_changed())
        self._init_changed()

    def _build_hyper(self) -> QGroupBox:
        """The 'recipe and hyperparameters' box."""
        self.recipe = QComboBox()
        self.recipe.setObjectName("recipe")
        self.recipe.addItem("paper - the published recipe", "paper")
        self.recipe.addItem("shipped - the recipe of the app's model", "shipped")
        self.recipe_help = QLabel()
        self.recipe_help.setWordWrap(True)
        self.recipe_help.setStyleSheet("color:#666")
        self.input_size = QSpinBox()
        self.input_size.setRange(32, 1024)
        self.input_size.setSingleStep(32)
        self.input_size.setSuffix(" px")
        self.batch_size = QSpinBox()
        self.batch_size.setRange(2, 1024)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(0.00001, 0.5)
        self.lr.setSingleStep(0.0001)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        hyper = QGroupBox("Recipe and hyperparameters")
        hf = QFormLayout(hyper)
        hf.addRow("Recipe:", self.recipe)
        hf.addRow(self.recipe_help)
        hf.addRow("Input size:", self.input_size)
        hf.addRow("Batch size:", self.batch_size)
        hf.addRow("Adam learning rate:", self.lr)
        hf.addRow("Epochs (at most):", self.epochs)
        return hyper

    def _build_models(self) -> QGroupBox:
        """The 'models' box."""
        models_box = QGroupBox("Models")
        ml = QHBoxLayout(models_box)
        self.model_checks: dict[str, QCheckBox] = {}
        for arch, label in MODEL_LABELS.items():
            cb = QCheckBox(label)
            cb.setChecked(True)
            cb.setObjectName(f"model_{arch}")
            self.model_checks[arch] = cb
            ml.addWidget(cb)
        ml.addStretch(1)
        return models_box

    def _build_init(self) -> QGroupBox:
        """The 'backbone init' box."""
        init_box = QGroupBox("ResNet50 backbone starts from")
        il = QGridLayout(init_box)
        self.init_group = QButtonGroup(self)
        self.init_buttons: dict[str, QRadioButton] = {}
        self.init_file = QLineEdit()
        self.init_file.setPlaceholderText("weights file (.pth / .safetensors)")
        init_browse = QPushButton("Browse…")
        init_browse.clicked.connect(self.choose_init_file)
        self.imagenet_note = QLabel()
        for r, (key, text) in enumerate((("scratch", "Scratch"), ("imagenet", "ImageNet"),
                                         ("file", "Local weights file"))):
            rb = QRadioButton(text)
            rb.setObjectName(f"init_{key}")
            self.init_group.addButton(rb)
            self.init_buttons[key] = rb
            help_ = QLabel(INIT_HELP[key])
            help_.setWordWrap(True)
            help_.setStyleSheet("color:#666")
            il.addWidget(rb, 2 * r, 0)
            il.addWidget(help_, 2 * r + 1, 0, 1, 3)
        il.addWidget(self.imagenet_note, 2, 1, 1, 2)
        il.addWidget(self.init_file, 4, 1)
        il.addWidget(init_browse, 4, 2)
        il.setColumnStretch(1, 1)
        self.init_buttons["scratch"].setChecked(True)
        return init_box

    def _build_split(self) -> QGroupBox:
        """The 'split' box."""
        split_box = QGroupBox("Split into training / validation / test")
        sg = QGridLayout(split_box)
        self.split_new = QRadioButton("New split (stratified):")
        self.split_new.setChecked(True)
        self.split_from_file = QRadioButton("Split file:")
        self.fracs = []
        fr = QHBoxLayout()
        for v in (80, 10, 10):
            sb = QSpinBox()
            sb.setRange(1, 98)
            sb.setValue(v)
            sb.setSuffix(" %")
            self.fracs.append(sb)
            fr.addWidget(sb)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        fr.addWidget(QLabel("seed"))
        fr.addWidget(self.seed)
        fr.addStretch(1)
        self.split_file = QLineEdit()
        self.split_file.setPlaceholderText("split.csv of an earlier run (dataset,file,label,split)")
        split_browse = QPushButton("Browse…")
        split_browse.clicked.connect(self.choose_split_file)
        sg.addWidget(self.split_new, 0, 0)
        sg.addLayout(fr, 0, 1, 1, 2)
        sg.addWidget(self.split_from_file, 1, 0)
        sg.addWidget(self.split_file, 1, 1)
        sg.addWidget(split_browse, 1, 2)
        self.split_info = QLabel()
        self.split_info.setStyleSheet("color:#666")
        sg.addWidget(self.split_info, 2, 0, 1, 3)
        return split_box

    def _build_device(self) -> QGroupBox:
        """The 'device' box."""
        dev_box = QGroupBox("Where it runs")
        df = QFormLayout(dev_box)
        self.device = QComboBox()
        self.device.setObjectName("device")
        for key, text in DEVICE_ITEMS:
            self.device.addItem(text, key)
        self.threads = QSpinBox()
        self.threads.setRange(0, max(1, os.cpu_count() or 1))
        self.threads.setSpecialValueText("automatic (all cores but one)")
        df.addRow("Device:", self.device)
        df.addRow("CPU threads:", self.threads)
        return dev_box

    def _build_out(self) -> QGroupBox:
        """The 'run folder' box."""
        out_box = QGroupBox("Run folder (models, curves, report)")
        ol = QHBoxLayout(out_box)
        self.out_dir = QLineEdit()
        self.out_dir.setObjectName("outDir")
        self.out_dir.textEdited.connect(lambda _t: setattr(self, "_auto_out", False))
        out_browse = QPushButton("Browse…")
        out_browse.clicked.connect(self.choose_out_dir)
        out_new = QPushButton("New")
        out_new.setToolTip("A new, empty run folder named after the date and time")
        out_new.clicked.connect(self.fresh_out_dir)
        ol.addWidget(self.out_dir, 1)
        ol.addWidget(out_browse)
        ol.addWidget(out_new)
        return out_box

    def _build_estimate(self) -> QGroupBox:
        """The 'estimate' box."""
        est_box = QGroupBox("Estimated run time")
        el = QVBoxLayout(est_box)
        er = QHBoxLayout()
        self.estimate_button = QPushButton("Measure on this device")
        self.estimate_button.setObjectName("estimateButton")
        self.estimate_button.setToolTip("Times two training steps of each chosen model at the chosen input and "
                                        "batch size, then multiplies by batches × epochs")
        self.estimate_button.clicked.connect(self.start_estimate)
        er.addWidget(self.estimate_button)
        er.addStretch(1)
        el.addLayout(er)
        self.estimate_text = QLabel("Not measured yet.")
        self.estimate_text.setObjectName("estimateText")
        self.estimate_text.setWordWrap(True)
        el.addWidget(self.estimate_text)
        return est_box

    # -- page life --------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        if not self._filled:
            self._filled = True
            self.apply_recipe()
            from training.train.config import TrainConfig

            self.seed.setValue(TrainConfig.__dataclass_fields__["seed"].default)
            self.wiz.jobs.start(JOB_PROBE, probe_task, on_yield=self._on_probe, on_error=lambda _e: True)
        out = self.out_dir.text().strip()
        if not out or (self._auto_out and (Path(out) / "config.json").exists()):
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
        self.imagenet_note.setText("<span style='color:#1a7f37'>found in the torch cache</span>" if cached else
                                   "<span style='color:#9a6700'>not in the torch cache: needs the internet</span>")

    def _init_changed(self) -> None:
        self.init_file.setEnabled(self.init_buttons["file"].isChecked())

    def init_choice(self) -> str:
        for key, rb in self.init_buttons.items():
            if rb.isChecked():
                return self.init_file.text().strip() if key == "file" else key
        return "scratch"

    # -- file dialogs ---------------------------------------------------------------
    def choose_init_file(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "ResNet50 weights", str(Path.home()),
                                           "Weights (*.pth *.pt *.safetensors);;All files (*)")
        if f:
            self.init_file.setText(f)
            self.init_buttons["file"].setChecked(True)

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
        if self._step_s and not self._estimating:
            self._show_estimate()
        self.message.show_message("")

    # -- estimate ------------------------------------------------------------------------
    def start_estimate(self) -> None:
        models = self.chosen_models()
        if not models:
            self.estimate_text.setText("Choose at least one model.")
            return
        self._step_s = {}
        self._estimating = True
        self._est_key = self._estimate_key()
        self.estimate_button.setEnabled(False)
        self.estimate_text.setText("Measuring… (two training steps per model)")
        sizes = self.split_counts() or {}
        self._build_s, self._overhead_s = {}, None
        self.wiz.jobs.start(JOB_ESTIMATE, estimate_task, models, self.input_size.value(), self.batch_size.value(),
                            self.device.currentData(), self.thread_count(), max(sizes.get("val", 0),
                                                                                 sizes.get("test", 0), 2),
                            on_yield=self._on_estimate,
                            on_error=self._estimate_failed, on_done=self._estimate_done)

    def _estimate_key(self):
        return (tuple(self.chosen_models()), self.input_size.value(), self.batch_size.value(),
                self.device.currentData(), self.thread_count())

    def _on_estimate(self, item) -> None:
        if item[0] == "device":
            self._est_device = item[1]
        elif item[0] == "warm":
            self.estimate_text.setText(f"Measuring {MODEL_LABELS[item[1]]}…")
        elif item[0] == "step":
            self._step_s[item[1]] = item[2]
            self._build_s[item[1]] = item[3]
            self._show_estimate()
        elif item[0] == "overhead":
            self._overhead_s = item[1]
            self._show_estimate()

    def _estimate_failed(self, exc) -> bool:
        self._step_s = {}
        self.estimate_text.setText(f"<span style='color:#b00020'>Could not measure: {esc(error_text(exc))}</span>")
        return True

    def _estimate_done(self) -> None:
        self._estimating = False
        self.estimate_button.setEnabled(True)
        if self._step_s:
            self._show_estimate()

    def estimate_seconds(self) -> dict[str, float]:
        """Estimated seconds per model from the measured step times."""
        sizes = self.split_counts() or {"train": 0, "val": 0}
        batches = batches_per_epoch(sizes["train"], self.batch_size.value())
        val_b = batches_per_epoch(sizes["val"], 64)
        fixed = self._overhead_s or 0.0
        return {a: run_seconds(s, batches, self.epochs.value(), val_b, fixed + self._build_s.get(a, 0.0))
                for a, s in self._step_s.items()}

    def _show_estimate(self) -> None:
        sizes = self.split_counts() or {"train": 0}
        batches = batches_per_epoch(sizes["train"], self.batch_size.value())
        est = self.estimate_seconds()
        lines = []
        for arch, s in self._step_s.items():
            lines.append(f"{MODEL_LABELS[arch]}: {s:.2f} s per step × {batches} batches × {self.epochs.value()} "
                         f"epochs, with validation and testing ≈ <b>{fmt_duration(est[arch])}</b>")
        total = sum(est.values())
        n_img = sum((self.wiz.state.counts or {}).values())
        if self.wiz.state.decode_s:
            read = self.wiz.state.decode_s * n_img / min(4, os.cpu_count() or 1)
            lines.append(f"Reading {n_img} images: about {fmt_duration(read)}")
            total += read
        head = f"Total: about <b>{fmt_duration(total)}</b> on {esc(getattr(self, '_est_device', ''))}"
        if self._estimate_key() != getattr(self, "_est_key", None):
            head += " <span style='color:#9a6700'>(settings changed: measure again)</span>"
        elif self._estimating:
            head += " (still measuring…)"
        self.estimate_text.setText(head + "<br>" + "<br>".join(lines))
        self.wiz.state.estimate_s = est

    # -- validation -------------------------------------------------------------------------
    def build_config(self):
        """The TrainConfig for these settings (``make_config``, as xray-train).
        Raises XrayError with the reason when a setting cannot be used."""
        from training.common.errors import DataError
        from training.train.config import make_config

        models = self.chosen_models()
        if not models:
            raise DataError("Choose at least one model to train.")
        if sum(sb.value() for sb in self.fracs) != 100 and self.split_new.isChecked():
            raise DataError("The split percentages must add up to 100 %.")
        init = self.init_choice()
        if self.init_buttons["file"].isChecked():
            if not init:
                raise DataError("Choose the weights file, or start from scratch.")
            if not Path(init).is_file():
                raise DataError(f"Weights file not found: {init}")
            init = str(Path(init).resolve())
        split_file = ""
        if self.split_from_file.isChecked():
            split_file = self.split_file.text().strip()
            if not split_file or not Path(split_file).is_file():
                raise DataError("Choose an existing split file (split.csv of an earlier run), or make a new split.")
            split_file = str(Path(split_file).resolve())
        out = self.out_dir.text().strip()
        if not out:
            raise DataError("Choose a run folder.")
        cfg = make_config([self.wiz.state.data_dir], str(Path(out).expanduser().resolve()),
                          self.recipe.currentData(), models=models, input_size=self.input_size.value(),
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
        self.wiz.jobs.cancel(JOB_ESTIMATE)
        self._estimating = False
        self.estimate_button.setEnabled(True)
        self.wiz.state.config = cfg
        self.wiz.state.resuming = (Path(cfg.out_dir) / "config.json").exists()
        return True
