"""``classify_paths(explain=True)``: Grad-CAM from the classification pass
against the former second Grad-CAM pass, in one run.

    .venv/bin/python bench/bench_explain_pass.py [--model FILE] [--n 40] [--rounds 3] [--batch 16] [--threads N]

The same N real PNGs (half COVID, half Normal, ``../shared/data/covid-cxr-1000``),
one ``Classifier`` (the model's defaults: ONNX Runtime on the CPU, the shipped
gate), three modes, alternated round by round (the order rotates) so load from
other processes hits all alike:

* ``explain=False``: classification only (the floor);
* ``explain=True, one pass``: the app now (``predict_full(with_cam=True)``:
  layer4's activations come out of the engine's pass, the head's gradient in torch);
* ``explain=True, two passes``: the former way, emulated exactly: the
  classification pass, then ``explain.package_gradcam_maps`` (pytorch-grad-cam's
  ``GradCAM``: forward + backward of the PyTorch model) on the same batch.

A warm-up on 4 images builds the engine first (not timed).  Prints, per mode
summed over the rounds, the wall-clock seconds and the process's CPU seconds
(all its threads: decoding, gate, engine, Grad-CAM; ``time.process_time``),
which stay meaningful when other processes load the machine; images/s; the
speed-ups; and the largest difference in ``heatmap_in_lungs`` between the two
explain modes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.common.cpu import cpu_name  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model file (default: the shipped default, else v1)")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (default: torch's)")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from training.common.resources import default_model_path, v1_model_path
    from training.inference import explain
    from training.inference.classifier import Classifier

    data = Path(os.environ.get("XRAY_SHARED", REPO.parent / "shared")) / "data" / "covid-cxr-1000"
    half = args.n // 2
    paths = sorted((data / "COVID").glob("*.png"))[:half] + sorted((data / "Normal").glob("*.png"))[:args.n - half]
    model = Path(args.model) if args.model else (default_model_path() or v1_model_path())
    clf = Classifier.from_file(model, device="cpu", batch_size=args.batch)
    if clf.gate is None:
        print("no gate installed: explain=True computes no lung share", file=sys.stderr)
        return 2

    one_pass = explain.pass_with_cams

    def two_passes(classifier, x):  # what classify_paths(explain=True) did before
        logits, lesion = classifier.outputs(x)
        return logits, lesion, explain.package_gradcam_maps(classifier, x)

    modes = {"explain=False": (False, one_pass), "explain=True, one pass": (True, one_pass),
             "explain=True, two passes": (True, two_passes)}

    def run(name, files):
        flag, impl = modes[name]
        explain.pass_with_cams = impl
        try:
            t, c = time.perf_counter(), time.process_time()
            preds = list(clf.classify_paths(files, explain=flag))
            return time.perf_counter() - t, time.process_time() - c, preds
        finally:
            explain.pass_with_cams = one_pass

    for name in modes:
        run(name, paths[:4])  # warm-up: engine build, first-call costs
    totals = {name: 0.0 for name in modes}
    cpu = {name: 0.0 for name in modes}
    shares: dict[str, list] = {}
    names = list(modes)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            dt, dc, preds = run(name, paths)
            totals[name] += dt
            cpu[name] += dc
            shares[name] = [p.heat_in_lungs for p in preds]
    n = len(paths) * args.rounds
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}; "
          f"model {model.name}; engine: {clf.engine_note}")
    print(f"{len(paths)} PNGs x {args.rounds} rounds, batch {args.batch}")
    print(f"  {'mode':26s} {'wall s':>8s} {'images/s':>9s} {'CPU s':>8s} {'CPU s/image':>12s}")
    for name in modes:
        print(f"  {name:26s} {totals[name]:8.2f} {n / totals[name]:9.2f} {cpu[name]:8.2f} {cpu[name] / n:12.3f}")
    one, two, off = "explain=True, one pass", "explain=True, two passes", "explain=False"
    for label, t in (("wall", totals), ("CPU", cpu)):
        print(f"{label}: explain=True one pass vs two passes {t[two] / t[one]:.2f}x faster; the explanation's "
              f"own cost (over explain=False) {t[one] - t[off]:+.2f} s vs {t[two] - t[off]:+.2f} s")
    a, b = shares[one], shares[two]
    d = [abs(x - y) for x, y in zip(a, b) if x is not None and y is not None]
    print(f"max |d heatmap_in_lungs| one pass vs two passes: {max(d) if d else float('nan'):.2e} "
          f"({len(d)} images with a share)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
