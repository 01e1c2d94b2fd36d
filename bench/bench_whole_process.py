"""The whole process, as a user runs it: ``xray-classify`` with its defaults against the naive
script a user could write, each a fresh process from start to exit (prints figures; not a test).

    .venv/bin/python bench/bench_whole_process.py [--n 300] [--rounds 2] [--model FILE] [--fast]

(``bench/bench_classify.py`` runs the same comparison, fp32 and fast, after its engine table.)

* ``xray-classify FILES --csv OUT --no-progress``: the product's defaults (the chest-radiograph gate
  with the orientation check, the lung crop + CLAHE, the lung share of Grad-CAM from the same pass,
  fp32 on ONNX Runtime where it runs); with ``--fast`` also ``--precision fast`` (int8 where the CPU
  and the model file allow it, else fp32 - the captured "Engine:" line says which ran);
* the naive script: PIL open -> ``convert("L")`` -> torchvision ``Resize((S, S))`` + ``ToTensor`` ->
  grey repeated to 3 channels -> the same weights in fp32 PyTorch, batch 1, ``no_grad`` (no gate, no
  lung crop, no explanation) - at the same input size S.

Both read the same N real PNGs of ``../shared/data/covid-cxr-1000`` (half COVID, half Normal); the
rounds alternate the order. images/s = N / wall seconds of the process, start-up included.
Goal (issue "reduced-precision engine"): defaults, fp32, whole process on 300 images >= 1.5x the naive
loop at the same input size.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.common.cpu import cpu_name  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "covid-cxr-1000"

NAIVE = r"""
import sys, torch
from pathlib import Path
from PIL import Image
from torchvision import transforms
from training.model.modelfile import load_model
loaded = load_model(sys.argv[1], device="cpu")
model, size = loaded.model.eval(), int(loaded.info.input_size)
tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
out = []
for line in Path(sys.argv[2]).read_text().splitlines():
    with Image.open(line) as im:
        x = tf(im.convert("L")).repeat(3, 1, 1)[None]
    with torch.no_grad():
        out.append(model(x).float())
print(len(out))
"""


def pick(n: int) -> list[Path]:
    covid = sorted((DATA / "COVID").glob("*.png"))[: n // 2]
    normal = sorted((DATA / "Normal").glob("*.png"))[: n - len(covid)]
    return covid + normal


PRODUCT = "xray-classify (defaults, {precision})"
NAIVE_NAME = "naive script (batch 1, fp32)"


def whole_process(model: Path, files: list[Path], rounds: int, precisions=("fp32",)) -> dict:
    """Wall seconds per round of each command, fresh processes, rounds alternating the order:
    ``{name: {"seconds": [...], "engine": the product's 'Engine:' line}}``; raises on a failed run."""
    exe = Path(sys.executable).with_name("xray-classify")
    out: dict[str, dict] = {PRODUCT.format(precision=p): {"seconds": [], "engine": "", "precision": p}
                            for p in precisions}
    out[NAIVE_NAME] = {"seconds": [], "engine": "PyTorch fp32 eager"}
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "files.txt"
        listing.write_text("\n".join(str(f) for f in files) + "\n")
        naive = [sys.executable, "-c", NAIVE, str(model), str(listing)]
        for r in range(rounds):
            order = list(out) if r % 2 == 0 else list(out)[::-1]
            for name in order:
                if name == NAIVE_NAME:
                    cmd = naive
                else:
                    cmd = [str(exe), "--model", str(model), *map(str, files), "--csv", str(Path(tmp) / "out.csv"),
                           "--no-progress", "--precision", out[name]["precision"]]
                t = time.perf_counter()
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                out[name]["seconds"].append(time.perf_counter() - t)
                if done.returncode != 0:
                    raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
                engine = [ln for ln in done.stderr.splitlines() if ln.startswith("Engine: ")]
                if engine:
                    out[name]["engine"] = engine[0][len("Engine: "):]
    return out


def report(runs: dict, n: int) -> dict[str, float]:
    """Print images/s per command and each product run / naive; returns the rates."""
    rates = {name: n / (sum(r["seconds"]) / len(r["seconds"])) for name, r in runs.items()}
    naive = rates[NAIVE_NAME]
    for name, r in runs.items():
        ratio = "" if name == NAIVE_NAME else f"  {rates[name] / naive:.2f}x naive"
        print(f"  {name:34s} {rates[name]:6.2f} images/s  (wall {', '.join(f'{t:.1f}' for t in r['seconds'])} s)"
              f"{ratio}  [{r['engine']}]")
    print("  goals: defaults fp32 >= 1.5x naive; --precision fast >= 3.0x naive on a CPU with AMX / AVX-512 BF16 "
          "/ VNNI (elsewhere fast runs fp32 and says so in its engine line)")
    return rates


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", type=Path, default=None, help="model file (default: the shipped one)")
    ap.add_argument("--fast", action="store_true", help="also xray-classify --precision fast")
    args = ap.parse_args(argv)
    from training.common.resources import default_model_path
    from training.model.modelfile import read_info

    model = args.model or default_model_path()
    info, _ = read_info(model)
    files = pick(args.n)
    try:
        runs = whole_process(model, files, args.rounds, ("fp32", "fast") if args.fast else ("fp32",))
    except RuntimeError as exc:
        print(exc)
        return 1
    print(f"{len(files)} PNGs of covid-cxr-1000, model {info.name} v{info.version} at {info.input_size} px; "
          f"CPU {cpu_name()}; {args.rounds} round(s), alternating")
    report(runs, len(files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
