"""Training the lung segmenter, in the trainer's pattern: a generator of
:class:`training.train.trainer.Event` (every ``yield`` is a progress and cancel
point), a checkpoint per epoch (atomic; ``resume=True`` continues from it
bit for bit in the data order), and a run folder with history, curves, a
report and the model file.

Data: one or more *sources*, each a folder with ``manifest.csv`` (``file``,
``label`` and a mask column: ``mask`` as in ``../shared/data/cxr-lung-masks-600``
or ``lung_mask`` as in ``../shared/data/cxr-infection-3class``).  Each source is
split on its own: by a fixed split file when one of ``split_files`` covers it
(``file,split`` columns, optionally ``dataset`` = the folder's name, as
``results/v2/split.csv``), otherwise 80/10/10 stratified by the manifest's
label, seeded.  All sources' assignments are written to ``split.csv``.
Training may draw a fixed number of pairs per epoch, balanced between the
sources (``samples_per_epoch``); the epoch is chosen by the mean over sources
of the validation Dice; the test Dice is reported per source and pooled.
Network, loss and metric are MONAI's: ``BasicUNet``,
``DiceCELoss(sigmoid=True)``, ``DiceMetric``.  ``init``: start from the
weights of an existing segmenter file (fine-tuning) instead of from scratch.

Augmentation (image and mask share each geometric transform): rotation
+-10 deg, scale 0.75-1.15 (so smaller lungs with more body around them are
seen), shift +-8 %, then on the image only gamma 0.5-2.0, contrast, blur or
noise, and a random grey-level inversion (p = 0.3) so that the segmenter
finds the lungs on inverted films (needed by the polarity check).  No flips,
no large rotations (the orientation check relies on upright input).  With
``style_aug`` (default) also what breaks a source's look: histogram
equalisation or CLAHE before everything else, stronger blur or unsharp-mask
sharpening, a resolution drop (down and back up) and JPEG re-compression.

Run folder::

    config.json  split.csv  events.jsonl  history.csv|json
    checkpoints/last.pt  checkpoints/best.pt
    curves.png  test_metrics.json  report.md  lung_segmenter.safetensors
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from training.common import atomic
from training.common.errors import DataError, TrainingCancelled
from training.common.events import Event
from training.gate.segmenter import DEFAULT_SEGMENTER_NAME, SEG_FEATURES, SEG_SIZE, SegmenterInfo
from training.gate.segmenter_net import build_segmenter, save_segmenter
from training.train.data import stratified_split


@dataclass
class SegTrainConfig:
    data_dir: str  # the first (or only) source
    out_dir: str
    epochs: int = 40
    batch_size: int = 16
    lr: float = 2e-3
    seed: int = 0
    size: int = SEG_SIZE
    features: list[int] = field(default_factory=lambda: list(SEG_FEATURES))
    threads: int = 0  # 0 = torch's default
    invert_p: float = 0.3
    device: str = "cpu"
    extra_data: list[str] = field(default_factory=list)  # more sources (folders like data_dir)
    split_files: list[str] = field(default_factory=list)  # fixed splits; a source none covers is split 80/10/10
    samples_per_epoch: int = 0  # 0: every training pair once per epoch; else this many, balanced between sources
    init: str = ""  # a segmenter file to start from (fine-tuning); "" = from scratch
    style_aug: bool = True  # histogram equalisation / CLAHE, sharpen, resolution drop, JPEG

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sources(self) -> list[str]:
        return [d for d in [self.data_dir, *self.extra_data] if d]


# --------------------------------------------------------------------------- data

MASK_COLUMNS = ("mask", "lung_mask")  # cxr-lung-masks-600, cxr-infection-3class


def load_pairs(data_dir: str | Path, size: int) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(files, labels, images uint8 (N, S, S), masks bool (N, S, S)).

    The manifest's mask column is ``mask`` or ``lung_mask`` (the first present)."""
    from PIL import Image

    root = Path(data_dir)
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise DataError(f"{root} has no manifest.csv (expected file, mask or lung_mask, label columns).")
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        mask_col = next((c for c in MASK_COLUMNS if c in (reader.fieldnames or [])), None)
    if mask_col is None:
        raise DataError(f"{manifest} has no mask column (expected one of: {', '.join(MASK_COLUMNS)}).")
    if len(rows) < 10:
        raise DataError(f"{manifest} lists only {len(rows)} image + mask pairs; at least 10 are needed.")
    files, labels, imgs, masks = [], [], [], []
    for r in rows:
        try:
            im = Image.open(root / r["file"]).convert("L").resize((size, size), Image.BILINEAR)
            mk = Image.open(root / r[mask_col]).convert("L").resize((size, size), Image.NEAREST)
        except (OSError, KeyError, TypeError) as exc:
            raise DataError(f"pair {r.get('file')!r} cannot be read ({type(exc).__name__}).") from exc
        files.append(r["file"])
        labels.append(r.get("label", ""))
        imgs.append(np.asarray(im, dtype=np.uint8))
        masks.append(np.asarray(mk) >= 128)
    return files, labels, np.stack(imgs), np.stack(masks)


def split_pairs(labels: list[str], seed: int) -> list[str]:
    names = sorted(set(labels))
    return stratified_split([names.index(x) for x in labels], (0.8, 0.1, 0.1), seed=seed)


def fixed_split(split_file: str | Path, dataset: str, files: list[str]) -> list[str] | None:
    """The split of ``files`` (one source, folder name ``dataset``) from a split
    file, or None when the file does not cover this source.  A file with a
    ``dataset`` column covers the rows of that name; one without covers a
    source when it names any of its files.  A covered source must be covered
    completely (every pair train, val or test)."""
    path = Path(split_file)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            cols = reader.fieldnames or []
    except OSError as exc:
        raise DataError(f"split file {path} cannot be read ({type(exc).__name__}).") from exc
    if "file" not in cols or "split" not in cols:
        raise DataError(f"split file {path} needs file and split columns.")
    if "dataset" in cols:
        rows = [r for r in rows if r["dataset"] == dataset]
    split_of = {r["file"]: r["split"] for r in rows}
    if not any(f in split_of for f in files):
        return None
    missing = [f for f in files if f not in split_of]
    if missing:
        raise DataError(f"{path.name} gives no split for {len(missing)} of the {len(files)} pairs of {dataset} "
                        f"(e.g. {missing[0]}).")
    out = [split_of[f] for f in files]
    odd = sorted(set(out) - {"train", "val", "test"})
    if odd:
        raise DataError(f"{path.name}: unknown split name(s) {', '.join(odd)} for {dataset} (train, val, test).")
    return out


@dataclass
class SegData:
    """Every source's pairs, concatenated, with each pair's source and split."""

    names: list[str]  # the sources' folder names
    split_rules: list[str]  # per source: where its split came from
    files: list[str]
    labels: list[str]
    source: np.ndarray  # (N,) index into names
    splits: list[str]
    imgs: np.ndarray  # (N, S, S) uint8
    masks: np.ndarray  # (N, S, S) bool

    def index(self, split: str, source: int | None = None) -> np.ndarray:
        return np.array([i for i, s in enumerate(self.splits)
                         if s == split and (source is None or self.source[i] == source)], dtype=np.int64)

    def counts(self) -> dict[str, dict[str, int]]:
        return {n: {s: int(len(self.index(s, k))) for s in ("train", "val", "test")} for k, n in enumerate(self.names)}


def load_sources(cfg: SegTrainConfig) -> SegData:
    dirs = cfg.sources()
    if not dirs:
        raise DataError("no image + mask data given.")
    names = [Path(d).resolve().name for d in dirs]
    if len(set(names)) != len(names):
        raise DataError(f"two sources have the same folder name ({', '.join(names)}); give each source once.")
    used = set()
    loaded = []
    for d, name in zip(dirs, names):
        files, labels, imgs, masks = load_pairs(d, cfg.size)
        splits, rule = None, f"stratified 80/10/10 by label, seed {cfg.seed}"
        for sf in cfg.split_files:
            splits = fixed_split(sf, name, files)
            if splits is not None:
                used.add(sf)
                rule = f"fixed: {Path(sf).name}"
                break
        loaded.append((files, labels, splits, rule, imgs, masks))
    unused = [sf for sf in cfg.split_files if sf not in used]
    if unused:  # checked before any source is split on its own: a typo must not silently re-split the data
        raise DataError(f"split file {unused[0]} covers none of the sources ({', '.join(names)}).")
    parts, rules = [], []
    for k, (files, labels, splits, rule, imgs, masks) in enumerate(loaded):
        if splits is None:
            splits = split_pairs(labels, cfg.seed)
        parts.append((files, labels, np.full(len(files), k), splits, imgs, masks))
        rules.append(rule)
    return SegData(names=names, split_rules=rules, files=[f for p in parts for f in p[0]],
                   labels=[x for p in parts for x in p[1]], source=np.concatenate([p[2] for p in parts]),
                   splits=[x for p in parts for x in p[3]], imgs=np.concatenate([p[4] for p in parts]),
                   masks=np.concatenate([p[5] for p in parts]))


def epoch_order(train_by_source: list[np.ndarray], samples: int, g: torch.Generator) -> np.ndarray:
    """The training pairs of one epoch, shuffled.  ``samples`` 0: every pair
    once; else ``samples`` pairs split evenly between the sources, each source
    drawn without replacement (its pairs re-shuffled and repeated if too few)."""
    if samples <= 0:
        ids = np.concatenate(train_by_source)
        return ids[torch.randperm(len(ids), generator=g).numpy()]
    k = len(train_by_source)
    parts = []
    for i, ids in enumerate(train_by_source):
        n = samples // k + (1 if i < samples % k else 0)
        reps = max(1, math.ceil(n / len(ids)))
        perm = torch.cat([torch.randperm(len(ids), generator=g) for _ in range(reps)])[:n].numpy()
        parts.append(ids[perm])
    ids = np.concatenate(parts)
    return ids[torch.randperm(len(ids), generator=g).numpy()]


# --------------------------------------------------------------------------- augmentation


P_EQUALISE, P_CLAHE = 0.15, 0.2  # before everything else: a source that stores its films equalised
CLAHE_CLIP, CLAHE_TILES = (1.0, 4.0), (4, 8)
P_STRONG_BLUR, STRONG_BLUR_SIGMA = 0.15, (1.0, 2.5)
P_SHARPEN, SHARPEN = 0.2, (0.5, 2.0)
P_LOWRES, LOWRES = 0.25, (0.25, 0.7)
P_JPEG, JPEG_QUALITY = 0.2, (20, 80)


def _equalise(x: torch.Tensor) -> torch.Tensor:
    """Global histogram equalisation of one (1, H, W) image in [0, 1] (256 levels)."""
    q = (x.clamp(0, 1) * 255.0).round().long().view(-1)
    cdf = torch.bincount(q, minlength=256).cumsum(0).float()
    lo = cdf[cdf > 0][0]
    lut = ((cdf - lo) / (cdf[-1] - lo).clamp_min(1.0)).clamp(0, 1)
    return lut[q].view_as(x).to(x.dtype)


def _clahe(x: torch.Tensor, clip: float, tiles: int) -> torch.Tensor:
    """OpenCV CLAHE of one (1, H, W) image in [0, 1] (8-bit internally)."""
    import cv2

    u8 = (x[0].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
    out = cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(int(tiles), int(tiles))).apply(u8)
    return torch.from_numpy(out.astype(np.float32) / 255.0)[None].to(x.dtype)


def _style_before(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per image: nothing, global histogram equalisation or CLAHE (clip 1-4, 4x4 to 8x8 tiles)."""
    b = x.shape[0]
    r = torch.rand(b, generator=g)
    clips = torch.rand(b, generator=g) * (CLAHE_CLIP[1] - CLAHE_CLIP[0]) + CLAHE_CLIP[0]
    tiles = torch.randint(CLAHE_TILES[0], CLAHE_TILES[1] + 1, (b,), generator=g)
    if not bool((r < P_EQUALISE + P_CLAHE).any()):
        return x
    x = x.clone()
    for i in range(b):
        if r[i] < P_EQUALISE:
            x[i] = _equalise(x[i])
        elif r[i] < P_EQUALISE + P_CLAHE:
            x[i] = _clahe(x[i], float(clips[i]), int(tiles[i]))
    return x


def _style_after(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per image: a stronger blur or an unsharp-mask sharpening, a resolution
    drop (to 25-70 % and back up, bilinear or nearest), JPEG re-compression."""
    from training.train.augment import _blur, _jpeg

    b, _, h, w = x.shape
    r = torch.rand(b, generator=g)
    sigmas = torch.rand(b, generator=g) * (STRONG_BLUR_SIGMA[1] - STRONG_BLUR_SIGMA[0]) + STRONG_BLUR_SIGMA[0]
    amounts = torch.rand(b, generator=g) * (SHARPEN[1] - SHARPEN[0]) + SHARPEN[0]
    lowres = torch.rand(b, generator=g) < P_LOWRES
    factors = torch.rand(b, generator=g) * (LOWRES[1] - LOWRES[0]) + LOWRES[0]
    nearest = torch.rand(b, generator=g) < 0.3
    jpeg = torch.rand(b, generator=g) < P_JPEG
    qualities = torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (b,), generator=g)
    out = []
    for i in range(b):
        im = x[i:i + 1]
        if r[i] < P_STRONG_BLUR:
            im = _blur(im, float(sigmas[i]))
        elif r[i] < P_STRONG_BLUR + P_SHARPEN:
            im = im + float(amounts[i]) * (im - _blur(im, 1.0))
        if lowres[i]:
            s = max(8, int(round(h * float(factors[i]))))
            im = F.interpolate(im, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
            im = F.interpolate(im, size=(h, w), mode="nearest" if nearest[i] else "bilinear",
                               **({} if nearest[i] else {"align_corners": False}))
        im = im.clamp(0.0, 1.0)
        if jpeg[i]:
            im = _jpeg(im[0], int(qualities[i]))[None]
        out.append(im)
    return torch.cat(out)


def augment_pairs(x: torch.Tensor, y: torch.Tensor, g: torch.Generator, invert_p: float,
                  style: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` image (B,1,S,S) in [0,1], ``y`` mask (B,1,S,S) in {0,1}.

    ``style``: also the source-style changes (equalisation / CLAHE first,
    sharpen or strong blur, resolution drop, JPEG after the grey-level curve);
    without it the random draws are exactly those of the original recipe."""
    b = x.shape[0]

    def u(lo, hi):
        return torch.rand(b, generator=g) * (hi - lo) + lo

    if style:
        x = _style_before(x, g)
    ang = u(-10, 10) * math.pi / 180
    scale = u(0.75, 1.15)
    tx, ty = u(-0.16, 0.16), u(-0.16, 0.16)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    fill = torch.rand(b, generator=g).view(b, 1, 1, 1) * 0.3  # film edge: dark or grey, not only black
    x = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
    y = (F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False) >= 0.5).float()
    gamma = torch.exp(u(math.log(0.5), math.log(2.0))).view(b, 1, 1, 1)
    x = x.clamp(1e-4, 1).pow(gamma)
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = (x - mean) * u(0.7, 1.3).view(b, 1, 1, 1) + mean + u(-0.1, 0.1).view(b, 1, 1, 1)
    blur = torch.rand(b, generator=g) < 0.25
    if blur.any():
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
        xb = F.conv2d(F.pad(x[blur], (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5))
        xb = F.conv2d(F.pad(xb, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1))
        x[blur] = xb
    if style:
        x = _style_after(x.clamp(0, 1), g)
    noise = (torch.rand(b, generator=g) < 0.3).float().view(b, 1, 1, 1) * u(0.0, 0.05).view(b, 1, 1, 1)
    x = x + noise * torch.randn(x.shape, generator=g)
    x = x.clamp(0, 1)
    inv = (torch.rand(b, generator=g) < invert_p).view(b, 1, 1, 1)
    x = torch.where(inv, 1 - x, x)
    return x, y


# --------------------------------------------------------------------------- metrics


def dice_per_image(pred_mask: torch.Tensor, true_mask: torch.Tensor) -> np.ndarray:
    """MONAI's DiceMetric on binary masks (B,1,S,S) -> per-image Dice."""
    from monai.metrics import DiceMetric

    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    return metric(y_pred=pred_mask.float(), y=true_mask.float()).view(-1).cpu().numpy()


def bootstrap_mean_ci(values: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    v = np.asarray(values, dtype=np.float64)
    means = v[rng.integers(0, len(v), size=(n, len(v)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _predict(net, imgs: np.ndarray, device, batch: int = 32) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for s in range(0, len(imgs), batch):
            x = torch.from_numpy(imgs[s:s + batch]).float().div_(255.0)[:, None].to(device)
            out.append((torch.sigmoid(net(x)) >= 0.5).cpu())
    return torch.cat(out)


# --------------------------------------------------------------------------- training


def _save_ckpt(obj, path: Path) -> None:
    atomic.write_with(path, lambda tmp: torch.save(obj, str(tmp)))


def seg_train_events(cfg: SegTrainConfig, *, resume: bool = False,
                     should_stop: Callable[[], bool] | None = None) -> Iterator[Event]:
    """Train (or resume) the lung segmenter; yields events, ends with kind 'done'."""
    stop = should_stop or (lambda: False)
    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    try:
        yield from _seg_train(cfg, resume, stop)
    finally:
        torch.set_num_threads(threads_before)  # the caller's process keeps its own setting


def _evaluate(net, x: torch.Tensor, y: torch.Tensor, loss_fn, device, batch: int = 32) -> tuple[np.ndarray, float]:
    """Per-image Dice and the mean loss of ``net`` on ``x`` (N,1,S,S), one forward pass per batch."""
    dice, loss_sum = [], 0.0
    with torch.inference_mode():
        for s in range(0, len(x), batch):
            xb, yb = x[s:s + batch].to(device), y[s:s + batch].to(device)
            logits = net(xb)
            loss_sum += float(loss_fn(logits, yb)) * len(xb)
            dice.append(dice_per_image((torch.sigmoid(logits) >= 0.5).cpu(), yb.cpu()))
    return np.concatenate(dice), loss_sum / max(len(x), 1)


def dice_summary(d: np.ndarray, inv: np.ndarray | None = None) -> dict[str, Any]:
    """Mean (95 % bootstrap CI), median, worst and count below 0.80 of per-image Dice values."""
    lo, hi = bootstrap_mean_ci(d)
    out = {"test_pairs": int(len(d)), "dice_mean": float(d.mean()), "dice_ci95": [lo, hi],
           "dice_median": float(np.median(d)), "dice_min": float(d.min()), "dice_below_0_80": int((d < 0.80).sum())}
    if inv is not None:
        ilo, ihi = bootstrap_mean_ci(inv)
        out.update({"dice_inverted_mean": float(inv.mean()), "dice_inverted_ci95": [ilo, ihi],
                    "dice_inverted_median": float(np.median(inv)), "dice_inverted_min": float(inv.min()),
                    "dice_inverted_below_0_80": int((inv < 0.80).sum())})
    return out


def _init_weights(net, cfg: SegTrainConfig) -> str:
    """Load ``cfg.init``'s weights into ``net``; returns a line saying what it was."""
    from training.gate.segmenter_net import load_segmenter_module

    src, info = load_segmenter_module(cfg.init)
    if list(info.features) != list(cfg.features):
        raise DataError(f"{Path(cfg.init).name} has features {list(info.features)}, this run {list(cfg.features)}; "
                        "fine-tuning needs the same network.")
    net.load_state_dict(src.state_dict())
    return (f"fine-tuned from {Path(cfg.init).name} (created {info.created}, trained on "
            f"{info.training.get('data', '?')})")


def _prepare_data(cfg: SegTrainConfig, run: Path) -> Iterator[Event]:
    """Read the pairs of every source, write the run's split.csv and config.json, check that every
    source has train, val and test pairs; yields log events and returns the data."""
    yield Event("log", f"reading image + mask pairs from {', '.join(cfg.sources())}")
    data = load_sources(cfg)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset", "file", "label", "split"])
    w.writerows(zip((data.names[k] for k in data.source), data.files, data.labels, data.splits))
    atomic.write_text(run / "split.csv", buf.getvalue())
    atomic.write_json(run / "config.json", cfg.to_dict())
    idx = {sp: data.index(sp) for sp in ("train", "val", "test")}
    n_src = len(data.names)
    train_by_source = [data.index("train", k) for k in range(n_src)]
    val_by_source = [data.index("val", k) for k in range(n_src)]
    for k, name in enumerate(data.names):
        if len(train_by_source[k]) == 0 or len(val_by_source[k]) == 0 or len(data.index("test", k)) == 0:
            raise DataError(f"{name}: every source needs train, val and test pairs ({data.counts()[name]}).")
    counts = data.counts()
    yield Event("data", f"{len(idx['train'])} train / {len(idx['val'])} val / {len(idx['test'])} test pairs"
                + ("" if n_src == 1 else " (" + "; ".join(
                    f"{n}: {c['train']}/{c['val']}/{c['test']}, {r}" for (n, c), r in zip(counts.items(),
                                                                                    data.split_rules)) + ")"),
                metrics={k: int(len(v)) for k, v in idx.items()})

    return data


def _finish(cfg: SegTrainConfig, run: Path, net, data, idx, history, best, init_line, xy, loss_fn, device) -> Event:
    """Test the best epoch on every source's test pairs (as stored and inverted), write the metrics,
    curves, model file and report; returns the 'done' event."""
    x_all, y_all = xy
    counts = data.counts()
    n_src = len(data.names)
    per_epoch = cfg.samples_per_epoch if cfg.samples_per_epoch > 0 else len(idx["train"])
    ck_dir = run / "checkpoints"
    # test with the best epoch's weights: every source's test pairs, as stored and with grey levels inverted
    net.load_state_dict(torch.load(str(ck_dir / "best.pt"), map_location="cpu", weights_only=True)["model"])
    net.eval()
    test_dice, _ = _evaluate(net, x_all[idx["test"]], y_all[idx["test"]], loss_fn, device)
    inv_dice, _ = _evaluate(net, 1.0 - x_all[idx["test"]], y_all[idx["test"]], loss_fn, device)
    metrics = dice_summary(test_dice, inv_dice)
    metrics.update({"best_epoch": int(best["epoch"]), "val_dice": float(best["val_dice"])})
    if n_src > 1:
        src_of_test = data.source[idx["test"]]
        metrics["pooled_over"] = data.names
        metrics["per_source"] = {name: dice_summary(test_dice[src_of_test == k], inv_dice[src_of_test == k])
                                 for k, name in enumerate(data.names)}
    atomic.write_json(run / "test_metrics.json", metrics)
    _write_curves(run / "curves.png", history, int(best["epoch"]))
    aug = "rotation, scale, shift, gamma, contrast, blur, noise, inversion p=%.2f" % cfg.invert_p
    if cfg.style_aug:
        aug += ("; source style: histogram equalisation p=%.2f or CLAHE p=%.2f, strong blur p=%.2f or sharpen "
                "p=%.2f, resolution drop p=%.2f, JPEG p=%.2f" % (P_EQUALISE, P_CLAHE, P_STRONG_BLUR, P_SHARPEN,
                                                                   P_LOWRES, P_JPEG))
    training = {"data": " + ".join(data.names), "pairs": {k: int(len(v)) for k, v in idx.items()},
                "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
                "loss": "monai DiceCELoss(sigmoid=True)", "optimizer": "AdamW + one-cycle",
                "augmentation": aug, "init": init_line}
    if n_src > 1 or cfg.samples_per_epoch > 0 or cfg.split_files:
        training["sources"] = [{"data": n, "pairs": counts[n], "split": r} for n, r in zip(data.names, data.split_rules)]
        training["samples_per_epoch"] = per_epoch if cfg.samples_per_epoch <= 0 else (
            f"{cfg.samples_per_epoch}, balanced between sources")
        training["selection"] = "epoch with the highest mean over sources of the validation Dice"
    info = SegmenterInfo(features=list(cfg.features), input_size=cfg.size, metrics=metrics, training=training)
    save_segmenter(net, info, run / DEFAULT_SEGMENTER_NAME)
    atomic.write_text(run / "report.md", _report(cfg, history, metrics, idx, data))
    lo, hi = metrics["dice_ci95"]
    return Event("done", f"test Dice {metrics['dice_mean']:.4f} (95 % CI {lo:.4f}-{hi:.4f})", metrics=metrics)




def _optimiser(net, cfg: SegTrainConfig, n_train: int):
    """AdamW + one-cycle schedule over the whole run; returns (optimiser, scheduler, steps per epoch)."""
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    per_epoch = cfg.samples_per_epoch if cfg.samples_per_epoch > 0 else n_train
    steps_per_epoch = math.ceil(per_epoch / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    # OneCycleLR divides by zero when its warm-up is exactly one step (10 steps in all at 0.1)
    pct_start = 0.1 if abs(0.1 * total_steps - 1.0) > 1e-9 else 0.15
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=pct_start)
    return opt, sched, steps_per_epoch


def _seg_train(cfg: SegTrainConfig, resume: bool, stop: Callable[[], bool]) -> Iterator[Event]:
    from monai.losses import DiceCELoss

    run = Path(cfg.out_dir)
    run.mkdir(parents=True, exist_ok=True)
    ck_dir = run / "checkpoints"
    device = torch.device(cfg.device)

    data = yield from _prepare_data(cfg, run)
    idx = {sp: data.index(sp) for sp in ("train", "val", "test")}
    n_src = len(data.names)
    train_by_source = [data.index("train", k) for k in range(n_src)]

    torch.manual_seed(cfg.seed)
    net = build_segmenter(cfg.features).to(device)
    init_line = "scratch"
    if cfg.init:
        init_line = _init_weights(net, cfg)
        yield Event("log", init_line)
    loss_fn = DiceCELoss(sigmoid=True)
    opt, sched, steps_per_epoch = _optimiser(net, cfg, len(idx["train"]))
    g = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    best: dict | None = None
    start_epoch = 1
    last = ck_dir / "last.pt"
    if resume and last.is_file():
        ck = torch.load(str(last), map_location="cpu", weights_only=False)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        g.set_state(ck["gen"])
        history, best, start_epoch = ck["history"], ck["best"], ck["epoch"] + 1
        yield Event("log", f"resumed after epoch {ck['epoch']}")
    x_all = torch.from_numpy(data.imgs).float().div_(255.0)[:, None]
    y_all = torch.from_numpy(data.masks).float()[:, None]

    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        order = epoch_order(train_by_source, cfg.samples_per_epoch, g)
        total, n_seen = 0.0, 0
        for b in range(steps_per_epoch):
            if stop():
                raise TrainingCancelled("Training was cancelled; resume continues from the last finished epoch.")
            sel = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x, y = augment_pairs(x_all[sel], y_all[sel], g, cfg.invert_p, style=cfg.style_aug)
            x, y = x.to(device), y.to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(sel)
            n_seen += len(sel)
            yield Event("batch", epoch=epoch, epochs=cfg.epochs, batch=b + 1, batches=steps_per_epoch,
                        metrics={"loss": float(loss.detach())})
        net.eval()
        val_dice, val_loss = _evaluate(net, x_all[idx["val"]], y_all[idx["val"]], loss_fn, device)
        src_of_val = data.source[idx["val"]]
        per_source = {name: float(val_dice[src_of_val == k].mean()) for k, name in enumerate(data.names)}
        h = {"epoch": epoch, "train_loss": total / max(n_seen, 1), "val_loss": val_loss,
             # chosen by: the mean over sources of their mean validation Dice (each source counts the same)
             "val_dice": float(np.mean(list(per_source.values()))), "lr": float(opt.param_groups[0]["lr"]),
             "seconds": time.perf_counter() - t0}
        if n_src > 1:
            h.update({f"val_dice[{name}]": v for name, v in per_source.items()})
        history.append(h)
        if best is None or h["val_dice"] > best["val_dice"]:
            best = dict(h)
            _save_ckpt({"model": net.state_dict(), "epoch": epoch}, ck_dir / "best.pt")
        _save_ckpt({"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "gen": g.get_state(), "history": history, "best": best, "epoch": epoch}, last)
        atomic.write_json(run / "history.json", history)
        detail = "" if n_src == 1 else " (" + ", ".join(f"{n} {v:.4f}" for n, v in per_source.items()) + ")"
        yield Event("epoch", f"epoch {epoch}: val Dice {h['val_dice']:.4f}{detail}, {h['seconds']:.0f} s",
                    epoch=epoch, epochs=cfg.epochs, metrics=h)

    yield _finish(cfg, run, net, data, idx, history, best, init_line, (x_all, y_all), loss_fn, device)


def _write_curves(path: Path, history: list[dict], best_epoch: int) -> None:
    from matplotlib.figure import Figure

    from training.train.plots import save_figure

    fig = Figure(figsize=(9, 3.4))
    ax_l, ax_d = fig.subplots(1, 2)
    ep = [h["epoch"] for h in history]
    ax_l.plot(ep, [h["train_loss"] for h in history], "o-", ms=3, label="train")
    ax_l.plot(ep, [h["val_loss"] for h in history], "s-", ms=3, label="validation")
    ax_l.set_title("Dice + cross-entropy loss")
    ax_d.plot(ep, [h["val_dice"] for h in history], "s-", ms=3, color="C1", label="validation Dice")
    ax_d.set_ylim(max(0.0, min(h["val_dice"] for h in history) - 0.02), 1.0)
    ax_d.set_title("Validation Dice")
    for ax in (ax_l, ax_d):
        ax.axvline(best_epoch, color="grey", ls=":", lw=1, label=f"chosen epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _report(cfg: SegTrainConfig, history: list[dict], m: dict, idx: dict, data: SegData | None = None) -> str:
    secs = sum(h["seconds"] for h in history)
    names = data.names if data is not None else [Path(cfg.data_dir).name]
    rules = data.split_rules if data is not None else [f"stratified by label, seed {cfg.seed}"]
    counts = data.counts() if data is not None else {}
    src_lines = [f"* `{n}`: {counts[n]['train']} train / {counts[n]['val']} validation / {counts[n]['test']} test "
                 f"pairs; split {r}" for n, r in zip(names, rules)] if counts else []
    init = f"fine-tuned from `{cfg.init}`" if cfg.init else "from scratch"
    per = cfg.samples_per_epoch
    L = ["# Lung segmenter training run", "",
         f"Data: {' + '.join(f'`{d}`' for d in cfg.sources())} ({len(idx['train'])} train / {len(idx['val'])} "
         f"validation / {len(idx['test'])} test pairs; `split.csv`).", *src_lines, "",
         f"Network: MONAI BasicUNet, features {tuple(cfg.features)}, {cfg.size} px, {init}; loss MONAI DiceCELoss; "
         f"{cfg.epochs} epochs of {per if per > 0 else len(idx['train'])} pairs"
         f"{' (balanced between sources)' if per > 0 and len(names) > 1 else ''}, batch {cfg.batch_size}, "
         f"AdamW lr {cfg.lr} one-cycle; source-style augmentation {'on' if cfg.style_aug else 'off'}; "
         f"{secs / 60:.1f} min of training.",
         "", "| test set | pairs | mean Dice | 95 % CI (bootstrap) | median | min | < 0.80 |",
         "|---|---|---|---|---|---|---|"]

    def rows(label: str, r: dict) -> list[str]:
        lo, hi = r["dice_ci95"]
        ilo, ihi = r["dice_inverted_ci95"]
        return [f"| {label} | {r['test_pairs']} | {r['dice_mean']:.4f} | {lo:.4f}-{hi:.4f} | "
                f"{r['dice_median']:.4f} | {r['dice_min']:.4f} | {r.get('dice_below_0_80', '')} |",
                f"| same, grey levels inverted | {r['test_pairs']} | {r['dice_inverted_mean']:.4f} | "
                f"{ilo:.4f}-{ihi:.4f} | {r.get('dice_inverted_median', 0):.4f} | {r.get('dice_inverted_min', 0):.4f} "
                f"| {r.get('dice_inverted_below_0_80', '')} |"]

    for name, r in m.get("per_source", {}).items():
        L += rows(f"`{name}` held-out pairs", r)
    L += rows("all held-out pairs" if "per_source" in m else "held-out pairs", m)
    L += ["", f"Chosen epoch {m['best_epoch']} (highest validation Dice {m['val_dice']:.4f}"
          f"{', mean over sources' if len(names) > 1 else ''}).", "", "![curves](curves.png)", ""]
    return "\n".join(L)


def run_seg_training(cfg: SegTrainConfig, on_event: Callable[[Event], None] | None = None, *,
                     resume: bool = False, should_stop: Callable[[], bool] | None = None) -> dict:
    result: dict = {}
    run = Path(cfg.out_dir)
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "events.jsonl", "a", encoding="utf-8") as log:
        for ev in seg_train_events(cfg, resume=resume, should_stop=should_stop):
            if ev.kind != "batch":
                log.write(json.dumps(ev.to_dict(), default=float) + "\n")
                log.flush()
            if on_event:
                on_event(ev)
            if ev.kind == "done":
                result = ev.metrics
    return result


__all__ = ["SegTrainConfig", "SegData", "seg_train_events", "run_seg_training", "load_pairs", "load_sources",
           "fixed_split", "epoch_order", "augment_pairs", "dice_per_image", "dice_summary", "bootstrap_mean_ci"]
