"""Prepare and validate a model file's fast mode (int8, ``training.inference.engine_fast``)
and record it in the file.

    python -m training.release.fast_mode MODEL.safetensors --json results/fast_mode/NAME.json [--write]

1. **Calibration**: the activation ranges of the model's fp32 ONNX graph over
   ``--calibration-films`` (128) **training** films of ``results/v2/split.csv`` (both
   sources, all classes, a seeded draw), each through the app's own input path (loader,
   gate mask, lung crop, ``model_input``).  Never validation, test or external-dev films.
2. **Validation**: every film of the evaluation sets of ``training.release.evaluate_v2``
   (own test splits, the paper's 100, external-dev) classified through the app's path
   twice, fp32 and int8 (the same gate, crop and calibration; only the network's
   precision differs), compared per set against ``engine_fast.CRITERIA``: verdict
   agreement >= 99.5 %, |dP(COVID)| <= 0.02 for >= 99 % of films, ECE <= 0.05 (or, where
   fp32 already misses it, no more than 0.01 worse).
3. ``--json``: the record with per-set figures; ``--write``: the record (ranges included) into
   the model file's metadata (``fast_mode``), weights unchanged (same weights digest).  The app
   uses the fast mode only when the record says ``passed``.

The int8 graph's numbers do not depend on the CPU (7-bit weights: no u8 x s8 saturation
without VNNI), so a validation measured on an AVX2 machine holds on a VNNI / AMX one; its
speed does not, and is measured by ``bench/bench_classify.py``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from training.common import atomic
from training.common.cpu import cpu_name
from training.release.evaluate_v2 import DEFAULT_DATA_ROOT, REPO, SETS, predict_all

DEFAULT_SPLIT = REPO / "results" / "v2" / "split.csv"


def calibration_files(data_root: Path, split_file: Path, n: int, seed: int = 0) -> list[Path]:
    """A seeded draw of ``n`` training films, spread over (dataset, label) strata."""
    strata: dict[tuple[str, str], list[Path]] = {}
    for r in csv.DictReader(open(split_file, newline="")):
        if r["split"] == "train":
            strata.setdefault((r["dataset"], r["label"]), []).append(data_root / r["dataset"] / r["file"])
    rng = random.Random(seed)
    keys = sorted(strata)
    for k in keys:
        rng.shuffle(strata[k])
    out: list[Path] = []
    while len(out) < n and any(strata[k] for k in keys):
        for k in keys:
            if strata[k] and len(out) < n:
                out.append(strata[k].pop())
    return out


def prepare(model_file: Path, data_root: Path, split_file: Path, films: int, batch: int = 8) -> dict:
    """The fast-mode record without its validation: recipe and ranges."""
    import onnxruntime

    from training.inference import engine_fast
    from training.inference.classifier import Classifier
    from training.inference.engine_onnx import build_cached
    from training.model.audit import model_stamp

    clf = Classifier.from_file(model_file, device="cpu", mixed_precision=False)
    files = calibration_files(data_root, split_file, films)
    inputs = [t for t in (clf.input_of_file(p) for p in files) if t is not None]
    with tempfile.TemporaryDirectory(prefix="xray-fast-") as tmp:
        fp32, _ = build_cached(clf.model, model_stamp(clf.loaded).sha256, clf.input_size, Path(tmp))
        batches = (np.stack(inputs[i:i + batch]) for i in range(0, len(inputs), batch))
        ranges = engine_fast.calibrate(fp32, batches, Path(tmp) / "int8.onnx")
    return {"format": engine_fast.FAST_FORMAT, "engine": f"ONNX Runtime {onnxruntime.__version__} int8",
            "recipe": engine_fast.RECIPE,
            "calibration": f"{len(inputs)} training films of {split_file.name} (seeded draw over source and class)",
            "ranges": ranges}


def validate(model_file: Path, record: dict, data_root: Path, split_file: Path) -> dict:
    """fp32 and int8 rows of every evaluation set, compared: the record's ``validation``."""
    from training.inference import engine_fast

    t0 = time.time()
    fp32 = predict_all(model_file, data_root, split_file, explain=False, sets=SETS)
    t1 = time.time()
    fast = predict_all(model_file, data_root, split_file, explain=False, sets=SETS, precision="int8",
                       fast_mode=record)
    t2 = time.time()
    sets = {}
    for name in SETS:
        a = [r for r in fp32 if r["set"] == name]
        b = [r for r in fast if r["set"] == name]
        if a:
            sets[name] = engine_fast.set_agreement(a, b)
    return engine_fast.validation_record(
        sets, measured_on=f"{cpu_name()}, {time.strftime('%Y-%m-%d')}",
        seconds={"fp32": round(t1 - t0, 1), "int8": round(t2 - t1, 1)})


SET_NAMES = {"new_test": "own test (new set)", "kaggle_test": "own test (Kaggle)", "paper_test": "paper's 100",
             "external_dev": "external-dev"}


def render_table(records: dict[str, dict]) -> str:
    """The docs' table of fast-mode validations: ``{model file name: record (the --json output)}``."""
    from training.model.metrics import wilson

    def share_ci(k: int, n: int) -> str:
        lo, hi = wilson(k, n)
        return f"{k / n:.1%} ({100 * lo:.1f}-{100 * hi:.1f})"

    lines = ["| model | set | films | verdicts agree (95 % CI) | \\|dP(COVID)\\| <= 0.02 (95 % CI) "
             "| median / largest \\|dP\\| | ECE fp32 -> int8 | criteria |", "|---|---|---|---|---|---|---|---|"]
    for model, rec in records.items():
        v = rec["validation"]
        for name, f in v["sets"].items():
            missed = v.get("missed", {}).get(name)
            within = int(round(f["dp_within_limit"] * f["n"]))
            lines.append(f"| {model} | {SET_NAMES.get(name, name)} | {f['n']} | {f['verdicts_agree']}: "
                         f"{share_ci(f['verdicts_agree'], f['n'])} | {share_ci(within, f['n'])} | {f['dp_median']:.4f} / "
                         f"{f['dp_max']:.3f} | {f['ece_fp32']:.3f} -> {f['ece_fast']:.3f} | "
                         f"{'met' if not missed else '**missed**'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.release.fast_mode", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, nargs="?")
    ap.add_argument("--json", type=Path, help="where to write the record and its figures")
    ap.add_argument("--table", type=Path, nargs="+", help="records (--json outputs) -> print the docs' table")
    ap.add_argument("--write", action="store_true", help="store the record in the model file")
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--split", type=Path, default=DEFAULT_SPLIT)
    ap.add_argument("--calibration-films", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    if a.table:
        print(render_table({json.loads(p.read_text())["model"]: json.loads(p.read_text()) for p in a.table}))
        return 0
    if a.model is None or a.json is None:
        ap.error("give MODEL and --json (or --table)")
    import torch

    from training.inference.engine_fast import summary_lines
    from training.model.modelfile import read_info, rewrite_info

    torch.set_num_threads(a.threads)
    record = prepare(a.model, a.data_root, a.split, a.calibration_films)
    record["validation"] = validate(a.model, record, a.data_root, a.split)
    shown = {k: v for k, v in record.items() if k != "ranges"}
    atomic.write_json(a.json, {**shown, "model": a.model.name, "ranges_tensors": len(record["ranges"]["data"])})
    print("\n".join(summary_lines(record)))
    if a.write:
        info, _ = read_info(a.model)
        info.fast_mode = record
        rewrite_info(a.model, info)
        print(f"recorded in {a.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
