"""The one training function, used by ``xray-train`` and by the app's wizard.

``train_events(config)`` is a generator: every ``yield`` is a progress event
(and, for a Qt generator worker, a cancel point).  ``run_training(config,
on_event, should_stop)`` drives it for callers that prefer a callback; it
checks ``should_stop()`` between batches.  Nothing here touches a widget.

Run folder: config, split, data summary, events, checkpoints per model
(last and best epoch), per-model history, predictions, metrics and figures,
the model files and the report; the layout (every file name) is
``training.train.run_folder``'s.

Selection rule (the paper's "highest validation accuracy, lowest validation
loss"): the epoch with the highest validation accuracy; ties go to the lower
validation loss.

Under ``torchrun --nproc_per_node=N`` the same function runs with
DistributedDataParallel: each rank trains on its DistributedSampler shard,
losses/accuracies and predictions are gathered across ranks, and only rank 0
writes files.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

from training.common import atomic
from training.common.autocast import choose_precision
from training.common.csv_out import write_csv
from training.common.device import pick_device
from training.common.errors import DataError, TrainingCancelled, XrayError
from training.common.events import Event, EventKind
from training.model.lung_input import InputSpec, model_view
from training.model.metrics import evaluate, threshold_for_sensitivity
from training.model.modelfile import ModelInfo, save_model
from training.model.networks import ARCH_LABELS, build_model
from training.train import run_folder
from training.train.augment import augment_batch
from training.train.config import TrainConfig
from training.train.data import (
    CLASS_NAMES,
    Cache,
    apply_manifest,
    decode_all,
    read_manifest,
    scan_folders,
    stratified_split,
    write_manifest,
)
from training.train.run_folder import require as require_run_folder
from training.train.run_folder import write_error
from training.train.run_results import load_history
from training.train.steps import infer_logits, train_step

CORE_SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- distributed


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def sum(self, values: list[float]) -> list[float]:
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def gather(self, obj):
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out


def init_distributed(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as tdist

    if not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=tdist.get_rank(), world=tdist.get_world_size())


# --------------------------------------------------------------------------- helpers


def uses_conv(arch: str) -> bool:
    return arch != "lstm"


def to_batch(images: torch.Tensor, idx, device: torch.device, *, channels_last: bool,
             augment: bool = False, generator: torch.Generator | None = None, level: str = "basic") -> torch.Tensor:
    """uint8 (N, S, S) cache rows -> float (B, 3, S, S) in [0, 1] on ``device``."""
    x = images[idx].to(device, non_blocking=True).float().div_(255.0).unsqueeze(1)
    if augment:
        x = augment_batch(x, generator=generator, level=level)
    x = x.expand(-1, 3, -1, -1)
    if channels_last:
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def better(a: dict, b: dict | None) -> bool:
    """Paper's rule: higher val accuracy, ties by lower val loss."""
    if b is None:
        return True
    if a["val_acc"] > b["val_acc"] + 1e-12:
        return True
    return abs(a["val_acc"] - b["val_acc"]) <= 1e-12 and a["val_loss"] < b["val_loss"]


def _save_torch(obj, path: Path) -> None:
    # serialised in memory, then written by Python: a full disk is an OSError with its errno
    # (torch.save onto a path reports it as "RuntimeError: ... unexpected pos 704 vs 598")
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic.write_bytes(path, buf.getbuffer())


def _load_torch(path: Path):
    return torch.load(str(path), map_location="cpu", weights_only=True)


HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


def _write_history(run_dir: Path, arch: str, history: list[dict]) -> None:
    """history.csv (floats with 6 decimals) and history.json of one model."""
    write_csv(run_folder.history_csv(run_dir, arch), HISTORY_COLUMNS,
              ({k: (f"{h[k]:.6f}" if isinstance(h.get(k), float) else h.get(k)) for k in HISTORY_COLUMNS}
               for h in history))
    atomic.write_json(run_folder.history_json(run_dir, arch), history)


# --------------------------------------------------------------------------- data


def input_spec(cfg: TrainConfig) -> InputSpec:
    return InputSpec(region=cfg.region, intensity=cfg.intensity, margin=cfg.lung_margin)


def view_function(spec: InputSpec):
    """Loader pixels -> (model view, lungs found?) for ``decode_all``; None for the paper's input."""
    if spec.plain:
        return None
    segmenter = None
    if spec.needs_lungs:
        from training.gate.segmenter import LungSegmenter, default_segmenter_path

        path = default_segmenter_path()
        if path is None:
            raise DataError("A lung-region model needs the lung segmenter (resources/models/lung_segmenter."
                            "safetensors), which is not installed.")
        segmenter = LungSegmenter.from_file(path)

    def view(pixels):
        mask = segmenter.segment(pixels).mask if segmenter is not None else None
        out, box = model_view(pixels, spec, mask)
        return out, (not spec.needs_lungs) or not box.whole

    return view


def view_key(spec: InputSpec) -> str:
    """What makes a cached view valid: the spec and, for lung crops, the segmenter's weights."""
    key = json.dumps(spec.to_metadata(), sort_keys=True)
    if spec.needs_lungs:
        from training.gate.segmenter import default_segmenter_path

        path = default_segmenter_path()
        key += f"|{path.stat().st_size if path else 0}|{path.stat().st_mtime_ns if path else 0}"
    return key


@dataclass
class Prepared:
    cache: Cache
    splits: dict[str, np.ndarray]  # split name -> indices into cache
    summary: dict[str, Any]


def prepare_data(cfg: TrainConfig, run_dir: Path, dist: Dist, *, should_stop=None,
                 progress: Callable[[int, int], None] | None = None) -> Prepared:
    scan = scan_folders(cfg.data_dirs)
    split_path = run_folder.split_file(run_dir)
    manifest_src = Path(cfg.split_file) if cfg.split_file else (split_path if split_path.exists() else None)
    if manifest_src is not None:
        manifest = read_manifest(manifest_src)
        items, splits, missing = apply_manifest(scan.items, manifest)
        if missing:
            raise DataError(f"{len(missing)} images named in the split file are not in the data folders "
                            f"(e.g. {missing[0]}).")
    else:
        items, splits = scan.items, None
    if not items:
        raise DataError("The data folders hold no images.")
    spec = input_spec(cfg)
    cache = decode_all(items, cfg.input_size, should_stop=should_stop, progress=progress,
                       view=view_function(spec), cache_dir=cfg.cache_dir or None, view_key=view_key(spec))
    skipped = scan.skipped + cache.skipped
    if splits is None:
        held = set()
        if cfg.holdout_split:
            held = {k for k, (_, sp) in read_manifest(cfg.holdout_split).items() if sp == "test"}
        is_held = np.array([(it.dataset, it.file) in held for it in cache.items], dtype=bool)
        split_arr = np.empty(len(cache.items), dtype=object)
        split_arr[is_held] = "paper_test"
        rest = np.flatnonzero(~is_held)
        split_arr[rest] = stratified_split(cache.labels[rest], cfg.split, cfg.seed)
        split_list = list(split_arr)
    else:
        keep = {str(it.path) for it in cache.items}
        split_list = [s for it, s in zip(items, splits) if str(it.path) in keep]
    if dist.main and not split_path.exists():
        write_manifest(split_path, cache.items, split_list)
    arr = np.array(split_list, dtype=object)
    split_idx = {name: np.flatnonzero(arr == name) for name in sorted(set(split_list))}
    for name in CORE_SPLITS:
        if name not in split_idx or len(split_idx[name]) == 0:
            raise DataError(f"The split has no '{name}' images.")
        if len(set(cache.labels[split_idx[name]].tolist())) < 2:
            raise DataError(f"The '{name}' split holds only one class; more images are needed.")
    counts = {c: int((cache.labels == i).sum()) for i, c in enumerate(CLASS_NAMES)}
    ratio = max(counts.values()) / max(1, min(counts.values()))
    summary = {
        "data_dirs": [str(d) for d in cfg.data_dirs],
        "images_found": len(scan.items),
        "images_used": len(cache.items),
        "class_counts": counts,
        "imbalance_ratio": round(ratio, 3),
        "split_counts": {name: {c: int((cache.labels[idx] == i).sum()) for i, c in enumerate(CLASS_NAMES)}
                         for name, idx in split_idx.items()},
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "split_file": str(manifest_src) if manifest_src else "new (seed %d)" % cfg.seed,
        "input": spec.describe(),
        "lungs_not_found": cache.fallbacks,
    }
    return Prepared(cache, split_idx, summary)


# --------------------------------------------------------------------------- evaluation


def predict_probs(model: nn.Module, images: torch.Tensor, idx: np.ndarray, device, precision: str,
                  channels_last: bool, dist: Dist, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """P(COVID) for ``idx`` (sharded over ranks, gathered).  Returns (indices, probs)."""
    model.eval()
    mine = idx[dist.rank::dist.world]
    probs = []
    with torch.inference_mode():
        for s in range(0, len(mine), batch_size):
            x = to_batch(images, mine[s:s + batch_size], device, channels_last=channels_last)
            probs.append(torch.sigmoid(infer_logits(model, x, precision, device)).cpu().numpy())
    p = np.concatenate(probs) if probs else np.zeros(0, dtype=np.float32)
    parts = dist.gather((mine, p))
    all_idx = np.concatenate([a for a, _ in parts])
    all_p = np.concatenate([b for _, b in parts])
    order = np.argsort(all_idx, kind="stable")
    return all_idx[order], all_p[order].astype(np.float64)


def bce(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


# --------------------------------------------------------------------------- main loop


def train_events(cfg: TrainConfig, *, should_stop: Callable[[], bool] | None = None) -> Iterator[Event]:
    """Train every model of ``cfg``; yields progress events.  Resumes from the
    run folder's checkpoints when they exist (same config).  A full disk, an
    unwritable or read-only output folder, or a run folder deleted while
    training raises ``DataError`` with a plain reason (``training.train.run_folder``)."""
    try:
        yield from _train_events(cfg, should_stop)
    except XrayError:
        raise
    except Exception as exc:
        problem = write_error(exc, cfg.out_dir)
        if problem is None:
            raise
        raise problem from exc


def _train_events(cfg: TrainConfig, should_stop: Callable[[], bool] | None) -> Iterator[Event]:
    cfg.validate()
    stop = should_stop or (lambda: False)
    run_dir = Path(cfg.out_dir)
    device = pick_device(cfg.device)
    dist = init_distributed(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", dist.rank)))
        torch.cuda.set_device(device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    elif dist.enabled and device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // dist.world))
    precision = choose_precision(cfg.precision, device)

    stale: list[Path] = []
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = run_folder.config_file(run_dir)
        if cfg.check_run_folder():
            stale = atomic.remove_stale_temp_files(run_dir)  # left by a killed process's interrupted write
        else:
            cfg.save(cfg_path)
    dist.barrier()

    def log(msg: str, kind: str = EventKind.LOG, **kw) -> Event:
        ev = Event(kind, message=msg, **kw)
        if dist.main:
            row = ev.to_dict()
            if kind in (EventKind.MODEL_SKIPPED, EventKind.MODEL_STARTED, EventKind.MODEL_RESUMED):
                row.pop("metrics", None)  # the history and results live in their own files
            with open(run_folder.events_file(run_dir), "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"t": round(time.time(), 1), **row}) + "\n")
        return ev

    if stale:
        yield log(f"Removed {len(stale)} unfinished temporary file(s) left by an interrupted save: "
                  + ", ".join(str(p.relative_to(run_dir)) for p in stale[:5]) + (" …" if len(stale) > 5 else ""))
    yield log(f"Device {device} ({precision}); {dist.world} process(es). Reading images…")
    t0 = time.time()
    progress_box: list[tuple[int, int]] = []
    prep = prepare_data(cfg, run_dir, dist, should_stop=stop, progress=lambda i, n: progress_box.append((i, n)))
    s = prep.summary
    if dist.main:
        atomic.write_json(run_folder.data_file(run_dir), s)
    yield Event("data", message=(f"{s['images_used']} images ({', '.join(f'{k} {v}' for k, v in s['class_counts'].items())}); "
                                 f"{len(s['skipped'])} skipped; read in {time.time() - t0:.0f} s"),
                metrics=s)
    for sk in s["skipped"][:20]:
        yield log(f"skipped {sk['path']}: {sk['reason']}")
    if len(s["skipped"]) > 20:
        yield log(f"… and {len(s['skipped']) - 20} more skipped (see {run_folder.DATA})")
    if s["imbalance_ratio"] > 1.5:
        yield log(f"Class imbalance {s['imbalance_ratio']}:1"
                  + (" - balanced sampling is on." if cfg.balanced_sampling else " - consider balanced sampling."))

    images = torch.from_numpy(prep.cache.images)
    labels = torch.from_numpy(prep.cache.labels).float()
    run = _Run(cfg, run_dir, prep, images, labels, device, precision, dist, stop, log)
    results = {}
    for mi, arch in enumerate(cfg.models):
        done_path = run_folder.metrics_file(run_dir, arch)
        if done_path.exists() and run_folder.model_file(run_dir, arch).exists():
            results[arch] = json.loads(done_path.read_text())
            yield log(f"{ARCH_LABELS[arch]} already finished in this run; skipped.", EventKind.MODEL_SKIPPED,
                      model=arch, metrics={"result": results[arch], "history": load_history(run_dir, arch)})
            continue
        for ev in _train_one(run, arch, mi):
            if ev.kind == "model_done":
                results[arch] = ev.metrics
            yield ev
    if dist.main:
        from training.train.report import write_report

        write_report(run_dir)
    dist.barrier()
    yield Event("done", message=f"Finished in {time.time() - t0:.0f} s. Run folder: {run_dir}",
                metrics={"run_dir": str(run_dir), "models": {a: r.get("model_file") for a, r in results.items()}})


@dataclass
class _Run:
    """What every model of one run shares (the run's context)."""

    cfg: TrainConfig
    run_dir: Path
    prep: Prepared
    images: torch.Tensor
    labels: torch.Tensor
    device: torch.device
    precision: str
    dist: Dist
    stop: Callable[[], bool]
    log: Callable[..., Event]


@dataclass
class _ModelState:
    """One model being trained: the network, its optimiser and its progress."""

    arch: str
    index: int
    title: str  # the architecture's name as shown (ARCH_LABELS)
    seed: int
    init: str
    model: nn.Module  # DDP-wrapped when distributed
    core: nn.Module  # the plain network (state dicts, evaluation)
    opt: torch.optim.Optimizer
    scaler: Any
    channels_last: bool
    batches: int
    per_rank: int
    last_path: Path
    best_path: Path
    history: list = field(default_factory=list)
    best: dict | None = None
    stale: int = 0
    start_epoch: int = 1

    def ev_base(self, cfg: TrainConfig) -> dict[str, Any]:
        return dict(model=self.arch, model_index=self.index, model_count=len(cfg.models), epochs=cfg.epochs)


def _train_one(run: _Run, arch: str, mi: int) -> Iterator[Event]:
    """Train, choose, test and save one model: the steps below, in order."""
    cfg = run.cfg
    st = _build_model_state(run, arch, mi)
    yield from _resume(run, st)
    n_train = len(run.prep.splits["train"])
    yield run.log(f"{st.title}: training on {n_train} images, {st.batches} batches/epoch, {cfg.epochs} epochs.",
                  EventKind.MODEL_STARTED, metrics={"history": list(st.history), "resumed_after": len(st.history)},
                  **st.ev_base(cfg))
    for epoch in range(st.start_epoch, cfg.epochs + 1):
        if cfg.early_stopping and st.stale >= cfg.early_stopping:
            yield run.log(f"{st.title}: early stop - no better validation epoch for {st.stale} epochs.",
                          EventKind.EARLY_STOP, **st.ev_base(cfg))
            break
        yield from _train_epoch(run, st, epoch)
    yield from _finish_model(run, st)


def _model_init(run: _Run, arch: str) -> str:
    cfg = run.cfg
    init = cfg.lstm_init if (arch == "resnet50_lstm" and cfg.lstm_init) else cfg.init
    if init == "from_resnet50":
        src = run_folder.model_file(run.run_dir, "resnet50")
        if not src.exists():
            raise DataError("The two-stage ResNet50-LSTM needs the ResNet50 of the same run: train 'resnet50' first.")
        init = str(src)
    return init


def _build_model_state(run: _Run, arch: str, mi: int) -> _ModelState:
    cfg, device, dist = run.cfg, run.device, run.dist
    seed = cfg.seed + 1000 * (mi + 1)
    torch.manual_seed(seed)
    init = _model_init(run, arch)
    model = build_model(arch, init, dropout=cfg.dropout, input_size=cfg.input_size)
    channels_last = uses_conv(arch)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    core = model
    if dist.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.Adam(core.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if (run.precision == "fp16" and device.type == "cuda") else None
    per_rank = math.ceil(len(run.prep.splits["train"]) / dist.world)
    batches = max(1, math.ceil(per_rank / cfg.batch_size))
    if cfg.max_train_batches:
        batches = min(batches, cfg.max_train_batches)
    last_path, best_path = run_folder.checkpoint_files(run.run_dir, arch)
    return _ModelState(arch=arch, index=mi, title=ARCH_LABELS[arch], seed=seed, init=init, model=model, core=core,
                       opt=opt, scaler=scaler, channels_last=channels_last, batches=batches, per_rank=per_rank,
                       last_path=last_path, best_path=best_path)


def _resume(run: _Run, st: _ModelState) -> Iterator[Event]:
    """Continue from the model's last checkpoint, when there is one."""
    if not st.last_path.exists():
        return
    ck = _load_torch(st.last_path)
    st.core.load_state_dict(ck["model"])
    st.opt.load_state_dict(ck["optimizer"])
    if st.scaler is not None and ck.get("scaler"):
        st.scaler.load_state_dict(ck["scaler"])
    st.history, st.best = ck["history"], ck["best"]
    st.start_epoch = int(ck["epoch"]) + 1
    st.stale = 0 if st.best is None else sum(1 for h in st.history if h["epoch"] > st.best["epoch"])
    yield run.log(f"{st.title}: resuming after epoch {ck['epoch']}.", EventKind.MODEL_RESUMED, model=st.arch,
                  metrics={"history": list(st.history)})


def _lr_at(cfg: TrainConfig, epoch_float: float) -> float:
    """Warm-up, then constant or cosine, at a fractional epoch."""
    if cfg.warmup_epochs and epoch_float < cfg.warmup_epochs:
        return cfg.lr * max(0.05, epoch_float / cfg.warmup_epochs)
    if cfg.lr_schedule == "cosine":
        span = max(1e-9, cfg.epochs - cfg.warmup_epochs)
        prog = min(1.0, (epoch_float - cfg.warmup_epochs) / span)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * prog))
    return cfg.lr


def _set_frozen(run: _Run, st: _ModelState, epoch: int) -> None:
    """``freeze_backbone_epochs``: only the head learns in the first epochs."""
    if not (run.cfg.freeze_backbone_epochs and hasattr(st.core, "backbone")):
        return
    frozen = epoch <= run.cfg.freeze_backbone_epochs
    if frozen and run.dist.enabled:
        raise DataError("Freezing the backbone is not supported with several processes (DDP).")
    for prm in st.core.backbone.parameters():
        prm.requires_grad_(not frozen)
    if frozen:
        st.core.backbone.eval()  # keep the backbone's BatchNorm statistics as they are


def _epoch_order(run: _Run, st: _ModelState, epoch: int) -> np.ndarray:
    """This rank's training indices for ``epoch`` (class-balanced draw or a shuffle), seeded."""
    cfg, dist = run.cfg, run.dist
    train_idx = run.prep.splits["train"]
    n_train = len(train_idx)
    g = torch.Generator().manual_seed(st.seed * 7919 + epoch)
    if cfg.balanced_sampling:
        pos_frac = float(run.labels[train_idx].mean())
        w = torch.where(run.labels[train_idx] > 0.5, 0.5 / pos_frac, 0.5 / (1 - pos_frac))
        order = torch.multinomial(w, n_train, replacement=True, generator=g).numpy()
        return np.resize(order, st.per_rank * dist.world)[dist.rank::dist.world]
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n_train), num_replicas=dist.world, rank=dist.rank, shuffle=True,
                                 seed=st.seed, drop_last=False)
    sampler.set_epoch(epoch)
    return np.fromiter(iter(sampler), dtype=np.int64)


def _train_epoch(run: _Run, st: _ModelState, epoch: int) -> Iterator[Event]:
    """One epoch of training steps (a batch event each), then validation and checkpoints."""
    cfg, device = run.cfg, run.device
    te = time.time()
    st.model.train()
    _set_frozen(run, st, epoch)
    order = _epoch_order(run, st, epoch)
    train_idx = run.prep.splits["train"]
    tot_loss = tot_correct = tot_n = 0.0
    aug_g = torch.Generator().manual_seed(st.seed * 31 + epoch * 1009 + run.dist.rank)
    for b in range(st.batches):
        if run.stop():
            raise TrainingCancelled(f"Cancelled during {st.title} epoch {epoch}; the last finished epoch is "
                                    "kept in the run folder and can be resumed.")
        sel = train_idx[order[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
        if len(sel) < 2:
            continue
        lr = _lr_at(cfg, epoch - 1 + b / st.batches)
        for group in st.opt.param_groups:
            group["lr"] = lr
        x = to_batch(run.images, sel, device, channels_last=st.channels_last, augment=cfg.augment,
                     generator=aug_g, level=cfg.augment_level)
        y = run.labels[sel].to(device)
        loss_value, logits = train_step(st.model, st.opt, x, y, run.precision, device, st.scaler)
        with torch.no_grad():
            tot_loss += loss_value * len(sel)
            tot_correct += float(((logits > 0) == (y > 0.5)).sum())
            tot_n += len(sel)
        yield Event(EventKind.BATCH, epoch=epoch, batch=b + 1, batches=st.batches,
                    metrics={"loss": loss_value, "lr": lr}, **st.ev_base(cfg))
    tot_loss, tot_correct, tot_n = run.dist.sum([tot_loss, tot_correct, tot_n])
    row = _validate(run, st, epoch, tot_loss / max(1, tot_n), tot_correct / max(1, tot_n), time.time() - te)
    improved = _record_epoch(run, st, row)
    yield Event(EventKind.EPOCH, epoch=epoch, metrics={**row, "best_epoch": st.best["epoch"], "improved": improved},
                message=(f"{st.title} epoch {epoch}/{cfg.epochs}: loss {row['train_loss']:.4f} acc "
                         f"{row['train_acc']:.3f} | val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f}"
                         f"{'  *' if improved else ''} ({row['seconds']:.0f} s)"), **st.ev_base(cfg))


def _validate(run: _Run, st: _ModelState, epoch: int, train_loss: float, train_acc: float,
              train_seconds: float) -> dict[str, Any]:
    t0 = time.time()
    val_idx = run.prep.splits["val"]
    _, pv = predict_probs(st.core, run.images, val_idx, run.device, run.precision, st.channels_last, run.dist)
    yv = run.prep.cache.labels[val_idx].astype(np.float64)
    return {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": bce(pv, yv),
            "val_acc": float(((pv >= 0.5) == (yv > 0.5)).mean()), "lr": _lr_at(run.cfg, epoch),
            "seconds": round(train_seconds + time.time() - t0, 2)}


def _record_epoch(run: _Run, st: _ModelState, row: dict[str, Any]) -> bool:
    """Add the epoch to the history, keep the best one, write the checkpoints; True when it improved."""
    st.history.append(row)
    improved = better(row, st.best)
    if improved:
        st.best = {"epoch": row["epoch"], "val_acc": row["val_acc"], "val_loss": row["val_loss"]}
        st.stale = 0
    else:
        st.stale += 1
    if run.dist.main:
        require_run_folder(run.run_dir)  # the atomic writers would silently re-create a deleted folder
        if improved:
            _save_torch(st.core.state_dict(), st.best_path)
        _save_torch({"model": st.core.state_dict(), "optimizer": st.opt.state_dict(),
                     "scaler": st.scaler.state_dict() if st.scaler is not None else None,
                     "epoch": row["epoch"], "history": st.history, "best": st.best}, st.last_path)
        _write_history(run.run_dir, st.arch, st.history)
    run.dist.barrier()
    return improved


def _evaluate_chosen(run: _Run, st: _ModelState) -> tuple[dict, dict, float, float]:
    """The chosen epoch on every evaluation split: (evaluations, predictions, threshold, operating point)."""
    cfg, prep = run.cfg, run.prep
    val_idx = prep.splits["val"]
    _, pv = predict_probs(st.core, run.images, val_idx, run.device, run.precision, st.channels_last, run.dist)
    thr_sens = threshold_for_sensitivity(prep.cache.labels[val_idx], pv, cfg.target_sensitivity)
    threshold = 0.5 if cfg.threshold_rule == "0.5" else thr_sens
    evals: dict[str, Any] = {}
    probs: dict[str, Any] = {}
    for name, idx in prep.splits.items():
        if name == "train":
            continue
        _, p = predict_probs(st.core, run.images, idx, run.device, run.precision, st.channels_last, run.dist)
        y = prep.cache.labels[idx]
        evals[name] = {"at_0.5": evaluate(y, p, 0.5, seed=cfg.seed),
                       "at_operating_point": evaluate(y, p, thr_sens, seed=cfg.seed)}
        probs[name] = {"file": [f"{prep.cache.items[i].dataset}/{prep.cache.items[i].file}" for i in idx],
                       "label": y.tolist(), "p_covid": [round(float(v), 6) for v in p]}
    return evals, probs, threshold, thr_sens


def _model_info(run: _Run, st: _ModelState, evals: dict, threshold: float, thr_sens: float) -> ModelInfo:
    cfg = run.cfg
    test = evals["test"]["at_0.5"]
    init = st.init
    return ModelInfo(
        arch=st.arch, name=cfg.model_name or f"{st.title} ({cfg.recipe} recipe)", version=time.strftime("%Y%m%d"),
        input_size=cfg.input_size, threshold=float(threshold), dropout=cfg.dropout,
        preprocessing={**ModelInfo.__dataclass_fields__["preprocessing"].default_factory(),
                       **input_spec(cfg).to_metadata()},
        operating_points={"paper_0.5": 0.5, f"sensitivity_{int(cfg.target_sensitivity * 100)}_val": float(thr_sens)},
        training={"recipe": cfg.recipe, "data": [Path(d).name for d in cfg.data_dirs],
                  "split": run.prep.summary["split_counts"],
                  "init": init if not os.path.isabs(init) else Path(init).name,
                  "epochs_run": len(st.history), "best_epoch": st.best["epoch"], "lr": cfg.lr,
                  "batch_size": cfg.batch_size, "augment": cfg.augment, "augment_level": cfg.augment_level,
                  "seed": cfg.seed},
        metrics={k: test[k] for k in ("n", "accuracy", "precision", "recall", "f1", "roc_auc", "ece", "ci95",
                                      "confusion")},
        description=f"{st.title} trained with the '{cfg.recipe}' recipe; P(COVID) from a sigmoid output.")


def _finish_model(run: _Run, st: _ModelState) -> Iterator[Event]:
    """Load the chosen epoch, test it, write the model file, plots and metrics.json (last: marks it finished)."""
    cfg, run_dir = run.cfg, run.run_dir
    st.core.load_state_dict(_load_torch(st.best_path) if st.best_path.exists() else st.core.state_dict())
    yield run.log(f"{st.title}: evaluating epoch {st.best['epoch']} (best validation accuracy, ties by lower loss).",
                  EventKind.EVALUATING, epoch=st.best["epoch"], **st.ev_base(cfg))
    evals, probs, threshold, thr_sens = _evaluate_chosen(run, st)
    chosen = next(h for h in st.history if h["epoch"] == st.best["epoch"])
    # "label": the results.json key that plots and reports read (the architecture's title)
    result = {"arch": st.arch, "label": st.title, "best_epoch": st.best["epoch"], "epochs_run": len(st.history),
              "chosen_epoch": chosen, "threshold": threshold, "operating_point_sens": thr_sens,
              "target_sensitivity": cfg.target_sensitivity, "precision": run.precision,
              "world_size": run.dist.world, "evaluations": evals,
              "model_file": str(run_folder.model_file(run_dir, st.arch))}
    if run.dist.main:
        info = _model_info(run, st, evals, threshold, thr_sens)
        require_run_folder(run_dir)
        save_model(st.core, info, run_folder.model_file(run_dir, st.arch), half=cfg.half_weights)
        atomic.write_json(run_folder.predictions_file(run_dir, st.arch), probs)
        from training.train.plots import save_model_plots

        save_model_plots(run_folder.arch_dir(run_dir, st.arch), st.history, result)
        atomic.write_json(run_folder.metrics_file(run_dir, st.arch), result)  # written last: marks the model finished
    run.dist.barrier()
    t = evals["test"]["at_0.5"]
    yield Event(EventKind.MODEL_DONE, message=(f"{st.title}: test accuracy {t['accuracy']:.3f}, precision "
                                               f"{t['precision']:.3f}, recall {t['recall']:.3f}, F1 {t['f1']:.3f}, "
                                               f"AUC {t['roc_auc']:.3f}"), metrics=result, **st.ev_base(cfg))


def run_training(cfg: TrainConfig, on_event: Callable[[Event], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Callback form of :func:`train_events`; returns the 'done' event's metrics."""
    final: dict[str, Any] = {}
    for ev in train_events(cfg, should_stop=should_stop):
        if on_event is not None:
            on_event(ev)
        if ev.kind == "done":
            final = ev.metrics
    return final
