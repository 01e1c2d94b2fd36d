"""Retrain ONLY the rotation net of orientation.safetensors with an added
one-sided crop augmentation (films cut off at one side), warm-started from
the current rotation net.  The mirror net is copied unchanged.

    OMP_NUM_THREADS=2 python train_crop.py --epochs 12 --out orientation_crop.safetensors
    then: python train_orientation.py thresholds --model orientation_crop.safetensors

Data rules as train_orientation.py: training rows of results/v2/split.csv
only; validation rows only for the reported validation figures; never
external-dev / test rows.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import orientation as ori  # noqa: E402
import train_orientation as T  # noqa: E402

CROP_TEXT = ("one-sided crop with p=0.5 BEFORE the D4 label (and before the style augmentation): keep 55-100 % of "
             "the width (cut off left or right), of the height (cut off top or bottom) or both (1/3 each), "
             "the kept part stretched back to the square input (aspect not kept, as the detector's resize)")


def crop_batch(x: torch.Tensor, g: torch.Generator, p: float = 0.5, lo: float = 0.55) -> torch.Tensor:
    """(N, 1, S, S) upright films -> same size; with probability p a one-sided
    crop keeping lo..1 of the width and/or height, stretched back to S x S."""
    n = x.shape[0]
    use = torch.rand(n, generator=g) < p
    mode = torch.randint(0, 3, (n,), generator=g)  # 0 width, 1 height, 2 both
    fw = lo + (1 - lo) * torch.rand(n, generator=g)
    fh = lo + (1 - lo) * torch.rand(n, generator=g)
    fw = torch.where(use & (mode != 1), fw, torch.ones(()))
    fh = torch.where(use & (mode != 0), fh, torch.ones(()))
    # anchor: +1 keeps the left / top part (cut off right / bottom), -1 keeps the right / bottom part
    sx = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    sy = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    z = torch.zeros(n)
    # output x in [-1, 1] -> input fw * x - sx * (1 - fw)
    theta = torch.stack([torch.stack([fw, z, -sx * (1 - fw)], 1), torch.stack([z, fh, -sy * (1 - fh)], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return torch.where(use[:, None, None, None], y, x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default=str(HERE / "orientation.safetensors"))
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=1e-4)
    ap.add_argument("--p-crop", type=float, default=0.5)
    ap.add_argument("--max-minutes", type=float, default=12.0, help="stop early and save after this wall time")
    ap.add_argument("--out", default=str(HERE / "orientation_crop.safetensors"))
    a = ap.parse_args()
    torch.manual_seed(T.SEED + 100)
    g = torch.Generator().manual_seed(T.SEED + 100)
    nets, meta = ori.load_model(a.base)
    net = nets["rotation"]
    size = int(meta["rotation"]["input_size"])
    d = np.load(T.CACHE)
    xtr = T.presmooth(torch.from_numpy(d["train_x"]).float().div_(255)[:, None])  # once (as train_orientation)
    xva = torch.from_numpy(d["val_x"]).float().div_(255)[:, None]
    # validation: plain, and one-sided crops of every validation film (fixed seed), 8 copies each
    va_plain = F.interpolate(xva, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    va_crop = F.interpolate(crop_batch(xva, torch.Generator().manual_seed(T.SEED + 101), p=1.0), size=(size, size),
                            mode="bilinear", align_corners=False, antialias=True)
    vx_p, vy_p = T.all_orientations(va_plain)
    vx_c, vy_c = T.all_orientations(va_crop)
    print(f"train {len(xtr)} films, threads {torch.get_num_threads()}", flush=True)
    steps = math.ceil(len(xtr) / a.batch)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=a.wd)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps * a.epochs, pct_start=0.1)
    hist = []

    def val(ep, extra):
        mp = T.summarise(T.predict(net, vx_p), vy_p.numpy(), 0.5, 0.5)
        mc = T.summarise(T.predict(net, vx_c), vy_c.numpy(), 0.5, 0.5)
        return {"epoch": ep, **extra, "val_plain_rot": mp["argmax_rot_acc"], "val_plain_acc8": mp["argmax_acc8"],
                "val_crop_rot": mc["argmax_rot_acc"], "val_crop_acc8": mc["argmax_acc8"]}

    r0 = val(0, {})
    print(json.dumps(r0), flush=True)
    t0, c0 = time.time(), time.process_time()
    done = 0
    for ep in range(a.epochs):
        net.train()
        perm = torch.randperm(len(xtr), generator=g)
        tl = tc = tn = 0
        for s in range(steps):
            idx = perm[s * a.batch:(s + 1) * a.batch]
            xb = T.augment(crop_batch(xtr[idx], g, p=a.p_crop), size, g)
            yb = torch.randint(0, 8, (len(idx),), generator=g)
            xb = T.orient_batch(xb, yb)
            logits = net(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched.last_epoch + 1 < steps * a.epochs:
                sched.step()
            tl += float(loss.detach()) * len(idx); tc += int((logits.argmax(1) == yb).sum()); tn += len(idx)
        done = ep + 1
        rec = val(done, {"train_loss": tl / tn, "train_acc8": tc / tn, "elapsed_s": round(time.time() - t0, 1),
                         "cpu_s": round(time.process_time() - c0, 1), "load_avg": round(os.getloadavg()[0], 1)})
        hist.append(rec)
        print(json.dumps(rec), flush=True)
        if time.time() - t0 > a.max_minutes * 60 and done < a.epochs:
            print(f"time limit: stopping after {done} epochs", flush=True)
            break
    net.eval()
    tr = dict(meta["rotation"]["training"])
    meta["rotation"]["training"] = {
        **tr,
        "augmentation": T.AUG_TEXT + "; " + CROP_TEXT,
        "warm_start": {"from": Path(a.base).name, "its_training": {k: tr.get(k) for k in ("epochs", "lr", "wall_time_s")}},
        "epochs": done, "epochs_planned": a.epochs, "lr": a.lr, "weight_decay": a.wd, "optimizer": "AdamW + one-cycle (pct_start 0.1)",
        "seed": T.SEED + 100, "wall_time_s": round(time.time() - t0, 1),
        "process_cpu_time_s": round(time.process_time() - c0, 1),
        "cpu": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__, "note": "fine-tune of the rotation net only; the mirror net is the one of the base file",
    }
    meta["rotation"]["history_before_finetune"] = meta["rotation"].get("history")
    meta["rotation"]["history"] = [r0] + hist
    meta["thresholds"] = {**meta["thresholds"], "chosen_on": "copied from the base model; run 'thresholds'"}
    ori.save_model(nets, meta, a.out)
    print(f"training {time.time() - t0:.0f} s (cpu {time.process_time() - c0:.0f} s); wrote {a.out}", flush=True)


if __name__ == "__main__":
    main()
