"""The one training function, used by ``xray-train`` and by the app's wizard.

``train_events(config)`` is a generator: every ``yield`` is a progress event
(and, for a Qt generator worker, a cancel point).  ``run_training(config,
on_event, should_stop)`` drives it for callers that prefer a callback; it
checks ``should_stop()`` between batches.  Nothing here touches a widget.

Run folder::

    config.json  split.csv  data.json  events.jsonl
    checkpoints/<arch>_last.pt   (each epoch, atomic: resume point)
    checkpoints/<arch>_best.pt   (best epoch by the paper's rule)
    <arch>/history.csv|json  metrics.json  curves.png  confusion.png  reliability.png
    models/<arch>.safetensors    (written once a model is finished and tested)
    report.md  report.json

Selection rule (the paper's "highest validation accuracy, lowest validation
loss"): the epoch with the highest validation accuracy; ties go to the lower
validation loss.

Under ``torchrun --nproc_per_node=N`` the same function runs with
DistributedDataParallel: each rank trains on its DistributedSampler shard,
losses/accuracies and predictions are gathered across ranks, and only rank 0
writes files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

from . import atomic
from .augment import augment_batch
from .config import TrainConfig
from .data import CLASS_NAMES, Cache, apply_manifest, decode_all, read_manifest, scan_folders, stratified_split, write_manifest
from .device import pick_device
from .precision import choose_precision
from .steps import infer_logits, train_step
from .errors import DataError, TrainingCancelled, XrayError
from .events import Event, EventKind
from .lung_input import InputSpec, model_view
from .metrics import evaluate, threshold_for_sensitivity
from .modelfile import ModelInfo, save_model
from .run_results import load_history
from .run_folder import require as require_run_folder
from .run_folder import write_error
from .models import ARCH_LABELS, build_model

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


def _write_json(path: Path, obj) -> None:
    atomic.write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


def _history_csv(history: list[dict]) -> str:
    buf = io.StringIO()
    cols = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for h in history:
        w.writerow({k: (f"{h[k]:.6f}" if isinstance(h.get(k), float) else h.get(k)) for k in cols})
    return buf.getvalue()


# --------------------------------------------------------------------------- data


def input_spec(cfg: TrainConfig) -> InputSpec:
    return InputSpec(region=cfg.region, intensity=cfg.intensity, margin=cfg.lung_margin)


def view_function(spec: InputSpec):
    """Loader pixels -> (model view, lungs found?) for ``decode_all``; None for the paper's input."""
    if spec.plain:
        return None
    segmenter = None
    if spec.needs_lungs:
        from .lungseg import LungSegmenter, default_segmenter_path

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
        from .lungseg import default_segmenter_path

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
    split_path = run_dir / "split.csv"
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
    training raises ``DataError`` with a plain reason (``training.run_folder``)."""
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
        cfg_path = run_dir / "config.json"
        if cfg.check_run_folder():
            stale = atomic.remove_stale_temp_files(run_dir)  # left by a killed process's interrupted write
        else:
            cfg.save(cfg_path)
    dist.barrier()

    def log(msg: str, kind: str = EventKind.LOG, **kw) -> Event:
        ev = Event(kind, message=msg, **kw)
        if dist.main:
            row = ev.to_dict()
            if kind in (EventKind.MODEL_SKIPPED, EventKind.MODEL_STARTED):
                row.pop("metrics", None)  # the history and results live in their own files
            with open(run_dir / "events.jsonl", "a", encoding="utf-8") as fh:
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
        _write_json(run_dir / "data.json", s)
    yield Event("data", message=(f"{s['images_used']} images ({', '.join(f'{k} {v}' for k, v in s['class_counts'].items())}); "
                                 f"{len(s['skipped'])} skipped; read in {time.time() - t0:.0f} s"),
                metrics=s)
    for sk in s["skipped"][:20]:
        yield log(f"skipped {sk['path']}: {sk['reason']}")
    if len(s["skipped"]) > 20:
        yield log(f"… and {len(s['skipped']) - 20} more skipped (see data.json)")
    if s["imbalance_ratio"] > 1.5:
        yield log(f"Class imbalance {s['imbalance_ratio']}:1"
                  + (" - balanced sampling is on." if cfg.balanced_sampling else " - consider balanced sampling."))

    images = torch.from_numpy(prep.cache.images)
    labels = torch.from_numpy(prep.cache.labels).float()
    results = {}
    for mi, arch in enumerate(cfg.models):
        done_path = run_dir / arch / "metrics.json"
        if done_path.exists() and (run_dir / "models" / f"{arch}.safetensors").exists():
            results[arch] = json.loads(done_path.read_text())
            yield log(f"{ARCH_LABELS[arch]} already finished in this run; skipped.", EventKind.MODEL_SKIPPED,
                      model=arch, metrics={"result": results[arch], "history": load_history(run_dir, arch)})
            continue
        for ev in _train_one(cfg, arch, mi, run_dir, prep, images, labels, device, precision, dist, stop, log):
            if ev.kind == "model_done":
                results[arch] = ev.metrics
            yield ev
    if dist.main:
        from .report import write_report

        write_report(run_dir)
    dist.barrier()
    yield Event("done", message=f"Finished in {time.time() - t0:.0f} s. Run folder: {run_dir}",
                metrics={"run_dir": str(run_dir), "models": {a: r.get("model_file") for a, r in results.items()}})


def _train_one(cfg, arch, mi, run_dir, prep, images, labels, device, precision, dist, stop, log) -> Iterator[Event]:
    label = ARCH_LABELS[arch]
    ck_dir = run_dir / "checkpoints"
    last_path, best_path = ck_dir / f"{arch}_last.pt", ck_dir / f"{arch}_best.pt"
    seed = cfg.seed + 1000 * (mi + 1)
    torch.manual_seed(seed)
    init = cfg.init
    if arch == "resnet50_lstm" and cfg.lstm_init:
        init = cfg.lstm_init
    if init == "from_resnet50":
        src = run_dir / "models" / "resnet50.safetensors"
        if not src.exists():
            raise DataError("The two-stage ResNet50-LSTM needs the ResNet50 of the same run: train 'resnet50' first.")
        init = str(src)
    model = build_model(arch, init, dropout=cfg.dropout, input_size=cfg.input_size)
    channels_last = uses_conv(arch)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    core = model
    if dist.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.Adam(core.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if (precision == "fp16" and device.type == "cuda") else None

    train_idx, val_idx = prep.splits["train"], prep.splits["val"]
    n_train = len(train_idx)
    per_rank = math.ceil(n_train / dist.world)
    batches = max(1, math.ceil(per_rank / cfg.batch_size))
    if cfg.max_train_batches:
        batches = min(batches, cfg.max_train_batches)

    def lr_at(epoch_float: float) -> float:
        if cfg.warmup_epochs and epoch_float < cfg.warmup_epochs:
            return cfg.lr * max(0.05, epoch_float / cfg.warmup_epochs)
        if cfg.lr_schedule == "cosine":
            span = max(1e-9, cfg.epochs - cfg.warmup_epochs)
            prog = min(1.0, (epoch_float - cfg.warmup_epochs) / span)
            return cfg.lr * 0.5 * (1 + math.cos(math.pi * prog))
        return cfg.lr

    history: list[dict] = []
    best: dict | None = None
    start_epoch = 1
    if last_path.exists():
        ck = _load_torch(last_path)
        core.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if scaler is not None and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        history, best = ck["history"], ck["best"]
        start_epoch = int(ck["epoch"]) + 1
        yield log(f"{label}: resuming after epoch {ck['epoch']}.", model=arch)
    resumed_after = len(history)
    stale = 0 if best is None else sum(1 for h in history if h["epoch"] > best["epoch"])

    ev_base = dict(model=arch, model_index=mi, model_count=len(cfg.models), epochs=cfg.epochs)
    yield log(f"{label}: training on {n_train} images, {batches} batches/epoch, {cfg.epochs} epochs.",
              EventKind.MODEL_STARTED, metrics={"history": list(history), "resumed_after": resumed_after}, **ev_base)
    pos_frac = float(labels[train_idx].mean())
    for epoch in range(start_epoch, cfg.epochs + 1):
        if cfg.early_stopping and stale >= cfg.early_stopping:
            yield log(f"{label}: early stop - no better validation epoch for {stale} epochs.", EventKind.EARLY_STOP,
                      **ev_base)
            break
        te = time.time()
        model.train()
        if cfg.freeze_backbone_epochs and hasattr(core, "backbone"):
            frozen = epoch <= cfg.freeze_backbone_epochs
            if frozen and dist.enabled:
                raise DataError("Freezing the backbone is not supported with several processes (DDP).")
            for prm in core.backbone.parameters():
                prm.requires_grad_(not frozen)
            if frozen:
                core.backbone.eval()  # keep the backbone's BatchNorm statistics as they are
        g = torch.Generator().manual_seed(seed * 7919 + epoch)
        if cfg.balanced_sampling:
            w = torch.where(labels[train_idx] > 0.5, 0.5 / pos_frac, 0.5 / (1 - pos_frac))
            order = torch.multinomial(w, n_train, replacement=True, generator=g).numpy()
            order = np.resize(order, per_rank * dist.world)[dist.rank::dist.world]
        else:
            from torch.utils.data import DistributedSampler

            sampler = DistributedSampler(range(n_train), num_replicas=dist.world, rank=dist.rank, shuffle=True,
                                         seed=seed, drop_last=False)
            sampler.set_epoch(epoch)
            order = np.fromiter(iter(sampler), dtype=np.int64)
        tot_loss = tot_correct = tot_n = 0.0
        aug_g = torch.Generator().manual_seed(seed * 31 + epoch * 1009 + dist.rank)
        for b in range(batches):
            if stop():
                raise TrainingCancelled(f"Cancelled during {label} epoch {epoch}; the last finished epoch is "
                                        "kept in the run folder and can be resumed.")
            sel = train_idx[order[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
            if len(sel) < 2:
                continue
            lr = lr_at(epoch - 1 + b / batches)
            for group in opt.param_groups:
                group["lr"] = lr
            x = to_batch(images, sel, device, channels_last=channels_last, augment=cfg.augment, generator=aug_g,
                         level=cfg.augment_level)
            y = labels[sel].to(device)
            loss_value, logits = train_step(model, opt, x, y, precision, device, scaler)
            with torch.no_grad():
                tot_loss += loss_value * len(sel)
                tot_correct += float(((logits > 0) == (y > 0.5)).sum())
                tot_n += len(sel)
            yield Event("batch", epoch=epoch, batch=b + 1, batches=batches,
                        metrics={"loss": loss_value, "lr": lr}, **ev_base)
        tot_loss, tot_correct, tot_n = dist.sum([tot_loss, tot_correct, tot_n])
        _, pv = predict_probs(core, images, val_idx, device, precision, channels_last, dist)
        yv = prep.cache.labels[val_idx].astype(np.float64)
        row = {"epoch": epoch, "train_loss": tot_loss / max(1, tot_n), "train_acc": tot_correct / max(1, tot_n),
               "val_loss": bce(pv, yv), "val_acc": float(((pv >= 0.5) == (yv > 0.5)).mean()),
               "lr": lr_at(epoch), "seconds": round(time.time() - te, 2)}
        history.append(row)
        improved = better(row, best)
        if improved:
            best = {"epoch": epoch, "val_acc": row["val_acc"], "val_loss": row["val_loss"]}
            stale = 0
        else:
            stale += 1
        if dist.main:
            require_run_folder(run_dir)  # the atomic writers would silently re-create a deleted folder
            if improved:
                _save_torch(core.state_dict(), best_path)
            _save_torch({"model": core.state_dict(), "optimizer": opt.state_dict(),
                         "scaler": scaler.state_dict() if scaler is not None else None,
                         "epoch": epoch, "history": history, "best": best}, last_path)
            atomic.write_text(run_dir / arch / "history.csv", _history_csv(history))
            _write_json(run_dir / arch / "history.json", history)
        dist.barrier()
        yield Event("epoch", epoch=epoch, metrics={**row, "best_epoch": best["epoch"], "improved": improved},
                    message=(f"{label} epoch {epoch}/{cfg.epochs}: loss {row['train_loss']:.4f} acc {row['train_acc']:.3f} | "
                             f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f}{'  *' if improved else ''} "
                             f"({row['seconds']:.0f} s)"), **ev_base)

    # ---- the chosen epoch: test, thresholds, model file, plots
    core.load_state_dict(_load_torch(best_path) if best_path.exists() else core.state_dict())
    yield log(f"{label}: evaluating epoch {best['epoch']} (best validation accuracy, ties by lower loss).",
              EventKind.EVALUATING, epoch=best["epoch"], **ev_base)
    evals: dict[str, Any] = {}
    probs: dict[str, Any] = {}
    _, pv = predict_probs(core, images, val_idx, device, precision, channels_last, dist)
    yv = prep.cache.labels[val_idx]
    thr_sens = threshold_for_sensitivity(yv, pv, cfg.target_sensitivity)
    threshold = 0.5 if cfg.threshold_rule == "0.5" else thr_sens
    for name, idx in prep.splits.items():
        if name == "train":
            continue
        _, p = predict_probs(core, images, idx, device, precision, channels_last, dist)
        y = prep.cache.labels[idx]
        evals[name] = {"at_0.5": evaluate(y, p, 0.5, seed=cfg.seed),
                       "at_operating_point": evaluate(y, p, thr_sens, seed=cfg.seed)}
        probs[name] = {"file": [f"{prep.cache.items[i].dataset}/{prep.cache.items[i].file}" for i in idx],
                       "label": y.tolist(), "p_covid": [round(float(v), 6) for v in p]}
    chosen = next(h for h in history if h["epoch"] == best["epoch"])
    result = {"arch": arch, "label": label, "best_epoch": best["epoch"], "epochs_run": len(history),
              "chosen_epoch": chosen, "threshold": threshold, "operating_point_sens": thr_sens,
              "target_sensitivity": cfg.target_sensitivity, "precision": precision, "world_size": dist.world,
              "evaluations": evals, "model_file": str(run_dir / "models" / f"{arch}.safetensors")}
    if dist.main:
        test = evals["test"]["at_0.5"]
        info = ModelInfo(
            arch=arch, name=cfg.model_name or f"{label} ({cfg.recipe} recipe)", version=time.strftime("%Y%m%d"),
            input_size=cfg.input_size, threshold=float(threshold), dropout=cfg.dropout,
            preprocessing={**ModelInfo.__dataclass_fields__["preprocessing"].default_factory(),
                           **input_spec(cfg).to_metadata()},
            operating_points={"paper_0.5": 0.5, f"sensitivity_{int(cfg.target_sensitivity * 100)}_val": float(thr_sens)},
            training={"recipe": cfg.recipe, "data": [Path(d).name for d in cfg.data_dirs],
                      "split": prep.summary["split_counts"], "init": init if not os.path.isabs(init) else Path(init).name,
                      "epochs_run": len(history), "best_epoch": best["epoch"], "lr": cfg.lr,
                      "batch_size": cfg.batch_size, "augment": cfg.augment, "augment_level": cfg.augment_level,
                      "seed": cfg.seed},
            metrics={k: test[k] for k in ("n", "accuracy", "precision", "recall", "f1", "roc_auc", "ece", "ci95",
                                          "confusion")},
            description=f"{label} trained with the '{cfg.recipe}' recipe; P(COVID) from a sigmoid output.")
        require_run_folder(run_dir)
        save_model(core, info, run_dir / "models" / f"{arch}.safetensors", half=cfg.half_weights)
        _write_json(run_dir / arch / "predictions.json", probs)
        from .plots import save_model_plots

        save_model_plots(run_dir / arch, history, result)
        _write_json(run_dir / arch / "metrics.json", result)  # written last: marks the model finished
    dist.barrier()
    t = evals["test"]["at_0.5"]
    yield Event("model_done", message=(f"{label}: test accuracy {t['accuracy']:.3f}, precision {t['precision']:.3f}, "
                                       f"recall {t['recall']:.3f}, F1 {t['f1']:.3f}, AUC {t['roc_auc']:.3f}"),
                metrics=result, **ev_base)


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
