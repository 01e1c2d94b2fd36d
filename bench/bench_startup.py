"""Start-up: from process start to the first result, and where the time goes (prints figures; not a test).

    .venv/bin/python bench/bench_startup.py [--runs 3] [--image FILE] [--app 0]

* ``xray-classify FILE`` as a user runs it (a fresh process each time, the shipped model, gate and
  orientation check, the ONNX cache already built by an earlier run): wall time per run;
* imports, each in a fresh process after ``import torch``: torch itself, torchvision and monai
  (none of the three is imported by a run after the first any more: the classifier starts from its
  cached ONNX Runtime engine, the segmenter and orientation networks from their cached graphs, the
  preprocessing and Grad-CAM's head gradient are NumPy; printed to show what was saved, and
  checked), onnxruntime;
* one in-process profile of the command (``cProfile``): the program's imports, the model file and
  its cached engine, the gate, the classification itself.

* ``--app N``: also N fresh processes of the app (offscreen Qt, ``bench/bench_window.py``): from the
  window's creation to the shipped model loaded, checked and warmed up, and whether torch was imported.

Goal (issue "reduced-precision engine"): <= 2 s from process start to the first result after the first run.
"""

from __future__ import annotations

import argparse
import csv
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
DATA = ROOT.parent / "shared" / "data"

from training.common.cpu import cpu_name  # noqa: E402  (torch-free: the start-up figures stay clean)


def first_external_film() -> Path:
    with open(DATA / "external-dev" / "manifest.csv", newline="", encoding="utf-8") as fh:
        return DATA / "external-dev" / next(csv.DictReader(fh))["path"]


def import_seconds(module: str) -> tuple[float, float]:
    code = ("import time; t = time.perf_counter(); import torch; t1 = time.perf_counter(); "
            f"import {module}; t2 = time.perf_counter(); print(t1 - t, t2 - t1)")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def profile(image: Path) -> list[tuple[str, float]]:
    code = f"""
import cProfile, pstats, sys, io
sys.argv = ["xray-classify", {str(image)!r}, "--no-progress"]
pr = cProfile.Profile(); pr.enable()
from training.cli.classify import main
try:
    main()
except SystemExit:
    pass
pr.disable()
st = pstats.Stats(pr, stream=io.StringIO())
for (f, line, name), (cc, nc, tt, ct, callers) in st.stats.items():
    print(f"PROF\\t{{ct:.3f}}\\t{{f}}:{{name}}")
"""
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout
    rows = []
    for line in out.splitlines():
        if line.startswith("PROF\t"):
            _, t, where = line.split("\t", 2)
            rows.append((where, float(t)))
    return rows


APP_CODE = """
import sys, time
sys.path.insert(0, {bench!r})
from bench_window import window_with_model
from training.common.resources import default_model_path
t = time.perf_counter()
app, win = window_with_model(default_model_path(), "auto")
print("APP", round(time.perf_counter() - t, 2), "torch" in sys.modules)
"""


def app_runs(n: int) -> list[str]:
    env = {**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"}
    out = []
    for _ in range(n):
        run = subprocess.run([PY, "-c", APP_CODE.format(bench=str(ROOT / "bench"))], capture_output=True, text=True,
                             cwd=ROOT, env=env)
        out += [ln.split(" ", 1)[1] for ln in run.stdout.splitlines() if ln.startswith("APP ")]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument("--app", type=int, default=0, help="also N fresh processes of the app (model load time)")
    args = ap.parse_args(argv)
    image = args.image or first_external_film()
    exe = Path(PY).with_name("xray-classify")
    print(f"CPU: {cpu_name()}; python {platform.python_version()}; image {image.name}")
    subprocess.run([str(exe), str(image), "--no-progress"], capture_output=True)  # builds the ONNX cache if absent
    walls = []
    for _ in range(args.runs):
        t = time.perf_counter()
        r = subprocess.run([str(exe), str(image), "--no-progress"], capture_output=True, text=True)
        walls.append(time.perf_counter() - t)
        if r.returncode != 0:
            print(r.stderr[-2000:])
            return 1
    print(f"xray-classify, process start to first result: {', '.join(f'{w:.2f}' for w in walls)} s "
          f"(median {sorted(walls)[len(walls) // 2]:.2f} s; goal <= 2 s)")
    for module in ("torchvision", "monai", "onnxruntime"):
        t_torch, t_mod = import_seconds(module)
        print(f"  import torch {t_torch:.2f} s, then import {module} {t_mod:.2f} s")
    check = ("import sys, runpy; sys.argv = ['xray-classify', %r, '--no-progress']\n"
             "try:\n    runpy.run_module('training.cli.classify', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print('IMPORTED', 'torchvision' in sys.modules, 'monai' in sys.modules, 'torch' in sys.modules)") % str(image)
    seen = [ln for ln in subprocess.run([PY, "-c", check], capture_output=True, text=True, cwd=ROOT).stdout.splitlines()
            if ln.startswith("IMPORTED")]
    if seen:
        _, tv, mo, to = seen[-1].split()
        print(f"  imported by a run after the first: torchvision {tv}, monai {mo}, torch {to}")
    prof = dict(profile(image))

    def cum(suffix: str) -> float:
        return max((t for where, t in prof.items() if where.endswith(suffix)), default=0.0)

    for label, suffix in (("the program's modules (import training.cli.classify)", "classify.py:<module>"),
                          ("the classifier's modules (import training.inference.classifier)", "classifier.py:<module>"),
                          ("classifier file + engine + gate (Classifier.from_file)", "classifier.py:from_file"),
                          ("  model file read and hashed (read_file_bytes)", "modelfile.py:read_file_bytes"),
                          ("  cached engine opened and checked, no torch (open_cached)", "engine_onnx.py:open_cached"),
                          ("  gate: segmenter + orientation graphs (load_gate)", "classifier.py:load_gate"),
                          ("  PyTorch model loaded (load_model; 0 when started from the cache)", "modelfile.py:load_model"),
                          ("the classification (Classifier.classify_paths)", "batch.py:classify_paths")):
        print(f"  {label}: {cum(suffix):.2f} s")
    if args.app:
        runs = app_runs(args.app)
        print("the app, window created to the model loaded and warmed up (s, torch imported): " + "; ".join(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
