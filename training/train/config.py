"""Training configuration and the named recipes.

``paper`` is the published recipe exactly (224 x 224, batch 32, Adam 1e-3,
15 epochs, sigmoid + binary cross-entropy, no augmentation, no schedule).
``shipped`` is the recipe behind the app's default model (see MODEL_CARD.md):
radiograph-safe augmentation, weight decay, a cosine schedule, early stopping,
class-balanced sampling and a two-stage start of the ResNet50-LSTM from the
ResNet50 trained in the same run.  Every field can be overridden.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.common import atomic
from training.common.errors import DataError
from training.model.networks import ARCHITECTURES
from training.train import run_folder


@dataclass
class TrainConfig:
    data_dirs: list[str]
    out_dir: str
    models: list[str] = field(default_factory=lambda: list(ARCHITECTURES))
    recipe: str = "paper"
    input_size: int = 224
    batch_size: int = 32
    lr: float = 1e-3
    epochs: int = 15
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # constant | cosine
    warmup_epochs: int = 0
    augment: bool = False
    augment_level: str = "basic"  # basic | source (see training/train/augment.py)
    region: str = "whole"  # whole | lungs: the classifier's input (training/model/lung_input.py)
    intensity: str = "none"  # none | clahe
    lung_margin: float = 0.10
    cache_dir: str = ""  # reuse decoded (and lung-cropped) images between runs; "" = no disk cache
    balanced_sampling: bool = False
    early_stopping: int = 0  # patience in epochs on the selection rule; 0 = off
    init: str = "scratch"  # scratch | imagenet | path to weights
    lstm_init: str = ""  # ResNet50-LSTM backbone: "" = same as init; "from_resnet50" = two-stage
    freeze_backbone_epochs: int = 0  # first N epochs train only the head (backbone frozen, BatchNorm in eval)
    dropout: float = 0.5
    seed: int = 42
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_file: str = ""
    holdout_split: str = ""  # a split.csv whose 'test' images are held out as the extra set 'paper_test'
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    target_sensitivity: float = 0.95
    threshold_rule: str = "0.5"  # 0.5 | sensitivity (operating point on validation)
    half_weights: bool = False  # store fp16 weights in the model file
    model_name: str = ""
    max_train_batches: int = 0  # 0 = all; >0 caps batches per epoch (benchmarks only)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["split"] = list(self.split)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "split" in kw:
            kw["split"] = tuple(kw["split"])
        return cls(**kw)

    def validate(self, *, new_run: bool = False) -> None:
        """Refuse settings a run cannot use: ``DataError`` with the reason in
        words (``xray-train`` and the wizard show it as it is).  ``new_run``
        (``make_config``): also what matters only when a run is set up: the
        split percentages add up (a resumed run keeps its split.csv) and the
        files named exist (a local weights file, a split file)."""
        if not self.models:
            raise DataError("Choose at least one model to train.")
        bad = [m for m in self.models if m not in ARCHITECTURES]
        if bad:
            raise DataError(f"Unknown model(s) {bad}; choose from {', '.join(ARCHITECTURES)}.")
        if not str(self.out_dir).strip():
            raise DataError("Choose a run folder.")
        if self.input_size < 32:
            raise DataError("Input size must be at least 32 pixels.")
        if self.batch_size < 2:
            raise DataError("Batch size must be at least 2.")
        if self.epochs < 1:
            raise DataError("At least one epoch is needed.")
        if not (0 < self.lr < 1):
            raise DataError("The learning rate must be between 0 and 1.")
        if self.lr_schedule not in ("constant", "cosine"):
            raise DataError("The learning-rate schedule must be 'constant' or 'cosine'.")
        if self.threshold_rule not in ("0.5", "sensitivity"):
            raise DataError("threshold_rule must be '0.5' or 'sensitivity'.")
        if self.freeze_backbone_epochs < 0:
            raise DataError("freeze_backbone_epochs cannot be negative.")
        from training.model.lung_input import INTENSITIES, REGIONS
        from training.train.augment import LEVELS

        if self.augment_level not in LEVELS:
            raise DataError(f"augment_level must be one of {', '.join(LEVELS)}.")
        if self.region not in REGIONS:
            raise DataError(f"region must be one of {', '.join(REGIONS)}.")
        if self.intensity not in INTENSITIES:
            raise DataError(f"intensity must be one of {', '.join(INTENSITIES)}.")
        if not (0.0 <= self.lung_margin <= 0.5):
            raise DataError("lung_margin must be between 0 and 0.5.")
        if self.lstm_init == "from_resnet50" and "resnet50_lstm" in self.models and "resnet50" not in self.models:
            raise DataError("This recipe starts the ResNet50-LSTM from the ResNet50 trained in the same run: train "
                            "ResNet50 too (tick it, or --models resnet50 resnet50_lstm), or choose the 'paper' recipe.")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise DataError("precision must be auto, fp32, bf16 or fp16.")
        if new_run:
            self._check_new_run()

    def _check_new_run(self) -> None:
        if not self.split_file and abs(sum(self.split) - 1.0) > 1e-6:
            raise DataError("The split percentages must add up to 100 %.")
        if self.init and self.init not in ("scratch", "imagenet") and not Path(self.init).is_file():
            raise DataError(f"Weights file not found: {self.init}")
        if self.split_file and not Path(self.split_file).is_file():
            raise DataError(f"Split file not found: {self.split_file}. Choose an existing split file (split.csv of "
                            "an earlier run), or make a new split.")

    RUN_NEUTRAL = ("out_dir", "device", "threads")  # may differ when a run is resumed

    def same_run_as(self, other: "TrainConfig") -> bool:
        """True when ``other`` describes the same run (only the folder, device and threads may differ)."""
        a = {k: v for k, v in self.to_dict().items() if k not in self.RUN_NEUTRAL}
        b = {k: v for k, v in other.to_dict().items() if k not in self.RUN_NEUTRAL}
        return a == b

    def check_run_folder(self) -> bool:
        """Refuse a run folder that holds another run (``DataError``); True when
        it holds this same run (a resume), False when it holds none."""
        existing = run_folder.config_file(self.out_dir)
        if not existing.exists():
            return False
        if not TrainConfig.load(existing).same_run_as(self):
            raise DataError(f"{self.out_dir} already holds a run with other settings: choose a new run folder, "
                            "or put back that run's settings to resume it.")
        return True

    def save(self, path: str | os.PathLike) -> None:
        atomic.write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainConfig":
        p = Path(path)
        try:
            return cls.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise DataError(f"Cannot read the run configuration {p}: {exc}") from exc


RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    "shipped": {
        "epochs": 40,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "lr_schedule": "cosine",
        "warmup_epochs": 1,
        "augment": True,
        "balanced_sampling": True,
        "early_stopping": 10,
        "lstm_init": "from_resnet50",
        "threshold_rule": "sensitivity",
        "half_weights": True,
    },
}


def make_config(data_dirs, out_dir, recipe: str = "paper", **overrides) -> TrainConfig:
    if recipe not in RECIPES:
        raise DataError(f"Unknown recipe '{recipe}'; choose from {', '.join(RECIPES)}.")
    kw = {**RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None}}
    cfg = TrainConfig(data_dirs=[str(d) for d in data_dirs], out_dir=str(out_dir), recipe=recipe, **kw)
    cfg.validate(new_run=True)
    return cfg
