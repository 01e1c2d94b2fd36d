"""Worker bodies of the training wizard: generator functions that call the core.

They run through the app's one worker pattern (``xray_gui.workers.Jobs``):
every ``yield`` hands one item to the GUI thread and is a cancel point.  No
widget is touched here; only QImage thumbnails are made (QImage is safe in
worker threads).  torch and the core are imported here, never on the GUI
thread (importing torch takes seconds).
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

THUMBS_PER_CLASS = 6
THUMB_PX = 96


def scan_task(folder: str, per_class: int = THUMBS_PER_CLASS):
    """Scan a data folder and decode a few images per class for thumbnails.

    Yields ``("scan", Scan)`` first (``DataError`` propagates: the folder
    cannot be used), then ``("thumb", class_name, path, QImage | None, reason)``
    per sampled file, then ``("decode_time", seconds_per_image)``."""
    yield from _scan(folder, per_class)


def _scan(folder: str, per_class: int):
    import training.config  # noqa: F401  (torch + torchvision: imported here, not by the Setup page on the GUI thread)
    from training.data import CLASS_NAMES, scan_folders
    from training.errors import ImageRefused
    from training.loading import load_image

    from ..images import thumbnail

    scan = scan_folders([folder])
    yield ("scan", scan)
    by_class: dict[str, list] = {c: [] for c in CLASS_NAMES}
    for it in scan.items:
        by_class[CLASS_NAMES[it.label]].append(it)
    spent, n = 0.0, 0
    for cls in reversed(CLASS_NAMES):  # COVID first, as in the paper's tables
        items = by_class[cls]
        # spread the samples over the folder instead of its first files
        step = max(1, len(items) // per_class)
        for it in items[::step][:per_class]:
            t = time.perf_counter()
            try:
                img = load_image(it.path)
            except ImageRefused as exc:
                yield ("thumb", cls, str(it.path), None, exc.reason)
                continue
            spent += time.perf_counter() - t
            n += 1
            yield ("thumb", cls, str(it.path), thumbnail(img.pixels, THUMB_PX), "")
    if n:
        yield ("decode_time", spent / n)


def estimate_task(models: list[str], input_size: int, batch_size: int, device: str, threads: int,
                  n_eval: int = 100):
    """Time training steps of each model on ``device`` at the chosen input and
    batch size.  Yields ``("device", str, cuda_available)``, then
    ``("step", arch, seconds_per_training_step, seconds_to_build)`` per model,
    then ``("overhead", seconds)``: the per-model work after the last epoch
    (four ``training.metrics.evaluate`` calls on ``n_eval`` predictions - val
    and test at two thresholds - plus the three figures).

    Per model: one small warm-up step (allocations, kernel choice), then two
    timed steps at the chosen batch size, averaged.  Weights are random (the
    time does not depend on them), precision and memory layout are the
    trainer's (``choose_precision``, channels_last for the ResNet50 models)."""
    yield from _estimate(models, input_size, batch_size, device, threads, n_eval)


def _estimate(models, input_size, batch_size, device, threads, n_eval):
    import torch

    from training.device import pick_device
    from training.models import build_model
    from training.precision import choose_precision
    from training.steps import train_step
    from training.trainer import to_batch, uses_conv

    dev = pick_device(device)
    if threads > 0:
        torch.set_num_threads(threads)
    precision = choose_precision("auto", dev)
    yield ("device", f"{dev} ({precision})", bool(torch.cuda.is_available()))
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch_size, input_size, input_size), dtype=torch.uint8, generator=gen)
    labels = torch.tensor([i % 2 for i in range(batch_size)], dtype=torch.float32)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for arch in models:
        t_build = time.perf_counter()
        model = build_model(arch, "scratch", input_size=input_size).to(dev)
        t_build = time.perf_counter() - t_build
        cl = uses_conv(arch)
        if cl:
            model.to(memory_format=torch.channels_last)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(n: int) -> None:  # the trainer's own step (training.steps)
            x = to_batch(images, list(range(n)), dev, channels_last=cl)
            train_step(model, opt, x, labels[:n].to(dev), precision, dev)

        step(min(2, batch_size))
        sync()
        yield ("warm", arch)
        times = []
        for _ in range(2):
            t = time.perf_counter()
            step(batch_size)
            sync()
            times.append(time.perf_counter() - t)
            yield ("tick", arch)
        del model, opt
        yield ("step", arch, sum(times) / len(times), t_build)
    yield ("overhead", _evaluation_seconds(max(2, n_eval)))


def _evaluation_seconds(n: int) -> float:
    """Time what the trainer does once per model after its last epoch."""
    import numpy as np
    from matplotlib.figure import Figure

    from training.metrics import evaluate
    from training.plots import draw_confusion, draw_curves, save_figure

    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    p = rng.random(n)
    t = time.perf_counter()
    m = evaluate(y, p, 0.5)
    seconds = 4 * (time.perf_counter() - t)
    import tempfile

    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        hist = [{"epoch": 1, "train_loss": 0.7, "train_acc": 0.5, "val_loss": 0.7, "val_acc": 0.5}]
        fig = Figure(figsize=(9, 3.6))
        draw_curves(fig, hist, "t", 1)
        save_figure(fig, Path(d) / "c.png")
        fig = Figure(figsize=(3.8, 3.4))
        draw_confusion(fig.add_subplot(111), m["confusion"], "t")
        save_figure(fig, Path(d) / "m.png")
    return seconds + 1.5 * (time.perf_counter() - t)  # three figures per model; two are drawn here


def run_seconds(step_s: float, batches: int, epochs: int, val_batches: int, fixed_s: float = 0.0) -> float:
    """Seconds for one model: training steps, plus one validation pass per epoch
    (a forward pass costs about a third of a training step), plus the final
    predictions of the chosen epoch (validation and test), plus ``fixed_s``
    (building the model, metrics, figures, saving)."""
    per_epoch = step_s * batches + step_s / 3 * val_batches
    return per_epoch * epochs + step_s / 3 * 2 * val_batches + fixed_s


def split_sizes(counts: dict[str, int], fractions: tuple[float, float, float]) -> dict[str, int]:
    """Images per split for a new stratified split (the rounding of
    ``training.data.stratified_split``)."""
    from training.split_rule import split_counts

    out = {"train": 0, "val": 0, "test": 0}
    for n in counts.values():
        for key, k in zip(("train", "val", "test"), split_counts(n, fractions)):
            out[key] += k
    return out


def batches_per_epoch(n_train: int, batch_size: int) -> int:
    return max(1, math.ceil(n_train / max(1, batch_size)))


def train_task(cfg, stop: threading.Event):
    """Run ``training.trainer.train_events(cfg)``; every Event goes to the GUI.

    ``stop`` is the trainer's ``should_stop`` (checked between batches and while
    the images are read); ``worker.quit()`` stops at the next event.  Either
    way the trainer leaves a consistent run folder (atomic files; a model file
    only once that model is finished)."""
    from training.trainer import train_events

    yield from train_events(cfg, should_stop=stop.is_set)


def imagenet_cached() -> bool:
    """Whether torchvision's ImageNet ResNet50 weights are in the torch cache."""
    import os

    import torch

    try:
        from torchvision.models import ResNet50_Weights

        name = os.path.basename(ResNet50_Weights.IMAGENET1K_V2.url)
    except Exception:
        return False
    return (Path(torch.hub.get_dir()) / "checkpoints" / name).is_file()


def probe_task():
    """What the Setup page needs to know about this computer (imports torch)."""
    import torch

    try:
        cuda = bool(torch.cuda.is_available())
    except RuntimeError:
        cuda = False
    yield ("probe", cuda, imagenet_cached())
