"""Benchmark of the chest-radiograph gate, the polarity check and the lung
segmenter's speed (prints figures; not a test).

    .venv/bin/python bench/bench_gate.py                 # all corpora (about 10 min on 2 cores)
    .venv/bin/python bench/bench_gate.py --limit 200     # quick look
    .venv/bin/python bench/bench_gate.py --json out.json
    .venv/bin/python bench/bench_gate.py --speed-only    # segmenter ms per image (run on a quiet machine)

For each corpus it prints the share of inputs refused and warned
* by the whole pipeline (the loader's DICOM header checks, then the gate), and
* by the gate alone (header checks off, as after "Classify anyway"),
and, for the real chest X-ray corpora, the polarity check on the originals
(false "inverted" flags) and on the same images inverted on purpose (detected).
Targets (issue "Know what it is looking at"): not-cxr-dev >= 95 % refused;
real chest X-rays <= 1 % refused; inverted films >= 99 % detected, originals
<= 0.5 % flagged.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"

CHEST_CORPORA = ("covid-cxr-1000", "covid-cxr-extra-3000", "external-dev", "cxr-infection-3class",
                 "dicom-samples (chest)")


def corpus_files(name: str) -> list[Path]:
    if name == "dicom-samples (chest)":
        return sorted((DATA / "dicom-samples").glob("cxr*.dcm"))
    folder = DATA / name
    if name == "cxr-infection-3class":  # the films only, not their lung / infection masks
        return sorted(folder.glob("*/images/*.png"))
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() not in (".csv", ".md"))


def wilson(k: int, n: int) -> tuple[float, float]:
    from training.model.metrics import wilson as w

    return w(k, n)


def run_corpus(gate, name: str, files: list[Path], polarity: bool) -> dict:
    from training.common.errors import ImageRefused
    from training.imaging.loading import load_image

    counts = collections.Counter()
    reasons = collections.Counter()
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    inv_detected = inv_total = false_flags = 0
    examples: list[str] = []
    for f in files:
        kind = f.name.split("__")[0] if "__" in f.name else ""
        try:
            img = load_image(f, check_header=False)
        except ImageRefused as exc:
            counts["unreadable"] += 1
            by_kind[kind]["refused"] += 1
            counts["pipeline_refused"] += 1
            reasons[f"loader: {exc.code}"] += 1
            continue
        header_refused = False
        try:
            load_image(f, check_header=True)
        except ImageRefused:
            header_refused = True
        res, _ = gate.check(img.pixels, float(img.meta.colour or 0.0))
        counts[res.decision] += 1
        counts["n"] += 1
        if res.inverted:
            false_flags += 1
        refused = res.refused or header_refused
        counts["pipeline_refused" if refused else ("pipeline_warned" if res.decision == "warning" else "pipeline_ok")] += 1
        by_kind[kind]["refused" if refused else res.decision] += 1
        for r in res.reasons:
            reasons[r] += 1
        if res.decision == "warning":
            for w in res.warnings:
                reasons[f"warn: {w}"] += 1
        if polarity and name in CHEST_CORPORA and res.refused:  # every refused chest film, to look at each
            examples.append(f"{f.relative_to(DATA / name) if f.is_relative_to(DATA / name) else f.name}: "
                            f"{'; '.join(res.reasons)}")
        if res.rotation or res.mirrored:
            counts["orientation_flagged"] += 1
        if polarity:
            r2, _ = gate.check(np.float32(1.0) - img.pixels, 0.0)
            inv_total += 1
            inv_detected += int(r2.inverted)
    total = len(files)
    out = {"corpus": name, "files": total, "decoded": counts["n"], "unreadable": counts["unreadable"],
           "gate_refused": counts["refused"], "gate_warned": counts["warning"],
           "pipeline_refused": counts["pipeline_refused"], "pipeline_warned": counts["pipeline_warned"],
           "reasons": dict(reasons.most_common()), "examples_refused": examples,
           "orientation_turned_or_flagged": counts["orientation_flagged"],
           "by_kind": {k: dict(v) for k, v in sorted(by_kind.items()) if k}}
    if polarity:
        out.update(inverted_total=inv_total, inverted_detected=inv_detected, originals_flagged=false_flags)
    return out


def seg_speed(seg, n: int = 50) -> tuple[float, float]:
    """(median, mean) milliseconds of ``segment()`` on one 256 px image, after 5 warm-up calls."""
    x = np.random.default_rng(0).random((seg.size, seg.size), dtype=np.float32)
    for _ in range(5):
        seg.segment(x)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        seg.segment(x)
        times.append((time.perf_counter() - t) * 1000.0)
    return float(np.median(times)), float(np.mean(times))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segmenter", help="segmenter file (default: the shipped one)")
    ap.add_argument("--limit", type=int, default=0, help="at most N files per corpus (evenly spaced)")
    ap.add_argument("--corpora", nargs="+", default=["not-cxr-dev", *CHEST_CORPORA])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--speed-only", action="store_true", help="only the segmenter's inference time")
    ap.add_argument("--json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from training.gate.gate import ChestGate
    from training.gate.segmenter import default_segmenter_path

    path = Path(args.segmenter) if args.segmenter else default_segmenter_path()
    gate = ChestGate.from_file(path)
    print(f"segmenter: {path} ({gate.segmenter.info.input_size} px); torch threads {torch.get_num_threads()}")
    ms, mean = seg_speed(gate.segmenter)
    print(f"segmenter CPU inference: {ms:.1f} ms per image at {gate.segmenter.size} px "
          f"(batch 1, median of 50 calls; mean {mean:.1f} ms)")
    results = {"segmenter_ms": ms, "corpora": []}
    if args.speed_only:
        return 0
    print(f"{'corpus':24s} {'files':>6s} {'gate refused':>14s} {'gate warned':>12s} {'pipeline refused':>17s}"
          f" {'inverted found':>15s} {'originals flagged':>18s}")
    for name in args.corpora:
        files = corpus_files(name)
        if args.limit and len(files) > args.limit:
            files = [files[i] for i in np.linspace(0, len(files) - 1, args.limit).astype(int)]
        t = time.perf_counter()
        r = run_corpus(gate, name, files, polarity=name in CHEST_CORPORA)
        r["seconds"] = time.perf_counter() - t
        results["corpora"].append(r)
        n = r["files"]

        def pct(k: int) -> str:
            lo, hi = wilson(k, n)
            return f"{k}/{n} {100 * k / n:.1f}%"

        inv = (f"{r['inverted_detected']}/{r['inverted_total']}" if "inverted_total" in r else "-")
        flag = (f"{r['originals_flagged']}/{r['decoded']}" if "originals_flagged" in r else "-")
        print(f"{name:24s} {n:6d} {pct(r['gate_refused'] + r['unreadable']):>14s} {pct(r['gate_warned']):>12s} "
              f"{pct(r['pipeline_refused']):>17s} {inv:>15s} {flag:>18s}", flush=True)
    for r in results["corpora"]:
        print(f"\n{r['corpus']}: reasons {json.dumps(r['reasons'])}")
        if r["examples_refused"]:
            print("  refused chest films: " + " | ".join(r["examples_refused"]))
        if r["corpus"] == "not-cxr-dev":
            for kind, c in r["by_kind"].items():
                print(f"  {kind:22s} {dict(c)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
