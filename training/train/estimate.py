"""The training run-time estimate: time real training steps on this device,
then scale by batches, epochs and evaluation passes.  Used by the wizard's
"Measure on this device"; the steps are the trainer's own
(:func:`training.train.steps.train_step`, its precision and memory layout)."""

from __future__ import annotations

import math
import time
from pathlib import Path


def measure_steps(models, input_size: int, batch_size: int, device: str, threads: int, n_eval: int = 100):
    """Time training steps of each model (see the module doc); a generator whose
    every yield is a progress/cancel point: ``("device", text, cuda_available)``,
    ``("warm", arch)``, ``("tick", arch)``, ``("step", arch, seconds_per_step,
    seconds_to_build)`` per model, then ``("overhead", seconds)``."""
    import torch

    from training.common.autocast import choose_precision
    from training.common.device import pick_device
    from training.model.networks import build_model
    from training.train.steps import train_step
    from training.train.trainer import to_batch, uses_conv

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

        def step(n: int) -> None:  # the trainer's own step (training.train.steps)
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
        model = opt = None  # free them before the next architecture
        yield ("step", arch, sum(times) / len(times), t_build)
    yield ("overhead", _evaluation_seconds(max(2, n_eval)))


def _evaluation_seconds(n: int) -> float:
    """Time what the trainer does once per model after its last epoch."""
    import numpy as np
    from matplotlib.figure import Figure

    from training.model.metrics import evaluate
    from training.train.plots import draw_confusion, draw_curves, save_figure

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


def batches_per_epoch(n_train: int, batch_size: int) -> int:
    return max(1, math.ceil(n_train / max(1, batch_size)))


__all__ = ["measure_steps", "run_seconds", "batches_per_epoch"]
