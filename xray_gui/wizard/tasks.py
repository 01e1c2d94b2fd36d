"""Worker bodies of the training wizard: generator functions that call the core.

They run through the app's one worker pattern (``xray_gui.workers.Jobs``):
every ``yield`` hands one item to the GUI thread and is a cancel point.  No
widget is touched here; only QImage thumbnails are made (QImage is safe in
worker threads).  torch and the core are imported here, never on the GUI
thread (importing torch takes seconds).
"""

from __future__ import annotations

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
    import training.train.config  # noqa: F401  (torch + torchvision: imported here, not by the Setup page on the GUI thread)
    from training.common.errors import ImageRefused
    from training.imaging.loading import load_image
    from training.train.data import CLASS_NAMES, scan_folders

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
    (four ``training.model.metrics.evaluate`` calls on ``n_eval`` predictions - val
    and test at two thresholds - plus the three figures).

    Per model: one small warm-up step (allocations, kernel choice), then two
    timed steps at the chosen batch size, averaged.  Weights are random (the
    time does not depend on them), precision and memory layout are the
    trainer's (``choose_precision``, channels_last for the ResNet50 models)."""
    from training.train.estimate import measure_steps

    yield from measure_steps(models, input_size, batch_size, device, threads, n_eval)


def split_sizes(counts: dict[str, int], fractions: tuple[float, float, float]) -> dict[str, int]:
    """Images per split for a new stratified split (the rounding of
    ``training.train.data.stratified_split``)."""
    from training.train.split_rule import split_counts

    out = {"train": 0, "val": 0, "test": 0}
    for n in counts.values():
        for key, k in zip(("train", "val", "test"), split_counts(n, fractions)):
            out[key] += k
    return out


from training.train.estimate import batches_per_epoch, run_seconds  # noqa: E402,F401  (the core's estimate)


def train_task(cfg, stop: threading.Event):
    """Run ``training.train.trainer.train_events(cfg)``; every Event goes to the GUI.

    ``stop`` is the trainer's ``should_stop`` (checked between batches and while
    the images are read); ``worker.quit()`` stops at the next event.  Either
    way the trainer leaves a consistent run folder (atomic files; a model file
    only once that model is finished)."""
    from training.train.trainer import train_events

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
