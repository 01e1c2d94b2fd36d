"""Model v2: three classes (Normal / COVID-19 / other pneumonia), a lesion decoder
trained on the infected-region masks, the paper's ResNet50-LSTM head trained end
to end, on batches balanced across sources.  Resumable, CPU-friendly.

    python -m training.train.model_v2 --out RUN_DIR [--head lstm|linear] [--no-lesion]
                                [--classes 3|2] [--epochs N] [--samples-per-epoch N]
                                [--input-size S] [--threads N] [--init FILE]
    python -m training.train.model_v2 --resume RUN_DIR [--epochs N]   (N > the run's: extend it)

Data (``--data-root``, default ``../shared/data`` beside the repository):

* ``covid-cxr-1000`` and ``covid-cxr-extra-3000`` (COVID / Normal, no lesion
  masks) with the shipped split ``results/shipped/split.csv`` (the paper's 100
  test images stay out as ``paper_test``);
* ``cxr-infection-3class`` (COVID with infected-region masks, other pneumonia,
  Normal; the two latter have empty lesion masks), split 70/15/15 stratified by
  class with seed ``SPLIT_SEED``; the whole split is ``results/v2/split.csv``.

``--classes 2`` drops the pneumonia films (the ablation's "v1 recipe" row).

Sampling: every "epoch" draws ``samples_per_epoch`` training films with
replacement, **one third per class**, and inside a class an equal share per
source (data folder).  So inside every source COVID and Normal are equally
likely and the source alone cannot tell COVID from Normal; pneumonia films come
from one source only (no other source has them), which the card says.

Input: the v1 view (the lung segmenter's box + 10 % margin, CLAHE) at
``input_size``; the lesion masks are cropped with the same box.  ``--outside
masked`` also blacks out everything outside the widened lung mask
(``training.model.lung_input``, ``InputSpec.outside``), recorded in the file.  Training
augmentation: ``training.train.augment`` level ``source`` (the masks follow the
geometry).  The stem and stage 2 of the ResNet50 (conv1, layer1) stay frozen
(their BatchNorm statistics too), as detectron2 does by default; stages 3-5,
the head and the decoder learn (warm start: model v1's backbone; ``--init`` a model
file of the same network, e.g. the shipped v2, starts from all of it).

Loss: cross-entropy over the classes + ``lesion_weight`` x (Dice + BCE) of the
lesion map against the mask, on films that have a mask only (MONAI
``DiceLoss``, batch Dice).  Optimiser AdamW, the backbone at ``lr``, head and
decoder at ``head_lr``, linear warm-up then cosine decay.  The epoch with the
lowest validation classification loss is kept; calibration (temperature on the
softmax), the COVID threshold (>= 95 % validation COVID sensitivity, COVID vs
the rest), the band and the pneumonia-vs-Normal threshold are fitted on the
validation split and written into the model file.

Every epoch writes ``checkpoint.pt`` (model, optimiser, history, RNG-free:
each epoch's sample is drawn from ``seed + epoch``) atomically; ``--resume``
continues after the last finished epoch.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from training.common import atomic
from training.common.errors import DataError
from training.common.formatting import exception_text
from training.train import run_folder

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"
SHIPPED_SPLIT = REPO / "results" / "shipped" / run_folder.SPLIT
V2_SPLIT = REPO / "results" / "v2" / run_folder.SPLIT
V1_MODEL = REPO / "resources" / "models" / "covid_cxr_v1.safetensors"
KAGGLE_SETS = ("covid-cxr-1000", "covid-cxr-extra-3000")
NEW_SET = "cxr-infection-3class"
CLASSES3 = ["Normal", "COVID", "Pneumonia"]  # index 0 / 1 as in the binary models
LABEL_OF = {"Normal": 0, "COVID": 1, "Pneumonia": 2}
SPLIT_SEED = 20261206
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
MASK_DIVISOR = 4  # lesion masks are kept at input_size / 4 (the decoder's map is input_size / 8)


@dataclass
class V2Config:
    out: str
    data_root: str = str(DEFAULT_DATA_ROOT)
    classes: int = 3
    head: str = "lstm"  # lstm | linear
    lesion: bool = True
    input_size: int = 192
    epochs: int = 6
    samples_per_epoch: int = 2400
    batch_size: int = 24
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    dropout: float = 0.2
    sequence: str = "raster"  # ResNet50-LSTM: raster | column (training.model.networks.SEQUENCE_ORDERS)
    lstm_init: str = "torch"  # a new LSTM head: torch | keras (training.model.networks.keras_lstm_init_)
    lesion_weight: float = 1.0
    augment: str = "source"
    outside: str = "keep"  # keep | masked: black outside the widened lung mask (InputSpec.outside)
    init: str = str(V1_MODEL)
    threads: int = 2
    seed: int = 7
    freeze: str = "stem+layer1"
    device: str = "auto"  # auto: CUDA when present (fp16 autocast + gradient scaler), else CPU (bf16 where native)
    extra: dict = field(default_factory=dict)

    @property
    def arch(self) -> str:
        return "resnet50_lstm" if self.head == "lstm" else "resnet50"

    @property
    def spec(self):
        """The classifier's input (the v1 view; ``outside`` masked or kept)."""
        from training.model.lung_input import InputSpec

        return InputSpec(region="lungs", intensity="clahe", outside=self.outside)

    def cache_name(self) -> str:
        masked = "" if self.outside == "keep" else f"_{self.outside}"
        return f"v2_{self.classes}c_{self.input_size}px{masked}.npz"


# ---------------------------------------------------------------- data

@dataclass
class V2Item:
    dataset: str
    file: str
    label: int
    split: str
    path: Path
    lesion: Path | None  # infected-region mask (None: the film has no lesion annotation)
    has_mask: bool  # a lesion target exists (an empty one for new-set Normal / pneumonia films)
    involvement: float | None = None  # the source's infected share of the lungs


def make_new_set_split(data_root: Path, seed: int = SPLIT_SEED) -> list[tuple[str, str, str, str]]:
    """(dataset, file, label, split) for ``cxr-infection-3class``: stratified 70/15/15 with ``seed``."""
    rows = list(csv.DictReader(open(data_root / NEW_SET / "manifest.csv", newline="")))
    rng = np.random.default_rng(seed)
    out = []
    for label in sorted({r["label"] for r in rows}):
        files = sorted(r["file"] for r in rows if r["label"] == label)
        order = rng.permutation(len(files))
        n_tr = int(round(SPLIT_FRACTIONS[0] * len(files)))
        n_va = int(round(SPLIT_FRACTIONS[1] * len(files)))
        for rank, i in enumerate(order):
            split = "train" if rank < n_tr else ("val" if rank < n_tr + n_va else "test")
            out.append((NEW_SET, files[i], label, split))
    return sorted(out)


def write_split(data_root: Path, path: Path = V2_SPLIT) -> Path:
    """The v2 split file: the shipped Kaggle split + the new set's split."""
    rows = [tuple(r) for r in csv.reader(open(SHIPPED_SPLIT, newline=""))][1:]
    rows += make_new_set_split(data_root)
    text = "dataset,file,label,split\n" + "".join(",".join(r) + "\n" for r in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, text)
    return path


def read_items(data_root: Path, classes: int = 3, split_file: Path = V2_SPLIT) -> list[V2Item]:
    if not split_file.is_file():
        write_split(data_root, split_file)
    manifest = {r["file"]: r for r in csv.DictReader(open(data_root / NEW_SET / "manifest.csv", newline=""))}
    items = []
    for r in csv.DictReader(open(split_file, newline="")):
        label = LABEL_OF[r["label"]]
        if label >= classes:
            continue
        root = data_root / r["dataset"]
        lesion, has_mask, inv = None, False, None
        if r["dataset"] == NEW_SET:
            m = manifest[r["file"]]
            has_mask = True
            lesion = root / m["infection_mask"] if m.get("infection_mask") else None
            inv = float(m["infection_fraction_of_lungs"]) if m.get("infection_fraction_of_lungs") else None
        items.append(V2Item(r["dataset"], r["file"], label, r["split"], root / r["file"], lesion, has_mask, inv))
    return items


def _read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def _one_view(item: V2Item, spec, segmenter, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(image uint8 (S, S), lesion mask uint8 (S/4, S/4) or None) as the classifier sees the film."""
    from training.imaging.loading import load_image
    from training.imaging.resize import resize_grey
    from training.model.lung_input import model_view

    img = load_image(item.path)
    mask = segmenter.segment(img.pixels).mask
    view, box = model_view(img.pixels, spec, mask)
    x = np.rint(resize_grey(view, size) * np.float32(255.0)).astype(np.uint8)
    if not item.has_mask:
        return x, None
    msz = size // MASK_DIVISOR
    if item.lesion is None:
        return x, np.zeros((msz, msz), dtype=np.uint8)
    lm = _read_mask(item.lesion)
    r0, c0, r1, c1 = box.pixels(lm.shape)
    t = torch.from_numpy(np.ascontiguousarray(lm[r0:r1, c0:c1]))[None, None]
    m = F.interpolate(t, size=(msz, msz), mode="area")[0, 0]
    return x, m.mul(255.0).round().byte().numpy()


def build_cache(items: list[V2Item], size: int, cache_path: Path, threads: int = 2, log=print, spec=None) -> dict:
    """Decode every film once (the classifier's lung view), with its lesion mask; cached as ``.npz``."""
    if cache_path.is_file():
        with np.load(cache_path, allow_pickle=False) as z:
            if list(z["files"]) == [f"{it.dataset}/{it.file}" for it in items]:
                return {k: z[k] for k in z.files}
    from training.gate.segmenter import LungSegmenter, default_segmenter_path
    from training.model.lung_input import InputSpec

    spec = spec or InputSpec(region="lungs", intensity="clahe")
    seg_path = default_segmenter_path()
    if seg_path is None:
        raise DataError("model v2 needs the lung segmenter (resources/models/lung_segmenter.safetensors).")
    segmenter = LungSegmenter.from_file(seg_path)
    msz = size // MASK_DIVISOR
    images = np.zeros((len(items), size, size), dtype=np.uint8)
    masks = np.zeros((len(items), msz, msz), dtype=np.uint8)
    ok = np.zeros(len(items), dtype=bool)
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        futures = [pool.submit(_one_view, it, spec, segmenter, size) for it in items]
        for i, fut in enumerate(futures):
            try:
                x, m = fut.result()
            except Exception as exc:  # one unreadable film is skipped and said, never a crash
                log(f"skipped {items[i].path}: {exception_text(exc)}")
                continue
            images[i] = x
            if m is not None:
                masks[i] = m
            ok[i] = True
            if i % 500 == 0:
                log(f"decoded {i + 1}/{len(items)} ({time.time() - t0:.0f} s)")
    out = {"images": images, "masks": masks, "ok": ok,
           "files": np.array([f"{it.dataset}/{it.file}" for it in items])}

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **out)

    cache_path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_with(cache_path, write)
    return out


def epoch_sample(items: list[V2Item], train_idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` training indices: each class a third (or half), inside a class each source an equal share."""
    rng = np.random.default_rng(seed)
    labels = sorted({items[i].label for i in train_idx})
    out = []
    for k, label in enumerate(labels):
        in_class = [i for i in train_idx if items[i].label == label]
        sources = sorted({items[i].dataset for i in in_class})
        n_class = n // len(labels) + (1 if k < n % len(labels) else 0)
        for j, src in enumerate(sources):
            pool = np.array([i for i in in_class if items[i].dataset == src])
            n_src = n_class // len(sources) + (1 if j < n_class % len(sources) else 0)
            out.append(rng.choice(pool, size=n_src, replace=len(pool) < n_src))
    sample = np.concatenate(out)
    return sample[rng.permutation(len(sample))]


# ---------------------------------------------------------------- model and loss

def build(cfg: V2Config) -> nn.Module:
    from training.model.networks import build_model

    model = build_model(cfg.arch, cfg.init or "scratch", dropout=cfg.dropout, input_size=cfg.input_size,
                        classes=cfg.classes, lesion=cfg.lesion,
                        sequence=cfg.sequence if cfg.head == "lstm" else "raster")
    if cfg.head == "lstm" and cfg.lstm_init == "keras":
        from training.model.networks import keras_lstm_init_

        keras_lstm_init_(model.head)
    elif cfg.lstm_init != "torch":
        raise DataError(f"lstm_init {cfg.lstm_init!r}: use torch or keras (keras only for the LSTM head)")
    warm_start_whole(model, cfg.init)
    return model


def warm_start_whole(model: nn.Module, init: str | None) -> bool:
    """When ``init`` is a model file of the same network (head and lesion decoder
    included, e.g. the shipped v2), start from all of it, not from its backbone
    alone.  False (backbone only, done by ``build_model``) otherwise."""
    if not init or init in ("scratch", "imagenet") or not str(init).endswith(".safetensors"):
        return False
    from training.model.networks import read_weights_file

    sd = read_weights_file(init)
    own = model.state_dict()
    if set(sd) != set(own) or any(tuple(sd[k].shape) != tuple(own[k].shape) for k in own):
        return False
    model.load_state_dict({k: sd[k].to(own[k].dtype) for k in own}, strict=True)
    return True


FROZEN = ("conv1", "bn1", "layer1")


def freeze_early(model: nn.Module) -> None:
    """conv1 / bn1 / layer1 frozen (no gradient, BatchNorm in eval mode)."""
    for name in FROZEN:
        mod = getattr(model.backbone, name)
        mod.eval()
        for p in mod.parameters():
            p.requires_grad_(False)


def make_optimizer(model: nn.Module, cfg: V2Config) -> torch.optim.Optimizer:
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.") and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
    return torch.optim.AdamW([{"params": backbone, "lr": cfg.lr, "base_lr": cfg.lr},
                              {"params": rest, "lr": cfg.head_lr, "base_lr": cfg.head_lr}],
                             weight_decay=cfg.weight_decay)


def lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


class V2Loss:
    """Cross-entropy (or BCE for two classes) + lesion_weight x (batch Dice + BCE) on films with a mask."""

    def __init__(self, classes: int, lesion_weight: float):
        from monai.losses import DiceLoss

        self.classes = classes
        self.lesion_weight = float(lesion_weight)
        self.dice = DiceLoss(sigmoid=True, batch=True)
        self.last: dict[str, float] = {}

    def __call__(self, outputs, target) -> torch.Tensor:
        logits, lesion = outputs
        y, masks, has = target
        logits = logits.float()
        cls = (F.cross_entropy(logits, y) if self.classes > 2
               else F.binary_cross_entropy_with_logits(logits, y.float()))
        self.last = {"cls": float(cls.detach())}
        if lesion is None or not bool(has.any()):
            return cls
        lg = F.interpolate(lesion.float()[has], size=masks.shape[-2:], mode="bilinear", align_corners=False)
        tg = masks[has]
        les = self.dice(lg, tg) + F.binary_cross_entropy_with_logits(lg, tg)
        self.last["lesion"] = float(les.detach())
        return cls + self.lesion_weight * les


def to_input(images_u8: np.ndarray) -> torch.Tensor:
    """uint8 (B, S, S) -> float (B, 1, S, S) in [0, 1]."""
    return torch.from_numpy(images_u8).float().div_(255.0)[:, None]


def three_channels(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------- evaluation

def predict_split(model: nn.Module, images: np.ndarray, idx: np.ndarray, batch: int = 48) -> tuple[np.ndarray, np.ndarray | None]:
    """(logits (N, C) or (N,), lesion probabilities (N, s, s) or None) for ``idx``, in fp32."""
    model.eval()
    device = next(model.parameters()).device
    logits, lesions = [], []
    with torch.inference_mode():
        for s in range(0, len(idx), batch):
            x = three_channels(to_input(images[idx[s:s + batch]])).to(device)
            lg, les = model.forward_with_lesion(x)
            logits.append(lg.float().cpu())
            if les is not None:
                lesions.append(torch.sigmoid(les.float())[:, 0].cpu())
    lg = torch.cat(logits).numpy() if logits else np.zeros((0,))
    return lg, (torch.cat(lesions).numpy() if lesions else None)


def dice_score(pred: np.ndarray, truth: np.ndarray) -> float:
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    denom = p.sum() + t.sum()
    return 1.0 if denom == 0 else float(2.0 * (p & t).sum() / denom)


def val_summary(cfg: V2Config, items, cache, idx, model) -> dict:
    from training.model.metrics import roc_auc

    logits, lesion = predict_split(model, cache["images"], idx)
    y = np.array([items[i].label for i in idx])
    t = torch.from_numpy(logits)
    if cfg.classes > 2:
        loss = float(F.cross_entropy(t, torch.from_numpy(y)))
        probs = torch.softmax(t, 1).numpy()
        acc = float((probs.argmax(1) == y).mean())
        p_covid = probs[:, 1]
    else:
        loss = float(F.binary_cross_entropy_with_logits(t, torch.from_numpy(y).float()))
        p_covid = torch.sigmoid(t).numpy()
        acc = float(((p_covid >= 0.5) == (y == 1)).mean())
    cn = y <= 1
    out = {"val_loss": loss, "val_acc": acc, "val_auc_covid_normal": roc_auc((y[cn] == 1).astype(int), p_covid[cn])}
    if cfg.classes > 2:  # the three-way figures the ablation reports (validation only)
        from training.model.metrics import macro_f1

        out["val_macro_f1"] = macro_f1(y, probs.argmax(1))
        cp = y >= 1
        out["val_auc_covid_pneumonia"] = roc_auc((y[cp] == 1).astype(int), p_covid[cp])
    if lesion is not None:
        with_mask = [k for k, i in enumerate(idx) if items[i].label == 1 and items[i].lesion is not None]
        if with_mask:
            ms = cache["masks"][idx[with_mask]] >= 128
            out["val_lesion_dice"] = float(np.mean([dice_score(
                F.interpolate(torch.from_numpy(lesion[k])[None, None], size=ms.shape[-2:], mode="bilinear",
                              align_corners=False)[0, 0].numpy() >= 0.5, m) for k, m in zip(with_mask, ms)]))
    return out


# ---------------------------------------------------------------- the run

def _save_ckpt(path: Path, obj) -> None:
    atomic.write_with(path, lambda tmp: torch.save(obj, tmp))


def train(cfg: V2Config, log=print) -> Path:
    torch.set_num_threads(max(1, int(cfg.threads)))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / run_folder.CONFIG, json.dumps(asdict(cfg), indent=2))
    data_root = Path(cfg.data_root)
    items = read_items(data_root, cfg.classes)
    cache = build_cache(items, cfg.input_size, out.parent / "cache" / cfg.cache_name(), threads=cfg.threads,
                        log=log, spec=cfg.spec)
    ok = cache["ok"]
    split = np.array([it.split for it in items])
    train_idx = np.flatnonzero(ok & (split == "train"))
    val_idx = np.flatnonzero(ok & (split == "val"))
    log(f"{len(train_idx)} training films, {len(val_idx)} validation films; "
        f"{int((~ok).sum())} could not be read")
    from training.common.autocast import choose_precision
    from training.common.device import pick_device

    device = pick_device(cfg.device)
    precision = choose_precision("auto", device)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    log(f"device {device}, precision {precision}")
    model = build(cfg)
    freeze_early(model)
    model.to(device, memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    loss_fn = V2Loss(cfg.classes, cfg.lesion_weight)
    steps_per_epoch = cfg.samples_per_epoch // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    ckpt_path, best_path = out / "checkpoint.pt", out / "best.pt"
    history: list[dict] = []
    start_epoch = 0
    if ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        history = json.loads(ck["history"])
        start_epoch = int(ck["epoch"]) + 1
        log(f"resumed after epoch {start_epoch}")
    from training.train.augment import augment_batch
    from training.train.steps import train_step

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        freeze_early(model)
        sample = epoch_sample(items, train_idx, cfg.samples_per_epoch, cfg.seed * 1000 + epoch)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        t0, losses, parts = time.time(), [], []
        for s in range(steps_per_epoch):
            step = epoch * steps_per_epoch + s
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * lr_factor(step, total, cfg.warmup_steps)
            b = sample[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            x = to_input(cache["images"][b])
            masks = torch.from_numpy(cache["masks"][b]).float().div_(255.0)[:, None]
            x, masks = augment_batch(x, gen, cfg.augment, masks=masks)
            y = torch.from_numpy(np.array([items[i].label for i in b])).to(device)
            has = torch.from_numpy(np.array([items[i].has_mask for i in b])).to(device)
            loss, _ = train_step(model, opt, three_channels(x).to(device), (y, masks.to(device), has), precision,
                                 device, scaler, loss_fn=loss_fn)
            losses.append(loss)
            parts.append(loss_fn.last)
            if s % 10 == 0:
                log(f"epoch {epoch + 1} step {s + 1}/{steps_per_epoch} loss {np.mean(losses[-10:]):.4f} "
                    f"({(time.time() - t0) / (s + 1):.1f} s/step)")
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
               "train_cls_loss": float(np.mean([p["cls"] for p in parts])),
               "train_lesion_loss": float(np.mean([p["lesion"] for p in parts if "lesion" in p] or [float("nan")])),
               "seconds": round(time.time() - t0, 1)}
        row.update(val_summary(cfg, items, cache, val_idx, model))
        history.append(row)
        log(json.dumps(row))
        best = min(history, key=lambda r: r["val_loss"])
        if best is row:
            _save_ckpt(best_path, {"model": {k: v.cpu() for k, v in model.state_dict().items()}, "epoch": epoch})
        _save_ckpt(ckpt_path, {"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch,
                               "history": json.dumps(history)})
        atomic.write_text(out / run_folder.HISTORY_JSON, json.dumps(history, indent=2))
    return finish(cfg, items, cache, log)


def finish(cfg: V2Config, items, cache, log=print) -> Path:
    """Best epoch -> calibrated model file ``OUT/model.safetensors``."""
    from training.model import calibration as cal
    from training.model.modelfile import ModelInfo, save_model

    out = Path(cfg.out)
    model = build(cfg)
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(best["model"])
    model.eval()
    split = np.array([it.split for it in items])
    val_idx = np.flatnonzero(cache["ok"] & (split == "val"))
    logits, _ = predict_split(model, cache["images"], val_idx)
    y = np.array([items[i].label for i in val_idx])
    fit = cal.fit_classes(logits, y, cfg.classes)
    history = json.loads((out / run_folder.HISTORY_JSON).read_text())
    info = ModelInfo(
        arch=cfg.arch, name=cfg.extra.get("name", "COVID-19 / pneumonia / Normal"),
        version=cfg.extra.get("version", "2"),
        class_names=list(CLASSES3[:cfg.classes]), positive_class="COVID", input_size=cfg.input_size,
        preprocessing={**cfg.spec.to_metadata(),
                       "resize": "bilinear, antialiased, aspect ratio not kept", "scale": "pixel / 255",
                       "channels": "grey repeated to 3", "normalize": None},
        threshold=fit.threshold, band=list(fit.band), calibration=fit.to_metadata(),
        pneumonia_threshold=fit.pneumonia_threshold, dropout=cfg.dropout, lesion_head=bool(cfg.lesion),
        sequence_order=cfg.sequence if cfg.head == "lstm" else "raster",
        training={"recipe": "model v2 (training.train.model_v2)", "config": asdict(cfg),
                  "best_epoch": int(best["epoch"]) + 1, "history": history},
        description=("Three classes (Normal, COVID-19, other pneumonia) with a lesion map" if cfg.classes > 2
                     else "COVID-19 vs Normal"))
    path = save_model(model, info, out / "model.safetensors", half=True)
    log(f"wrote {path}")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.train.model_v2", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="run folder (outside the repository)")
    ap.add_argument("--resume", help="continue the run in this folder")
    ap.add_argument("--finish", help="only write the model file of this finished (or stopped) run")
    for f in V2Config.__dataclass_fields__.values():
        if f.name in ("out", "extra", "lesion"):
            continue
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=None)
    ap.add_argument("--no-lesion", action="store_true")
    ap.add_argument("--name", default=None)
    ap.add_argument("--version", default=None)
    a = ap.parse_args(argv)
    if a.resume or a.finish:
        folder = Path(a.resume or a.finish)
        d = json.loads((folder / run_folder.CONFIG).read_text())
        cfg = V2Config(**d)
        cfg.out = str(folder)
        if a.resume and a.epochs is not None and a.epochs > cfg.epochs:
            # Extending a run: the cosine schedule is stretched to the new total, so the
            # learning rate rises again to where the longer schedule would be (a warm restart).
            cfg.epochs = a.epochs
    elif a.out:
        cfg = V2Config(out=a.out)
        for k in V2Config.__dataclass_fields__:
            v = getattr(a, k, None)
            if v is not None and k not in ("out", "extra"):
                setattr(cfg, k, v)
        cfg.lesion = not a.no_lesion
        cfg.extra = {k: v for k, v in (("name", a.name), ("version", a.version)) if v}
    else:
        ap.error("give --out, --resume or --finish")

    def log(msg):
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    if a.finish:
        items = read_items(Path(cfg.data_root), cfg.classes)
        cache = build_cache(items, cfg.input_size, Path(cfg.out).parent / "cache" / cfg.cache_name(),
                            threads=cfg.threads, log=log, spec=cfg.spec)
        finish(cfg, items, cache, log)
        return 0
    train(cfg, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
