"""Rotation threshold check on CROPPED validation copies (validation rows only): each validation film
(loader image from the PNG) gets one one-sided crop (keep 55-100 % of width / height / both, random side,
fixed seed), stored in the 4 rotations; the detector's rotation decision at the model's threshold, plus the
threshold that the 0.1 % rule would give on these cropped copies alone.  Writes results/val_crop_<model>.json.

    OMP_NUM_THREADS=1 python val_crop_check.py orientation.safetensors orientation_crop.safetensors
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import orientation as ori  # noqa: E402
import train_orientation as T  # noqa: E402

torch.set_num_threads(1)


def crops(rows, seed=20241299):
    rng = np.random.default_rng(seed)
    out = []
    for r in rows:
        im = T.load_png(T.film_path(r["dataset"], r["file"]))
        h, w = im.shape
        mode = rng.integers(3)
        fw = rng.uniform(0.55, 1.0) if mode != 1 else 1.0
        fh = rng.uniform(0.55, 1.0) if mode != 0 else 1.0
        kw, kh = max(2, int(round(fw * w))), max(2, int(round(fh * h)))
        x0 = 0 if rng.random() < 0.5 else w - kw
        y0 = 0 if rng.random() < 0.5 else h - kh
        out.append(im[y0:y0 + kh, x0:x0 + kw])
    return out


def main():
    rows = [r for r in T.split_rows({"val"}) if f"{r['dataset']}/{r['file']}" not in T.NOT_UPRIGHT_VAL]
    ims = crops(rows)
    for mp in sys.argv[1:]:
        det = ori.OrientationDetector.from_file(HERE / mp)
        p = np.zeros((len(ims), 4, 4))
        for i, im in enumerate(ims):
            p8, _ = det.probabilities([ori.apply_orientation(im, k, False) for k in ori.ROTATIONS])
            p[i] = p8[:, :4] + p8[:, 4:]
        k_arg, pmax = p.argmax(-1), p.max(-1)
        kt = np.arange(4)[None].repeat(len(ims), 0)
        t = det.rotation_threshold
        dec = np.where((k_arg != 0) & (pmax >= t), k_arg, 0)
        rot = kt != 0
        grid = np.unique(np.concatenate([np.linspace(0.5, 0.99, 50), 1 - np.logspace(-2, -5, 31)]))
        best = ((k_arg == kt) & rot).sum() / rot.sum()
        ok = [float(g) for g in grid if ((k_arg == kt) & (pmax >= g) & rot).sum() / rot.sum() >= best - 0.001]
        t_rule = max(ok) if ok else "below 0.5"
        res = {"model": mp, "films": len(ims), "threshold": t,
               "upright_turned": int((dec[:, 0] != 0).sum()), "upright_argmax_not_0": int((k_arg[:, 0] != 0).sum()),
               "rotated_turned_back": int((dec == kt)[rot].sum()), "rotated_copies": int(rot.sum()),
               "rotated_turned_back_pct": round(100 * float((dec == kt)[rot].mean()), 2),
               "rotated_argmax_correct_pct": round(100 * float((k_arg == kt)[rot].mean()), 2),
               "turned_to_wrong_angle": int(((dec != kt) & (dec != 0)).sum()),
               "threshold_by_0.1pct_rule_on_crops_alone": t_rule}
        print(json.dumps(res), flush=True)
        (HERE / "results" / f"val_crop_{Path(mp).stem}.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
