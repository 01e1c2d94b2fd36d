"""Batch classification throughput: a naive baseline vs ``Classifier.classify_paths``.

    .venv/bin/python bench/bench_classify.py [--model FILE] [--n 200] [--device cpu]

* naive baseline: for each file, PIL open -> convert("L") -> torchvision
  ``Resize(224)`` + ``ToTensor`` -> grey repeated to 3 channels -> fp32 model,
  batch 1, ``torch.no_grad`` (the usual tutorial loop), same weights;
* ours: ``Classifier.classify_paths`` with its defaults (batching,
  channels_last, decode threads overlapping inference, mixed precision only
  where ``training.precision`` enables it).

Both run on the same N real PNGs from ``../shared/data/covid-cxr-1000`` (half
COVID, half Normal), in alternating rounds (baseline on a chunk, then ours on
the same chunk), so that load from other processes on a shared machine hits
both alike.  Printed: images/s,
the ratio and the largest |dP(COVID)| between the two.  Then each lever is
measured on its own (model-only passes over pre-decoded tensors; decoding
alone; the pipeline with 1/2 decode threads), with |dP| against the fp32
batch-16 reference, and the relative difference of the backbone's feature map
(meaningful even with random weights, whose P(COVID) all sit near 0.5).

Without ``--model`` a randomly initialised ResNet50-LSTM (input 224) is saved
to a temporary file; ``--train-steps N`` first trains it N Adam steps on the
bench images so its outputs spread out (slow on a CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.device import cpu_supports_bf16, pick_device  # noqa: E402
from training.loading import load_image  # noqa: E402
from training.modelfile import ModelInfo, load_model, save_model  # noqa: E402
from training.models import _trunk_features, build_model  # noqa: E402
from training.predict import Classifier  # noqa: E402
from training.preprocess import preprocess, preprocess_batch  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "covid-cxr-1000"


def bench_files(n: int) -> list[Path]:
    half = n // 2
    covid = sorted((DATA / "COVID").glob("*.png"))[:half]
    normal = sorted((DATA / "Normal").glob("*.png"))[: n - half]
    return [p for pair in zip(covid, normal) for p in pair] + covid[len(normal):] + normal[len(covid):]


def make_model(path: Path, files: list[Path], train_steps: int) -> None:
    torch.manual_seed(0)
    model = build_model("resnet50_lstm", "scratch", input_size=224)
    if train_steps:
        x = preprocess_batch([load_image(p).pixels for p in files], 224)
        y = torch.tensor([1.0 if p.parent.name == "COVID" else 0.0 for p in files])
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        for step in range(train_steps):
            idx = torch.randperm(len(x), generator=g)[:16]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            print(f"  train step {step + 1}/{train_steps}: loss {loss.item():.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        model.eval()
    save_model(model, ModelInfo(arch="resnet50_lstm", input_size=224, name="bench"), path)


class NaiveBaseline:
    """The tutorial loop: PIL -> torchvision Resize(224) + ToTensor -> 3 channels -> fp32 model, batch 1."""

    def __init__(self, model_path: Path, device: torch.device):
        from torchvision import transforms

        self.device = device
        self.model = load_model(model_path, device=device).model.eval()
        self.tf = transforms.Compose([transforms.Resize(224), transforms.ToTensor()])

    def one(self, p: Path) -> float:
        from PIL import Image

        with Image.open(p) as im:
            x = self.tf(im.convert("L")).repeat(3, 1, 1)[None].to(self.device)
        with torch.no_grad():
            return float(torch.sigmoid(self.model(x))[0])

    def run(self, files: list[Path]) -> np.ndarray:
        return np.array([self.one(p) for p in files], dtype=np.float64)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def ours(model_path: Path, files: list[Path], device: torch.device, **kw) -> tuple[float, np.ndarray, Classifier]:
    clf = Classifier(load_model(model_path, device=device), device=device, **kw)
    list(clf.classify_paths(files[: clf.batch_size]))  # warm-up
    sync(device)
    t0 = time.perf_counter()
    preds = list(clf.classify_paths(files))
    sync(device)
    rate = len(files) / (time.perf_counter() - t0)
    assert all(p.ok for p in preds), [p.reason for p in preds if not p.ok][:3]
    return rate, np.array([p.p_covid for p in preds], dtype=np.float64), clf


def side_by_side(model_path: Path, files: list[Path], device: torch.device, rounds: int):
    """Baseline and ours alternate on the same chunks of files, so that load from
    other processes on a shared machine hits both alike."""
    base = NaiveBaseline(model_path, device)
    clf = Classifier(load_model(model_path, device=device), device=device)
    base.run(files[:2])  # warm-ups (allocator, oneDNN primitives)
    list(clf.classify_paths(files[: clf.batch_size]))
    chunks = [files[i::rounds] for i in range(rounds)]
    t_base = t_ours = 0.0
    p_base = {}
    p_ours = {}
    for chunk in chunks:
        sync(device)
        t0 = time.perf_counter()
        for f, v in zip(chunk, base.run(chunk)):
            p_base[f] = v
        sync(device)
        t1 = time.perf_counter()
        for pred in clf.classify_paths(chunk):
            assert pred.ok, pred.reason
            p_ours[Path(pred.path)] = pred.p_covid
        sync(device)
        t2 = time.perf_counter()
        t_base += t1 - t0
        t_ours += t2 - t1
    pb = np.array([p_base[f] for f in files])
    po = np.array([p_ours[f] for f in files])
    return len(files) / t_base, len(files) / t_ours, pb, po, clf


def model_pass(model, x: torch.Tensor, device, batch: int, channels_last: bool, amp) -> tuple[float, np.ndarray]:
    """Model-only throughput over pre-decoded inputs."""
    model = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    def run() -> np.ndarray:
        out = []
        with torch.inference_mode(), (amp() if amp else contextlib.nullcontext()):
            for i in range(0, len(x), batch):
                xb = x[i:i + batch].to(device)
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                out.append(torch.sigmoid(model(xb).float()).cpu())
        return torch.cat(out).double().numpy()

    run_small = x[:batch]
    with torch.inference_mode(), (amp() if amp else contextlib.nullcontext()):  # warm-up
        model(run_small.to(device).contiguous(memory_format=torch.channels_last) if channels_last
              else run_small.to(device))
    sync(device)
    t0 = time.perf_counter()
    probs = run()
    sync(device)
    return len(x) / (time.perf_counter() - t0), probs


def feature_rel_diff(model, x: torch.Tensor, device, amp) -> float:
    """max |f_amp - f_fp32| / max |f_fp32| of the ResNet50 feature map (model-independent numeric check)."""
    with torch.inference_mode():
        xb = x[:8].to(device)
        ref = _trunk_features(model.backbone, xb).float()
        with amp():
            low = _trunk_features(model.backbone, xb).float()
    return float((low - ref).abs().max() / ref.abs().max())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--n", type=int, default=200, help="images (half COVID, half Normal)")
    ap.add_argument("--lever-n", type=int, default=32, help="images for the per-lever model passes")
    ap.add_argument("--pipeline-n", type=int, default=64, help="images for the decode-thread comparison")
    ap.add_argument("--rounds", type=int, default=5, help="alternating baseline/ours rounds")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-steps", type=int, default=0)
    ap.add_argument("--skip-levers", action="store_true", help="only the side-by-side comparison")
    args = ap.parse_args(argv)

    device = pick_device(args.device)
    files = bench_files(args.n)
    print(f"torch {torch.__version__}, device {device}, intra-op threads {torch.get_num_threads()}, "
          f"CPU native bf16: {cpu_supports_bf16()}")
    print(f"{len(files)} PNGs from {DATA} ({sum(p.parent.name == 'COVID' for p in files)} COVID)")
    tmp = tempfile.TemporaryDirectory()
    model_path = args.model
    if model_path is None:
        model_path = Path(tmp.name) / "bench.safetensors"
        kind = f"trained {args.train_steps} steps" if args.train_steps else "random weights"
        print(f"model: ResNet50-LSTM at 224, {kind} (no --model given)")
        make_model(model_path, files, args.train_steps)
    else:
        print(f"model: {model_path}")

    # ---------------------------------------------------------------- side by side
    base_rate, our_rate, base_p, our_p, clf = side_by_side(model_path, files, device, args.rounds)
    amp_desc = "automatic (training.precision)" if clf.mixed_precision is None else str(clf.mixed_precision)
    print(f"\n== side by side ({args.rounds} alternating rounds) ==")
    print(f"naive baseline (PIL + torchvision, batch 1, fp32): {base_rate:7.2f} img/s")
    print(f"Classifier.classify_paths (batch {clf.batch_size}, channels_last={clf.channels_last}, "
          f"{clf.decode_workers} decode thread(s), precision: {amp_desc}): {our_rate:7.2f} img/s")
    print(f"speed-up: x{our_rate / base_rate:.2f}")
    print(f"largest |dP(COVID)| ours vs baseline: {np.abs(our_p - base_p).max():.2e} "
          f"(P range {our_p.min():.4f}..{our_p.max():.4f}, std {our_p.std():.4f})")

    # ---------------------------------------------------------------- levers
    if args.skip_levers:
        tmp.cleanup()
        return 0
    print("\n== levers, one at a time ==")
    t0 = time.perf_counter()
    decoded = [load_image(p).pixels for p in files]
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    x_all = torch.stack([preprocess(px, 224) for px in decoded])
    t_pre = time.perf_counter() - t0
    print(f"decode (load_image, 1 thread): {len(files) / t_load:7.1f} img/s; "
          f"preprocess (resize 299->224): {len(files) / t_pre:7.1f} img/s")

    model = load_model(model_path, device=device).model.eval()
    x = x_all[: args.lever_n]
    if device.type == "cuda":
        amp_low = lambda: torch.autocast("cuda", dtype=torch.float16)  # noqa: E731
        low_name = "fp16 autocast"
    else:
        amp_low = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
        low_name = "bf16 autocast"
    configs = [
        ("batch 1,  fp32, contiguous", 1, False, None),
        ("batch 16, fp32, contiguous", 16, False, None),
        ("batch 16, fp32, channels_last", 16, True, None),
        (f"batch 16, {low_name}, contiguous", 16, False, amp_low),
        (f"batch 16, {low_name}, channels_last", 16, True, amp_low),
    ]
    rates: dict[str, list[float]] = {name: [] for name, *_ in configs}
    probs_by: dict[str, np.ndarray] = {}
    for _ in range(2):  # round robin, best of 2: background load hits every config alike
        for name, bs, cl, amp in configs:
            rate, probs = model_pass(model, x, device, bs, cl, amp)
            rates[name].append(rate)
            probs_by[name] = probs
    ref = probs_by["batch 16, fp32, contiguous"]
    for name, *_ in configs:
        print(f"model only, {name:38s}: {max(rates[name]):7.2f} img/s   "
              f"max|dP| vs fp32 b16: {np.abs(probs_by[name] - ref).max():.2e}")
    print(f"{low_name}: backbone feature map max relative difference vs fp32: "
          f"{feature_rel_diff(model, x, device, amp_low):.2e}")

    sub = files[: args.pipeline_n]
    print(f"pipeline (classify_paths) on {len(sub)} files, varying the decode threads:")
    for workers in (1, 2):
        rate, _, _ = ours(model_path, sub, device, decode_workers=workers)
        print(f"  {workers} decode thread(s): {rate:7.2f} img/s")
    clf_serial = Classifier(load_model(model_path, device=device), device=device)
    clf_serial.predict_batch(torch.stack([preprocess(load_image(p).pixels, 224) for p in sub[:16]]))  # warm-up
    t0 = time.perf_counter()
    clf_serial.predict_batch(torch.stack([preprocess(load_image(p).pixels, 224) for p in sub]))
    print(f"  no overlap (decode all, then predict): {len(sub) / (time.perf_counter() - t0):7.2f} img/s")
    rate, p_amp, _ = ours(model_path, sub, device, mixed_precision=True)
    print(f"pipeline with {low_name} forced on: {rate:7.2f} img/s, max|dP| vs default: "
          f"{np.abs(p_amp - our_p[: len(sub)]).max():.2e}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
