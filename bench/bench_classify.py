"""Classification throughput per engine, side by side, against the naive loop
and this CPU's compute limit.

    .venv/bin/python bench/bench_classify.py [--model FILE] [--n 200] [--rounds 5] [--batch 16]
                                             [--threads N] [--json OUT.json|-]

Everything runs at the model's own input size S (read from the model file;
default model: the shipped one, else a random ResNet50-LSTM at --size), on the
same N real PNGs from ``../shared/data/covid-cxr-1000`` (half COVID, half
Normal), in one run:

* end to end (files -> P(COVID)):
  - ``naive loop``: PIL open -> ``convert("L")`` -> torchvision
    ``Resize((S, S))`` + ``ToTensor`` -> grey repeated to 3 channels -> fp32
    PyTorch model, batch 1, ``no_grad`` (the tutorial loop), same weights;
  - ``classify_paths[torch]`` / ``classify_paths[onnx]``: the app's pipeline
    (``Classifier.classify_paths``: decode threads overlapping inference,
    batches of --batch) with ``engine='torch'`` (fp32, channels_last) and
    ``engine='onnx'`` (ONNX Runtime);
* model only (pre-decoded ``(N, 3, S, S)`` inputs, batches of --batch):
  PyTorch fp32 contiguous (the reference), PyTorch fp32 channels_last,
  PyTorch bf16 autocast channels_last (CPUs with native bf16, or --bf16),
  ONNX Runtime fp32 (the app's engine), and OpenVINO (fp32 and its default
  precision) when the ``openvino`` package is installed.

The rounds alternate: every round gives each engine one chunk of the images
(the order of the engines rotates from round to round), so load from other
processes hits all alike.  images/s = images / summed time over the rounds.
|dP| is the largest difference in P(COVID) (after the model's temperature)
from the PyTorch fp32 reference (model only, same inputs; the naive loop also
differs by its 8-bit resize).  Compute limit: the best fp32 GEMM rate on all
intra-op threads (``torch.matmul`` of two 2048 x 2048 float32 matrices, best of
several, measured before and between the rounds), and the model's FLOPs per
image counted with ``torch.utils.flop_counter.FlopCounterMode`` at S (one
multiply-add = 2 FLOPs); each engine's share of it is printed with the
arithmetic.  ``--json`` writes every figure (for the README table).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.common import atomic  # noqa: E402
from training.common.cpu import cpu_name  # noqa: E402
from training.common.device import cpu_supports_bf16  # noqa: E402
from training.common.resources import default_model_path  # noqa: E402
from training.imaging.loading import load_image  # noqa: E402
from training.inference.classifier import Classifier  # noqa: E402
from training.inference.engine_onnx import CACHE_ENV, EngineUnavailable, OnnxEngine, prepare_engine  # noqa: E402
from training.model.audit import model_stamp  # noqa: E402
from training.model.modelfile import ModelInfo, load_model, read_info, save_model  # noqa: E402
from training.model.networks import build_model  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "covid-cxr-1000"
GEMM_N = 2048


def bench_files(n: int) -> list[Path]:
    half = n // 2
    covid = sorted((DATA / "COVID").glob("*.png"))[:half]
    normal = sorted((DATA / "Normal").glob("*.png"))[: n - half]
    return [p for pair in zip(covid, normal) for p in pair] + covid[len(normal):] + normal[len(covid):]


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


# ------------------------------------------------------------------ limits
def gemm_gflops(repeats: int = 3, n: int = GEMM_N, dtype: torch.dtype = torch.float32) -> float:
    """Best GEMM rate (GFLOP/s) of ``repeats`` n x n matmuls on torch's intra-op threads."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(n, n, generator=g).to(dtype), torch.rand(n, n, generator=g).to(dtype)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def low_precision(name: str) -> bool:
    """A row computed in bf16: its limit is the bf16 GEMM rate, not the fp32 one."""
    return "bf16" in name


def model_gflop(model: torch.nn.Module, size: int) -> float:
    """FLOPs of one image at ``size`` (FlopCounterMode: convolutions, matmuls incl. the LSTM's), in GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.rand(1, 3, size, size))
    return counter.get_total_flops() / 1e9


# ------------------------------------------------------------------ engines
COVID_INDEX = 1  # set in main from the model file (three-class models: softmax, the COVID column)


def p_covid(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """P(COVID) from a model's logits: sigmoid of one logit, or the COVID column of the softmax."""
    z = logits.float() / temperature
    if z.ndim == 2 and z.shape[1] > 1:
        return torch.softmax(z, dim=1)[:, COVID_INDEX]
    return torch.sigmoid(z.reshape(-1))


class NaiveBaseline:
    """The tutorial loop at the model's input size: PIL -> Resize((S, S)) + ToTensor -> 3 channels -> fp32, batch 1."""

    def __init__(self, model_path: Path, size: int, temperature: float):
        from torchvision import transforms

        self.model = load_model(model_path, device="cpu").model.eval()
        self.tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
        self.temperature = temperature

    def run(self, files: list[Path]) -> np.ndarray:
        from PIL import Image

        out = []
        for p in files:
            with Image.open(p) as im:
                x = self.tf(im.convert("L")).repeat(3, 1, 1)[None]
            with torch.no_grad():
                out.append(float(p_covid(self.model(x), self.temperature)[0]))
        return np.array(out, dtype=np.float64)


def torch_runner(model, batch: int, channels_last: bool, bf16: bool, temperature: float):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)

    def run(x: torch.Tensor) -> np.ndarray:
        out = []
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(x), batch):
                out.append(p_covid(model(x[i:i + batch].contiguous(memory_format=fmt)), temperature))
        return torch.cat(out).double().numpy()

    return run


def onnx_runner(engine: OnnxEngine, batch: int, temperature: float):
    def run(x: torch.Tensor) -> np.ndarray:
        return torch.cat([p_covid(torch.from_numpy(engine.logits(x[i:i + batch])), temperature)
                          for i in range(0, len(x), batch)]).double().numpy()

    return run


def openvino_runners(onnx_path: Path, batch: int, threads: int, temperature: float) -> dict:
    """OpenVINO on the CPU, fp32 and at its default precision (bf16 on CPUs with AMX/AVX512-BF16);
    {} without the package."""
    try:
        import openvino as ov
    except Exception:
        return {}
    core = ov.Core()
    runners = {}
    for label, hint in (("openvino fp32", "f32"), ("openvino default precision", None)):
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        try:
            compiled = core.compile_model(str(onnx_path), "CPU", config)
        except Exception as exc:
            print(f"  {label}: not measured ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
            continue
        precision = compiled.get_property("INFERENCE_PRECISION_HINT")
        precision = precision.to_string() if hasattr(precision, "to_string") else str(precision)

        def run(x: torch.Tensor, compiled=compiled) -> np.ndarray:
            out = []
            for i in range(0, len(x), batch):
                logits = compiled([x[i:i + batch].numpy()])[compiled.output(0)]
                z = torch.from_numpy(np.asarray(logits, np.float32))
                out.append(p_covid(z.reshape(z.shape[0], -1) if z.ndim > 1 else z, temperature))
            return torch.cat(out).double().numpy()

        runners[f"{label} ({precision})"] = run
    runners["__version__"] = ov.__version__
    return runners


def pipeline_runner(clf: Classifier):
    def run(files: list[Path]) -> np.ndarray:
        preds = list(clf.classify_paths(files))
        bad = [p.reason for p in preds if not p.ok]
        if bad:
            raise RuntimeError(f"classify_paths failed on {len(bad)} file(s): {bad[0]}")
        return np.array([p.p_covid for p in preds], dtype=np.float64)

    return run


# ------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="model file (default: the shipped model)")
    ap.add_argument("--size", type=int, default=224, help="input size of the random model made without a model file")
    ap.add_argument("--n", type=int, default=200, help="images (half COVID, half Normal)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="alternating rounds (each engine gets N/rounds images per round)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads for every engine (default: torch's)")
    ap.add_argument("--bf16", action="store_true", help="measure bf16 autocast even without native bf16")
    ap.add_argument("--no-openvino", action="store_true")
    ap.add_argument("--json", help="write all figures as JSON to this file ('-' = stdout)")
    ap.add_argument("--whole-rounds", type=int, default=1,
                    help="rounds of the whole-process comparison (fresh xray-classify processes, fp32 and fast, "
                         "against the naive script, on the same N files); 0 = skip it")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    tmp = tempfile.TemporaryDirectory()
    os.environ[CACHE_ENV] = str(Path(tmp.name) / "engines")  # a fresh engine cache: the export is timed every run
    model_path = args.model or default_model_path()
    if model_path is None:
        model_path = Path(tmp.name) / "bench.safetensors"
        torch.manual_seed(0)
        save_model(build_model("resnet50_lstm", "scratch", input_size=args.size),
                   ModelInfo(arch="resnet50_lstm", input_size=args.size, name="bench (random weights)"), model_path)
    info, _ = read_info(model_path)
    size, temperature = int(info.input_size), float(info.temperature)
    global COVID_INDEX
    COVID_INDEX = info.class_names.index(info.positive_class) if info.positive_class in info.class_names else 1
    files = bench_files(args.n)
    rounds = max(1, min(args.rounds, len(files)))
    import onnxruntime

    native_bf16 = cpu_supports_bf16()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical CPU(s), native bf16: {native_bf16}; "
          f"load average before: {load_average()}")
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; intra-op threads {threads}")
    print(f"model: {model_path} ({info.title} v{info.version}, {info.arch}) at its input size {size} px, "
          f"temperature {temperature:g}")
    print(f"{len(files)} PNGs from {DATA} ({sum(p.parent.name == 'COVID' for p in files)} COVID), "
          f"batch {args.batch}, {rounds} alternating rounds")

    # references, inputs, limits
    ref_clf = Classifier(load_model(model_path), device="cpu", mixed_precision=False, engine="torch", gate=None)
    x_all = torch.from_numpy(np.stack([ref_clf.model_input(load_image(p).pixels)[0] for p in files]))
    base_model = load_model(model_path).model.eval()
    gflop = model_gflop(base_model, size)
    gemm = [gemm_gflops()]
    gemm_bf16: list[float] = []
    print(f"model FLOPs per image at {size} px: {gflop:.3f} GFLOP (FlopCounterMode)")

    runners: dict[str, tuple[str, callable]] = {}  # name -> (input kind, run)
    naive = NaiveBaseline(model_path, size, temperature)
    runners["naive loop (PIL + torchvision, batch 1, fp32)"] = ("files", naive.run)
    for eng in ("torch", "onnx"):
        clf = Classifier(load_model(model_path), device="cpu", mixed_precision=False, engine=eng, gate=None,
                         batch_size=args.batch)
        t0 = time.perf_counter()
        clf.predict_batch(x_all[:1])  # builds the engine (exports the ONNX file on first use)
        if eng == "onnx":
            print(f"classify_paths[onnx] engine: {clf.engine_note} (ready in {time.perf_counter() - t0:.1f} s, "
                  "export included)")
        runners[f"classify_paths[{eng}] (end to end)"] = ("files", pipeline_runner(clf))
    fast_record = info.fast_mode or {}
    if fast_record.get("ranges"):  # the int8 fast mode, measured on any CPU (the app uses it only with VNNI / AMX)
        clf = Classifier(load_model(model_path), device="cpu", mixed_precision=False, gate=None,
                         batch_size=args.batch, precision="int8")
        clf.predict_batch(x_all[:1])
        print(f"classify_paths[onnx int8] engine: {clf.engine_note}")
        if clf.active_engine == "onnx-int8":
            runners["classify_paths[onnx int8, fast] (end to end)"] = ("files", pipeline_runner(clf))
            runners["onnxruntime int8 (fast mode)"] = ("x", onnx_runner(clf.fast_engine(), args.batch, temperature))
    else:
        print("int8 fast mode: not measured (the model file records no fast mode)")
    ref_name = "torch fp32 contiguous"
    runners[ref_name] = ("x", torch_runner(load_model(model_path).model.eval(), args.batch, False, False, temperature))
    runners["torch fp32 channels_last"] = ("x", torch_runner(load_model(model_path).model.eval(), args.batch, True,
                                                             False, temperature))
    if native_bf16 or args.bf16:
        runners["torch bf16 autocast channels_last"] = ("x", torch_runner(load_model(model_path).model.eval(),
                                                                          args.batch, True, True, temperature))
    ov_version = None
    try:
        t0 = time.perf_counter()
        engine = prepare_engine(base_model, model_stamp(ref_clf.loaded).sha256, size, x_all[:2], temperature,
                                threads=threads)
        print(f"ONNX session from the cache + agreement check: {time.perf_counter() - t0:.1f} s")
        runners["onnxruntime fp32"] = ("x", onnx_runner(engine, args.batch, temperature))
        if not args.no_openvino:
            ov = openvino_runners(engine.path, args.batch, threads, temperature)
            ov_version = ov.pop("__version__", None)
            runners.update({name: ("x", run) for name, run in ov.items()})
    except EngineUnavailable as exc:
        print(f"onnxruntime: not measured ({exc})")
    if ov_version:
        print(f"openvino {ov_version}")

    # warm-up: one batch each (allocators, kernel selection, oneDNN primitives)
    for name, (kind, run) in runners.items():
        run(files[: min(2, len(files))] if kind == "files" else x_all[: args.batch])

    chunks = [list(range(i, len(files), rounds)) for i in range(rounds)]
    names = list(runners)
    seconds = {n: 0.0 for n in names}
    best_rate = {n: 0.0 for n in names}
    probs = {n: np.zeros(len(files)) for n in names}
    for r, idx in enumerate(chunks):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate who goes first
        for name in order:
            kind, run = runners[name]
            data = [files[i] for i in idx] if kind == "files" else x_all[idx]
            t0 = time.perf_counter()
            p = run(data)
            dt = time.perf_counter() - t0
            seconds[name] += dt
            best_rate[name] = max(best_rate[name], len(idx) / dt)
            probs[name][idx] = p
        gemm.append(gemm_gflops(repeats=1))
        if any(low_precision(n) for n in names):
            gemm_bf16.append(gemm_gflops(repeats=1, dtype=torch.bfloat16))
        print(f"  round {r + 1}/{rounds} done (load average {load_average()})", flush=True)
    gemm_best = max(gemm)
    bf16_best = max(gemm_bf16) if gemm_bf16 else None

    ref = probs[ref_name]
    naive_rate = len(files) / seconds[names[0]]
    print(f"\nfp32 GEMM {GEMM_N}x{GEMM_N} on {threads} thread(s): best {gemm_best:.1f} GFLOP/s "
          f"({len(gemm)} measurements, this run)")
    if bf16_best:
        print(f"bf16 GEMM {GEMM_N}x{GEMM_N} on {threads} thread(s): best {bf16_best:.1f} GFLOP/s "
              "(the limit of the bf16 rows)")
    print(f"P(COVID) of the reference: {ref.min():.4f}..{ref.max():.4f} (std {ref.std():.4f})\n")
    header = (f"{'engine':52s} {'images/s':>9s} {'best round':>10s} {'x naive':>8s} {'max|dP|':>9s}"
              "   share of the GEMM rate")
    print(header)
    print("-" * len(header))
    results = {}
    for name in names:
        rate = len(files) / seconds[name]
        dp = float(np.abs(probs[name] - ref).max())
        achieved = rate * gflop
        on_bf16 = bool(low_precision(name) and bf16_best)
        limit = bf16_best if on_bf16 else gemm_best
        share = achieved / limit
        print(f"{name:52s} {rate:9.2f} {best_rate[name]:10.2f} {rate / naive_rate:8.2f} {dp:9.2e}   "
              f"{rate:.2f} img/s x {gflop:.3f} GFLOP/img / {limit:.1f} GFLOP/s = {100 * share:.1f} %")
        results[name] = {"input": runners[name][0], "images_per_s": rate, "best_round_images_per_s": best_rate[name],
                         "speedup_vs_naive": rate / naive_rate, "max_abs_dp_vs_torch_fp32": dp,
                         "gflop_per_s": achieved, "share_of_gemm": share,
                         "gemm_limit": "bf16" if on_bf16 else "fp32"}
    print("\n(end-to-end rows include decoding and resizing; model-only rows start from decoded tensors; "
          "int8 rows are measured on any CPU, the app runs them only on one with AMX / AVX-512 VNNI / AVX-VNNI / "
          "AVX-512 BF16)")
    whole = {}
    if args.whole_rounds > 0:
        from bench_whole_process import report, whole_process

        print(f"\nwhole process (fresh processes, start-up included), the same {len(files)} files, "
              f"{args.whole_rounds} round(s):")
        runs = whole_process(model_path, files, args.whole_rounds, ("fp32", "fast"))
        rates = report(runs, len(files))
        whole = {name: {"images_per_s": rates[name], "seconds": r["seconds"], "engine": r["engine"]}
                 for name, r in runs.items()}
    if args.json:
        doc = {
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu": cpu_name(),
            "logical_cpus": os.cpu_count(), "native_bf16": native_bf16, "threads": threads,
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "openvino": ov_version,
            "model": str(model_path), "model_label": f"{info.title} v{info.version}", "arch": info.arch,
            "input_size": size, "images": len(files), "batch": args.batch, "rounds": rounds,
            "gflop_per_image": gflop, "gemm_gflop_per_s": gemm_best, "gemm_measurements": gemm,
            "gemm_bf16_gflop_per_s": bf16_best,
            "reference": ref_name, "engines": results, "whole_process": whole,
            "load_average_after": load_average(),
        }
        text = json.dumps(doc, indent=1)
        if args.json == "-":
            print(text)
        else:
            atomic.write_text(args.json, text + "\n")
            print(f"JSON: {args.json}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
