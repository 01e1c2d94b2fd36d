"""The Setup page's form: the boxes for the recipe and hyperparameters, the
models, the split, the device and the run folder.  Each builder puts its
fields on the page (``page.recipe``, ``page.input_size``, …) and returns its
box; the backbone box is ``backbone_box``'s, the estimate ``setup_estimate``'s."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from PySide6.QtCore import QStandardPaths
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
)

from training.common.constants import APP_DEVICES, DEVICE_LABELS

from .common import MODEL_LABELS

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


def hyper_box(page) -> QGroupBox:
    """The 'recipe and hyperparameters' box."""
    page.recipe = QComboBox()
    page.recipe.setObjectName("recipe")
    page.recipe.addItem("paper - the published recipe", "paper")
    page.recipe.addItem("shipped - the recipe of the app's model", "shipped")
    page.recipe_help = QLabel()
    page.recipe_help.setWordWrap(True)
    page.recipe_help.setStyleSheet("color:#666")
    page.input_size = QSpinBox()
    page.input_size.setRange(32, 1024)
    page.input_size.setSingleStep(32)
    page.input_size.setSuffix(" px")
    page.batch_size = QSpinBox()
    page.batch_size.setRange(2, 1024)
    page.lr = QDoubleSpinBox()
    page.lr.setDecimals(5)
    page.lr.setRange(0.00001, 0.5)
    page.lr.setSingleStep(0.0001)
    page.epochs = QSpinBox()
    page.epochs.setRange(1, 1000)
    hyper = QGroupBox("Recipe and hyperparameters")
    hf = QFormLayout(hyper)
    hf.addRow("Recipe:", page.recipe)
    hf.addRow(page.recipe_help)
    hf.addRow("Input size:", page.input_size)
    hf.addRow("Batch size:", page.batch_size)
    hf.addRow("Adam learning rate:", page.lr)
    hf.addRow("Epochs (at most):", page.epochs)
    return hyper


def models_box(page) -> QGroupBox:
    """The 'models' box: one tick per architecture (``page.model_checks``)."""
    box = QGroupBox("Models")
    ml = QHBoxLayout(box)
    page.model_checks = {}
    for arch, label in MODEL_LABELS.items():
        cb = QCheckBox(label)
        cb.setChecked(True)
        cb.setObjectName(f"model_{arch}")
        page.model_checks[arch] = cb
        ml.addWidget(cb)
    ml.addStretch(1)
    return box


def split_box(page) -> QGroupBox:
    """The 'split' box: a new stratified split (percentages, seed) or a split file."""
    box = QGroupBox("Split into training / validation / test")
    sg = QGridLayout(box)
    page.split_new = QRadioButton("New split (stratified):")
    page.split_new.setChecked(True)
    page.split_from_file = QRadioButton("Split file:")
    page.fracs = []
    fr = QHBoxLayout()
    for v in (80, 10, 10):
        sb = QSpinBox()
        sb.setRange(1, 98)
        sb.setValue(v)
        sb.setSuffix(" %")
        page.fracs.append(sb)
        fr.addWidget(sb)
    page.seed = QSpinBox()
    page.seed.setRange(0, 2**31 - 1)
    fr.addWidget(QLabel("seed"))
    fr.addWidget(page.seed)
    fr.addStretch(1)
    page.split_file = QLineEdit()
    page.split_file.setPlaceholderText("split.csv of an earlier run (dataset,file,label,split)")
    split_browse = QPushButton("Browse…")
    split_browse.clicked.connect(page.choose_split_file)
    sg.addWidget(page.split_new, 0, 0)
    sg.addLayout(fr, 0, 1, 1, 2)
    sg.addWidget(page.split_from_file, 1, 0)
    sg.addWidget(page.split_file, 1, 1)
    sg.addWidget(split_browse, 1, 2)
    page.split_info = QLabel()
    page.split_info.setStyleSheet("color:#666")
    sg.addWidget(page.split_info, 2, 0, 1, 3)
    return box


def device_box(page) -> QGroupBox:
    """The 'device' box: device and CPU threads."""
    box = QGroupBox("Where it runs")
    df = QFormLayout(box)
    page.device = QComboBox()
    page.device.setObjectName("device")
    for key, text in DEVICE_ITEMS:
        page.device.addItem(text, key)
    page.threads = QSpinBox()
    page.threads.setRange(0, max(1, os.cpu_count() or 1))
    page.threads.setSpecialValueText("automatic (all cores but one)")
    df.addRow("Device:", page.device)
    df.addRow("CPU threads:", page.threads)
    return box


def run_folder_box(page) -> QGroupBox:
    """The 'run folder' box (typing a folder turns the automatic one off)."""
    box = QGroupBox("Run folder (models, curves, report)")
    ol = QHBoxLayout(box)
    page.out_dir = QLineEdit()
    page.out_dir.setObjectName("outDir")
    page.out_dir.textEdited.connect(lambda _t: setattr(page, "_auto_out", False))
    out_browse = QPushButton("Browse…")
    out_browse.clicked.connect(page.choose_out_dir)
    out_new = QPushButton("New")
    out_new.setToolTip("A new, empty run folder named after the date and time")
    out_new.clicked.connect(page.fresh_out_dir)
    ol.addWidget(page.out_dir, 1)
    ol.addWidget(out_browse)
    ol.addWidget(out_new)
    return box
