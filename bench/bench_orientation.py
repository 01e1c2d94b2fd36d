"""Benchmark of the orientation check through the app's own path (prints figures; not a test).

Every film of a corpus (default: external-dev, evaluation only) is classified by the
shipped model as stored, rotated 90 / 180 / 270 degrees clockwise, and mirrored
left-right (``training.gate.orientation.apply_orientation``), with the gate and the
orientation check on, as the app and ``xray-classify`` run them.

    .venv/bin/python bench/bench_orientation.py --json results/orientation/bench_external_dev.json
    .venv/bin/python bench/bench_orientation.py --speed-only      # ms per image of the check (quiet machine)

Goals (issue "Know which way is up"): rotated copies >= 95 % turned upright with P(COVID)
within 0.10 of the upright film's, none classified sideways; mirrored copies flagged
>= 95 %; upright originals turned or flagged <= 0.5 %; <= 5 ms per image.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


def films(name: str, limit: int = 0) -> list[Path]:
    folder = DATA / name
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    key = "path" if "path" in rows[0] else "file"
    paths = [folder / r[key] for r in rows]
    if limit:
        paths = paths[:: max(1, len(paths) // limit)][:limit]
    return paths


def speed(detector, n: int = 100) -> dict:
    """Milliseconds per image of the orientation check (resize included), batch 1."""
    out = {}
    for shape in ((256, 256), (2048, 2500)):
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        for _ in range(5):
            detector.detect(x)
        t = []
        for _ in range(n):
            s = time.perf_counter()
            detector.detect(x)
            t.append((time.perf_counter() - s) * 1000.0)
        out[f"{shape[0]}x{shape[1]}"] = {"median_ms": float(np.median(t)), "mean_ms": float(np.mean(t))}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="external-dev")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--speed-only", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    import dataclasses

    import torch

    torch.set_num_threads(args.threads)
    from training.common.resources import default_model_path
    from training.gate.orientation import apply_orientation
    from training.imaging.loading import load_image
    from training.inference.classifier import Classifier
    from training.model.metrics import wilson

    clf = Classifier.from_file(default_model_path(), device="cpu", decode_workers=1)
    det = clf.gate.orientation
    report = {"speed_ms": speed(det), "threads": args.threads}
    print("orientation check, ms per image:", json.dumps(report["speed_ms"]))
    if args.speed_only:
        return 0
    files = films(args.corpus, args.limit)
    counts = {k: 0 for k in ("n", "upright_touched", "rot_total", "rot_turned", "rot_within", "rot_sideways",
                             "rot_refused", "mir_total", "mir_flagged", "upright_refused")}
    touched, missed = [], []
    t0 = time.time()
    for i, f in enumerate(files):
        img = load_image(f, check_header=False)
        up = clf.predict_image(img)
        counts["n"] += 1
        if up.status != "ok":
            counts["upright_refused"] += 1
            continue
        if up.rotation or up.mirrored:
            counts["upright_touched"] += 1
            touched.append(f"{f.name}: rotation {90 * up.rotation}, mirrored {up.mirrored}")
        for deg in (90, 180, 270):
            p = clf.predict_image(dataclasses.replace(img, pixels=apply_orientation(img.pixels, deg, False)))
            counts["rot_total"] += 1
            if p.status != "ok":
                counts["rot_refused"] += 1
                missed.append(f"{f.name} @{deg}: refused ({p.reason})")
            elif p.rotation == deg // 90:
                counts["rot_turned"] += 1
                counts["rot_within"] += int(abs(p.p_covid - up.p_covid) <= 0.10)
            else:
                counts["rot_sideways"] += int(p.verdict)
                missed.append(f"{f.name} @{deg}: classified as turned {90 * p.rotation}")
        m = clf.predict_image(dataclasses.replace(img, pixels=np.ascontiguousarray(img.pixels[:, ::-1])))
        counts["mir_total"] += 1
        counts["mir_flagged"] += int(m.mirrored)
        if (i + 1) % 25 == 0:
            print(f"{i + 1}/{len(files)} films, {time.time() - t0:.0f} s", file=sys.stderr)

    def share(k, n):
        lo, hi = wilson(counts[k], counts[n])
        return f"{counts[k]}/{counts[n]} = {100 * counts[k] / max(1, counts[n]):.1f} % (95 % CI {100 * lo:.1f}-{100 * hi:.1f})"

    lines = {"rotated copies turned upright": share("rot_turned", "rot_total"),
             "rotated copies turned and P(COVID) within 0.10": share("rot_within", "rot_total"),
             "rotated copies classified sideways (a verdict without the turn)": share("rot_sideways", "rot_total"),
             "rotated copies refused by the gate": share("rot_refused", "rot_total"),
             "mirrored copies flagged": share("mir_flagged", "mir_total"),
             "upright originals turned or flagged": share("upright_touched", "n"),
             "upright originals refused by the gate": share("upright_refused", "n")}
    for k, v in lines.items():
        print(f"{k}: {v}")
    report.update(corpus=args.corpus, counts=counts, figures=lines, upright_touched=touched, rotated_missed=missed,
                  model=clf.loaded.display_name, seconds=round(time.time() - t0))
    if args.json:
        from training.common import atomic

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(Path(args.json), report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
