"""Training speed: our engine vs a naive fp32 loop, same model, same images.

naive : every epoch decodes PNGs with PIL + torchvision transforms (DataLoader,
        batch 32), fp32, contiguous memory format.
engine: images decoded once into a uint8 cache, channels_last, and the
        precision the engine picks for this device (bf16 autocast on CPUs with
        native bf16, fp16 AMP on CUDA, else fp32) - i.e. training.train.trainer's path.

Prints seconds per batch and images/s for both, and the ratio.  Example:

    .venv/bin/python bench/bench_train.py --n 96 --arch resnet50 [--precision bf16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.common.autocast import choose_precision  # noqa: E402
from training.common.device import pick_device  # noqa: E402
from training.model.networks import build_model  # noqa: E402
from training.train.data import decode_all, scan_folders  # noqa: E402
from training.train.steps import train_step  # noqa: E402
from training.train.trainer import to_batch  # noqa: E402


def naive_epoch(model, paths, labels, device, batch):
    import torchvision.transforms as T
    from PIL import Image

    tf = T.Compose([T.Grayscale(1), T.Resize((224, 224)), T.ToTensor()])

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            return tf(Image.open(paths[i])).expand(3, -1, -1), labels[i]

    dl = torch.utils.data.DataLoader(DS(), batch_size=batch, shuffle=True, num_workers=0)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    t = time.perf_counter()
    for x, y in dl:
        loss = F.binary_cross_entropy_with_logits(model(x.to(device)), y.float().to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def engine_epoch(model, images, labels, device, batch, precision, channels_last):
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    t = time.perf_counter()
    order = np.random.default_rng(0).permutation(len(labels))
    lab = torch.tensor(labels, dtype=torch.float32)
    for s in range(0, len(order), batch):
        sel = order[s:s + batch]
        x = to_batch(images, sel, device, channels_last=channels_last)
        train_step(model, opt, x, lab[sel].to(device), precision, device)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/covid-cxr-1000"))
    ap.add_argument("--n", type=int, default=96, help="images per timed epoch")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    a = ap.parse_args()
    device = pick_device(a.device)
    precision = choose_precision(a.precision, device)
    items = scan_folders([a.data]).items
    rng = np.random.default_rng(0)
    items = [items[i] for i in rng.choice(len(items), a.n, replace=False)]
    t = time.perf_counter()
    cache = decode_all(items, 224)
    decode_s = time.perf_counter() - t
    images = torch.from_numpy(cache.images)
    labels = cache.labels.tolist()
    torch.manual_seed(0)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {a.arch}, {a.n} images, batch {a.batch}")
    print(f"one-off decode into the cache: {decode_s:.1f} s ({a.n / decode_s:.0f} images/s)")
    # warm-up both paths on one batch
    m = build_model(a.arch).to(device)
    engine_epoch(m, images[: a.batch], labels[: a.batch], device, a.batch, "fp32", False)
    m = build_model(a.arch).to(device)
    t_naive = naive_epoch(m, [str(i.path) for i in items], labels, device, a.batch)
    m = build_model(a.arch).to(device)
    cl = a.arch != "lstm"
    if cl:
        m = m.to(memory_format=torch.channels_last)
    t_eng = engine_epoch(m, images, labels, device, a.batch, precision, cl)
    print(f"naive fp32 loop : {t_naive:7.1f} s  ({a.n / t_naive:5.1f} images/s)")
    print(f"engine ({precision}, channels_last={cl}): {t_eng:7.1f} s  ({a.n / t_eng:5.1f} images/s)")
    print(f"speed-up        : {t_naive / t_eng:.2f}x")
    print(f"extrapolated epoch of 800 images: naive {800 * t_naive / a.n:.0f} s, engine {800 * t_eng / a.n:.0f} s")


if __name__ == "__main__":
    main()
