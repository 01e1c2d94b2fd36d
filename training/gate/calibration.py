"""Calibrating the chest-radiograph gate from data, and storing the result in
the segmenter's model file.

* **Novelty models**: outline features, segmenter bottleneck features and
  coarse appearance of a sample of the classifier's *training* images (mean +
  shrunk covariance each, for Mahalanobis distances).
* **Limits**: :func:`training.gate.gate.calibrate` on the classifier's
  *validation* images plus the segmenter's own validation pairs: quantiles of
  real frontal chest X-rays only.  No non-chest image is used to set a
  threshold; ``../shared/data/not-cxr-dev`` is for measuring the gate
  (``bench/bench_gate.py``), not for fitting it.
* **Colour**: every chest film of the training and validation data is grey
  (chroma exactly 0), so a quantile cannot place the colour limit; it is fixed
  above the chroma noise that JPEG compression leaves on grey films saved as
  RGB (measured at most 0.0016; docs/GATE.md): warning from 0.005, refusal
  from 0.02 mean chroma.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from training.gate.gate import NOVELTY_REASONS, ChestGate, calibrate, measure, novelty_vectors
from training.gate.segmenter import LungSegmenter
from training.gate.segmenter_net import load_segmenter_module, save_segmenter
from training.imaging.loading import load_image

COLOUR_WARN = 0.005
COLOUR_REFUSE = 0.02


def measure_paths(seg: LungSegmenter, paths: Sequence[Path], batch: int = 16) -> Iterator[tuple[Path, dict, dict]]:
    """(path, outline measures, novelty vectors) for each readable image (polarity as loaded)."""
    for s in range(0, len(paths), batch):
        chunk, imgs, cols = [], [], []
        for p in paths[s:s + batch]:
            try:
                im = load_image(p, check_header=False)
            except Exception:
                continue
            chunk.append(p)
            imgs.append(im.pixels)
            cols.append(float(im.meta.colour or 0.0))
        for p, sg, col in zip(chunk, seg.segment_batch(imgs), cols):
            m = measure(sg, col)
            yield p, m, novelty_vectors(sg, m)


def split_paths(split_csv: Path, data_root: Path, split: str) -> list[Path]:
    with open(split_csv, newline="", encoding="utf-8") as fh:
        return [data_root / r["dataset"] / r["file"] for r in csv.DictReader(fh) if r["split"] == split]


def _vectors(measured) -> dict[str, np.ndarray]:
    return {n: np.stack([v[n] for _, _, v in measured]) for n in NOVELTY_REASONS}


def calibrate_segmenter_file(segmenter: Path, out: Path, fit_paths: Sequence[Path], val_paths: Sequence[Path], *,
                             source: str = "", report: Path | None = None,
                             more_sources: Sequence[tuple[str, Sequence[Path], Sequence[Path]]] = ()) -> dict:
    """Fit the gate on ``fit_paths`` / ``val_paths`` (and each of ``more_sources``: (name, fit paths,
    validation paths), a novelty Gaussian per source; ``training.gate.gate.calibrate``) and write the
    segmenter file ``out`` with the thresholds."""
    net, info = load_segmenter_module(segmenter)
    seg = LungSegmenter(net, info)
    fit = list(measure_paths(seg, list(fit_paths)))
    val = list(measure_paths(seg, list(val_paths)))
    more, more_val_measured = [], []
    for name, more_fit, more_val in more_sources:
        measured = list(measure_paths(seg, list(more_val)))
        more.append((name, _vectors(list(measure_paths(seg, list(more_fit)))), _vectors(measured)))
        more_val_measured += measured
    thresholds = calibrate(_vectors(fit), [m for _, m, _ in val], _vectors(val), source=source, more_sources=more)
    val += more_val_measured  # the report counts every validation film
    thresholds["colour"] = {"warn": COLOUR_WARN, "refuse": COLOUR_REFUSE}
    pol = np.array([m["polarity"] for _, m, _ in val])
    thresholds["validation_polarity"] = {"min": float(pol.min()), "q001": float(np.quantile(pol, 0.001)),
                                         "median": float(np.median(pol)), "negative": int((pol < 0).sum())}
    info.gate = json.loads(json.dumps(thresholds, default=float))
    save_segmenter(net, info, out)
    if report is not None:
        gate = ChestGate(seg, info.gate)
        decisions = [gate.decide(gate.measure(seg.segment(load_image(p, check_header=False).pixels)))[0]
                     for p, _, _ in val]
        summary = {"fit_images": len(fit), "validation_images": len(val),
                   "validation_refused": decisions.count("refused"), "validation_warned": decisions.count("warning"),
                   "source": source, "ranges": info.gate["ranges"], "novelty_refuse": info.gate["novelty_refuse"],
                   "novelty_warn": info.gate["novelty_warn"],
                   "novelty_scales": {n: g["scale"] for n, g in info.gate["novelty"].items()},
                   "colour": info.gate["colour"], "validation_polarity": thresholds["validation_polarity"]}
        from training.common import atomic

        atomic.write_text(report, json.dumps(summary, indent=2) + "\n")
    return info.gate


def main(argv: list[str] | None = None) -> int:
    """``xray-calibrate-gate``: fit the gate's thresholds and store them in a segmenter file."""
    import argparse
    import random
    import sys

    ap = argparse.ArgumentParser(prog="xray-calibrate-gate", description=main.__doc__)
    ap.add_argument("--segmenter", required=True, help="trained lung segmenter (.safetensors)")
    ap.add_argument("--out", required=True, help="segmenter file to write with the gate's thresholds")
    ap.add_argument("--split", required=True, help="the classifier's split.csv (dataset,file,label,split)")
    ap.add_argument("--data-root", required=True, help="folder holding the split's data folders")
    ap.add_argument("--fit-count", type=int, default=800, help="training images sampled for the feature space")
    ap.add_argument("--lung-run", help="segmenter run folder: its validation pairs join the validation images")
    ap.add_argument("--lung-data", help="the segmenter's data folder (images/ ...)")
    ap.add_argument("--more-source", action="append", default=[], metavar="SPLIT:DATASET",
                    help="another source of chest films: a novelty model fitted on the train rows of DATASET in "
                         "SPLIT and scaled on its val rows (repeatable); the outline ranges stay --split's")
    ap.add_argument("--report", help="write a JSON summary here")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    root = Path(args.data_root)
    train = split_paths(Path(args.split), root, "train")
    random.Random(0).shuffle(train)
    fit = sorted(train[:args.fit_count])
    val = split_paths(Path(args.split), root, "val")
    source = f"fit: {len(fit)} training images of {Path(args.split)}; validation: {len(val)} 'val' images"
    if args.lung_run and args.lung_data:
        with open(Path(args.lung_run) / "split.csv", newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r["split"] == "val"]
        # a segmenter trained on several sources names each row's data folder (dataset column)
        extra = [(root / r["dataset"] / r["file"]) if r.get("dataset") else Path(args.lung_data) / r["file"]
                 for r in rows]
        known = set(val)
        extra = [p for p in extra if p not in known]
        val += extra
        source += f" + {len(extra)} validation pairs of the lung segmenter"
    more = []
    for spec in args.more_source:
        split_csv, _, dataset = spec.rpartition(":")
        if not split_csv or not dataset:
            ap.error(f"--more-source {spec!r}: expected SPLIT:DATASET")
        rows = [p for p in split_paths(Path(split_csv), root, "train") if p.relative_to(root).parts[0] == dataset]
        random.Random(0).shuffle(rows)
        more_fit = sorted(rows[:args.fit_count])
        more_val = [p for p in split_paths(Path(split_csv), root, "val") if p.relative_to(root).parts[0] == dataset]
        if not more_fit or not more_val:
            ap.error(f"--more-source {spec!r}: no train or val rows of {dataset} in {split_csv}")
        more.append((dataset, more_fit, more_val))
        source += f"; {dataset}: {len(more_fit)} training images (its own novelty model), {len(more_val)} 'val'"
    gate = calibrate_segmenter_file(Path(args.segmenter), Path(args.out), fit, val, source=source,
                                    report=Path(args.report) if args.report else None, more_sources=more)
    print(json.dumps({k: gate[k] for k in ("ranges", "novelty_refuse", "novelty_warn", "colour")}, indent=1))
    print(f"wrote {args.out} ({source})", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
