"""Training the lung segmenter, in the trainer's pattern: a generator of
:class:`training.train.trainer.Event` (every ``yield`` is a progress and cancel
point), a checkpoint per epoch (atomic; ``resume=True`` continues from it
bit for bit in the data order), and a run folder with history, curves, a
report and the model file.

Data: a folder with ``manifest.csv`` (``file``, ``mask``, ``label`` columns)
and ``images/`` + ``masks/`` (as ``../shared/data/cxr-lung-masks-600``).
Split 80/10/10, stratified by the manifest's label, seeded; written to
``split.csv``.  Network, loss and metric are MONAI's: ``BasicUNet``,
``DiceCELoss(sigmoid=True)``, ``DiceMetric``.

Augmentation (image and mask share each geometric transform): rotation
+-10 deg, scale 0.75-1.15 (so smaller lungs with more body around them are
seen), shift +-8 %, then on the image only gamma 0.5-2.0, contrast, blur or
noise, and a random grey-level inversion (p = 0.3) so that the segmenter
finds the lungs on inverted films (needed by the polarity check).  No flips.

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
from training.gate.segmenter import (
    DEFAULT_SEGMENTER_NAME,
    SEG_FEATURES,
    SEG_SIZE,
    SegmenterInfo,
    build_segmenter,
    save_segmenter,
)
from training.train.data import stratified_split


@dataclass
class SegTrainConfig:
    data_dir: str
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- data


def load_pairs(data_dir: str | Path, size: int) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(files, labels, images uint8 (N, S, S), masks bool (N, S, S))."""
    from PIL import Image

    root = Path(data_dir)
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise DataError(f"{root} has no manifest.csv (expected file,mask,label columns).")
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if len(rows) < 10:
        raise DataError(f"{manifest} lists only {len(rows)} image + mask pairs; at least 10 are needed.")
    files, labels, imgs, masks = [], [], [], []
    for r in rows:
        try:
            im = Image.open(root / r["file"]).convert("L").resize((size, size), Image.BILINEAR)
            mk = Image.open(root / r["mask"]).convert("L").resize((size, size), Image.NEAREST)
        except (OSError, KeyError) as exc:
            raise DataError(f"pair {r.get('file')!r} cannot be read ({type(exc).__name__}).") from exc
        files.append(r["file"])
        labels.append(r.get("label", ""))
        imgs.append(np.asarray(im, dtype=np.uint8))
        masks.append(np.asarray(mk) >= 128)
    return files, labels, np.stack(imgs), np.stack(masks)


def split_pairs(labels: list[str], seed: int) -> list[str]:
    names = sorted(set(labels))
    return stratified_split([names.index(x) for x in labels], (0.8, 0.1, 0.1), seed=seed)


# --------------------------------------------------------------------------- augmentation


def augment_pairs(x: torch.Tensor, y: torch.Tensor, g: torch.Generator, invert_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` image (B,1,S,S) in [0,1], ``y`` mask (B,1,S,S) in {0,1}."""
    b = x.shape[0]

    def u(lo, hi):
        return torch.rand(b, generator=g) * (hi - lo) + lo

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


def _write_json(path: Path, obj) -> None:
    atomic.write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


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


def _seg_train(cfg: SegTrainConfig, resume: bool, stop: Callable[[], bool]) -> Iterator[Event]:
    from monai.losses import DiceCELoss

    run = Path(cfg.out_dir)
    run.mkdir(parents=True, exist_ok=True)
    ck_dir = run / "checkpoints"
    device = torch.device(cfg.device)

    yield Event("log", f"reading image + mask pairs from {cfg.data_dir}")
    files, labels, imgs, masks = load_pairs(cfg.data_dir, cfg.size)
    splits = split_pairs(labels, cfg.seed)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "label", "split"])
    w.writerows(zip(files, labels, splits))
    atomic.write_text(run / "split.csv", buf.getvalue())
    _write_json(run / "config.json", cfg.to_dict())
    idx = {s: np.array([i for i, x in enumerate(splits) if x == s]) for s in ("train", "val", "test")}
    yield Event("data", f"{len(idx['train'])} train / {len(idx['val'])} val / {len(idx['test'])} test pairs",
                metrics={k: int(len(v)) for k, v in idx.items()})

    torch.manual_seed(cfg.seed)
    net = build_segmenter(cfg.features).to(device)
    loss_fn = DiceCELoss(sigmoid=True)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(idx["train"]) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.1)
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
    x_all = torch.from_numpy(imgs).float().div_(255.0)[:, None]
    y_all = torch.from_numpy(masks).float()[:, None]

    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        order = idx["train"][torch.randperm(len(idx["train"]), generator=g).numpy()]
        total, n_seen = 0.0, 0
        for b in range(steps_per_epoch):
            if stop():
                raise TrainingCancelled("Training was cancelled; resume continues from the last finished epoch.")
            sel = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x, y = augment_pairs(x_all[sel], y_all[sel], g, cfg.invert_p)
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
        val_dice = dice_per_image(_predict(net, imgs[idx["val"]], device), y_all[idx["val"]])
        with torch.inference_mode():
            vx = x_all[idx["val"]].to(device)
            val_loss = float(loss_fn(net(vx), y_all[idx["val"]].to(device)))
        h = {"epoch": epoch, "train_loss": total / max(n_seen, 1), "val_loss": val_loss,
             "val_dice": float(val_dice.mean()), "lr": float(opt.param_groups[0]["lr"]),
             "seconds": time.perf_counter() - t0}
        history.append(h)
        if best is None or h["val_dice"] > best["val_dice"]:
            best = dict(h)
            _save_ckpt({"model": net.state_dict(), "epoch": epoch}, ck_dir / "best.pt")
        _save_ckpt({"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "gen": g.get_state(), "history": history, "best": best, "epoch": epoch}, last)
        _write_json(run / "history.json", history)
        yield Event("epoch", f"epoch {epoch}: val Dice {h['val_dice']:.4f}", epoch=epoch, epochs=cfg.epochs,
                    metrics=h)

    # test with the best epoch's weights
    net.load_state_dict(torch.load(str(ck_dir / "best.pt"), map_location="cpu", weights_only=True)["model"])
    net.eval()
    test_dice = dice_per_image(_predict(net, imgs[idx["test"]], device), y_all[idx["test"]])
    inv_dice = dice_per_image(_predict(net, 255 - imgs[idx["test"]], device), y_all[idx["test"]])
    lo, hi = bootstrap_mean_ci(test_dice)
    ilo, ihi = bootstrap_mean_ci(inv_dice)
    metrics = {"test_pairs": int(len(test_dice)), "dice_mean": float(test_dice.mean()), "dice_ci95": [lo, hi],
               "dice_median": float(np.median(test_dice)), "dice_min": float(test_dice.min()),
               "dice_inverted_mean": float(inv_dice.mean()), "dice_inverted_ci95": [ilo, ihi],
               "best_epoch": int(best["epoch"]), "val_dice": float(best["val_dice"])}
    _write_json(run / "test_metrics.json", metrics)
    _write_curves(run / "curves.png", history, int(best["epoch"]))
    info = SegmenterInfo(features=list(cfg.features), input_size=cfg.size, metrics=metrics, training={
        "data": Path(cfg.data_dir).name, "pairs": {k: int(len(v)) for k, v in idx.items()},
        "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
        "loss": "monai DiceCELoss(sigmoid=True)", "optimizer": "AdamW + one-cycle",
        "augmentation": "rotation, scale, shift, gamma, contrast, blur, noise, inversion p=%.2f" % cfg.invert_p,
        "init": "scratch"})
    save_segmenter(net, info, run / DEFAULT_SEGMENTER_NAME)
    atomic.write_text(run / "report.md", _report(cfg, history, metrics, idx))
    yield Event("done", f"test Dice {metrics['dice_mean']:.4f} (95 % CI {lo:.4f}-{hi:.4f})", metrics=metrics)


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


def _report(cfg: SegTrainConfig, history: list[dict], m: dict, idx: dict) -> str:
    lo, hi = m["dice_ci95"]
    ilo, ihi = m["dice_inverted_ci95"]
    secs = sum(h["seconds"] for h in history)
    return "\n".join([
        "# Lung segmenter training run", "",
        f"Data: `{cfg.data_dir}` ({len(idx['train'])} train / {len(idx['val'])} validation / "
        f"{len(idx['test'])} test pairs, stratified by label, seed {cfg.seed}; `split.csv`).",
        f"Network: MONAI BasicUNet, features {tuple(cfg.features)}, {cfg.size} px; loss MONAI DiceCELoss; "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, AdamW lr {cfg.lr} one-cycle; {secs / 60:.1f} min of training.",
        "", "| test set | pairs | mean Dice | 95 % CI (bootstrap) | median | min |", "|---|---|---|---|---|---|",
        f"| held-out pairs | {m['test_pairs']} | {m['dice_mean']:.4f} | {lo:.4f}-{hi:.4f} | "
        f"{m['dice_median']:.4f} | {m['dice_min']:.4f} |",
        f"| same, grey levels inverted | {m['test_pairs']} | {m['dice_inverted_mean']:.4f} | {ilo:.4f}-{ihi:.4f} | | |",
        "", f"Chosen epoch {m['best_epoch']} (highest validation Dice {m['val_dice']:.4f}).", "",
        "![curves](curves.png)", ""])


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


__all__ = ["SegTrainConfig", "seg_train_events", "run_seg_training", "load_pairs", "augment_pairs",
           "dice_per_image", "bootstrap_mean_ci"]
