"""Reduced precision: ``--precision fast``, the classifier as an int8 ONNX Runtime graph.

What "fast" is
--------------
The model's fp32 ONNX graph (``training.inference.engine_onnx``) statically quantised by
ONNX Runtime's own tool (``onnxruntime.quantization.quantize_static``): QDQ format, the
``Conv`` layers only except the first (the stem, fed by the film itself), so the head (linear
or LSTM), pooling, the decoder's upsampling and everything else stay fp32; per-channel int8
weights with a **7-bit range** (``reduce_range``), uint8 activations, MinMax ranges.  Chosen on
240 validation films against fp32 (``docs/INFERENCE.md``: every Conv and Gemm quantised put
77.5 % of films within 0.02 of fp32's P(COVID), this recipe 81.2 %, percentile ranges 80.4 %).  The 7-bit weights keep the u8 x s8 products
of CPUs without VNNI from saturating, so the int8 graph computes the same numbers on
every x86 CPU and the validation measured on one holds on another.

Why int8 and not bf16: the two measured candidates on an AVX-512 BF16 / VNNI EPYC (the
issue's figures, ResNet50 alone, batch 16) were ONNX Runtime int8 QDQ 84 images/s and
OpenVINO bf16 25.6 images/s against ONNX Runtime fp32 25.7 images/s.  int8 also needs
no second runtime.

When it runs
------------
Only when asked (``precision='fast'``: ``xray-classify --precision fast``, Settings; fp32 is
always the default - it may become the default only for a model file whose validation
passed, and none of the shipped ones did), and only where all of these hold; otherwise the
classifier runs fp32 and its ``engine_note`` says why (the CLI prints it, the About box shows it):

* the CPU has int8 or bf16 matrix instructions (AMX, AVX-512 VNNI, AVX-VNNI, AVX-512 BF16:
  :func:`fast_cpu_support`), as the issue asks (on an AVX2-only EPYC int8 measured 1.5x ONNX Runtime
  fp32 for the model alone, but the fallback is fp32 there);
* the model file records its fast mode (``ModelInfo.fast_mode``, written by
  ``python -m training.release.fast_mode``): the activation ranges it is quantised with
  (measured on training films, never on external-dev) and its validation against fp32;
* ONNX Runtime is installed, the graph exported here has every tensor the ranges name
  (the same program version), and the int8 session runs the check batch with finite
  outputs of the right shapes.

A fast mode whose validation missed a criterion still runs when asked, with a warning in
``engine_note`` (and the CLI's "Engine:" line) that names what it missed.

The int8 graph is built on first use from the cached fp32 graph and the file's ranges
(a few seconds) and cached beside it (``<key>.int8.onnx`` + ``.json``), like the fp32 one.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from training.common.cpu import cpu_flags

if TYPE_CHECKING:  # torch only where a graph is built or run: the About box imports this module on the GUI thread
    import torch.nn as nn

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fast")
FAST_FORMAT = "onnxruntime-int8-qdq-v1"  # the quantisation recipe below; a file recorded for another is not used
QUANT_OPS = ("Conv",)  # and not the first one (the stem): see first_conv
RECIPE = ("static QDQ (onnxruntime.quantization); every Conv but the stem (the head, LSTM and decoder upsampling "
          "stay fp32); per-channel int8 weights in a 7-bit range; uint8 activations; MinMax ranges")
# CPU flags (Linux /proc/cpuinfo names) of the instructions that make int8 / bf16 inference fast
FAST_FLAGS = {"amx_int8": "AMX", "amx_bf16": "AMX", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
              "avx512_bf16": "AVX-512 BF16"}
# What a fast mode must show on every validation set (own test splits, the paper's 100, external-dev)
CRITERIA = {"verdict_agreement": 0.995, "dp_limit": 0.02, "dp_share": 0.99, "ece_limit": 0.05, "ece_slack": 0.01}


def fast_cpu_support(flags: set[str] | None = None) -> tuple[bool, str]:
    """``(True, 'AVX-512 VNNI, ...')`` when the CPU has int8 / bf16 matrix instructions, else
    ``(False, why)``.  ``flags``: the CPU's flags (default: this machine's)."""
    flags = cpu_flags() if flags is None else set(flags)
    found = sorted({name for flag, name in FAST_FLAGS.items() if flag in flags})
    if found:
        return True, ", ".join(found)
    return False, "this CPU has none of AMX, AVX-512 VNNI, AVX-VNNI or AVX-512 BF16"


def fast_mode_problem(record: dict | None) -> str:
    """'' when a model file's ``fast_mode`` record can build the int8 graph, else why not (one line)."""
    if not record:
        return "this model file records no validated fast mode"
    if record.get("format") != FAST_FORMAT:
        return f"this model file's fast mode was prepared by another version ({record.get('format')!r})"
    if not isinstance(record.get("ranges"), dict) or not record["ranges"].get("data"):
        return "this model file's fast mode has no quantisation ranges"
    return ""


def validation_warning(record: dict | None) -> str:
    """'' when the record's validation passed, else a one-line warning naming what it missed."""
    v = (record or {}).get("validation") or {}
    if v.get("passed"):
        return ""
    missed = v.get("missed") or {}
    if not missed:
        return "this model's fast mode has no validation against fp32"
    first = next(iter(missed))
    return (f"this model's fast mode missed its validation against fp32 ({first}: {missed[first][0]}"
            + (f"; {len(missed) - 1} more set(s)" if len(missed) > 1 else "") + "); results may differ from fp32")


# ---------------------------------------------------------------- building the int8 graph

def first_conv(onnx_path: Path) -> list[str]:
    """The name of the graph's first Conv node (the stem, kept fp32)."""
    import onnx

    g = onnx.load(str(onnx_path), load_external_data=False).graph
    return [n.name for n in g.node if n.op_type == "Conv"][:1]


def _quantize(fp32_path: Path, out_path: Path, ranges_path: Path, reader=None) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(fp32_path), str(out_path), reader, quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(QUANT_OPS), nodes_to_exclude=first_conv(fp32_path),
                    per_channel=True, reduce_range=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(ranges_path))


class _Batches:
    """ONNX Runtime's calibration reader over ``(N, 3, S, S)`` float32 arrays."""

    def __init__(self, batches: Iterable[np.ndarray]):
        self._it = iter(batches)

    def get_next(self):
        b = next(self._it, None)
        return None if b is None else {"x": np.ascontiguousarray(b, dtype=np.float32)}


def calibrate(fp32_path: Path, batches: Iterable[np.ndarray], out_path: Path) -> dict:
    """Release time: the activation ranges (MinMax over ``batches`` of training films' model
    inputs) as ONNX Runtime's calibration-cache JSON, and the int8 graph at ``out_path``."""
    with tempfile.TemporaryDirectory(prefix="xray-int8-") as tmp:
        ranges = Path(tmp) / "ranges.json"
        _quantize(Path(fp32_path), Path(out_path), ranges, _Batches(batches))
        return json.loads(ranges.read_text())


def range_names(ranges: dict) -> set[str]:
    return set((ranges.get("data") or {}).keys())


def graph_tensor_names(onnx_path: Path) -> set[str]:
    import onnx

    g = onnx.load(str(onnx_path), load_external_data=False).graph
    names = {i.name for i in g.input} | {o.name for o in g.output}
    for n in g.node:
        names.update(n.input)
        names.update(n.output)
    return names


def int8_bytes(fp32_path: Path, ranges: dict) -> bytes:
    """The int8 graph of the fp32 graph at ``fp32_path`` quantised with the recorded ``ranges``
    (no calibration data needed).  ``EngineUnavailable`` when the graph lacks a tensor the
    ranges name (exported by another program version)."""
    from training.inference.engine_onnx import EngineUnavailable

    missing = range_names(ranges) - graph_tensor_names(fp32_path)
    if missing:
        raise EngineUnavailable(f"the fast mode's quantisation ranges do not fit this program's export of the model "
                                f"({len(missing)} tensor(s) missing, e.g. {sorted(missing)[0]})")
    with tempfile.TemporaryDirectory(prefix="xray-int8-") as tmp:
        path = Path(tmp) / "ranges.json"
        path.write_text(json.dumps(ranges))
        out = Path(tmp) / "model.int8.onnx"
        _quantize(Path(fp32_path), out, path)
        return out.read_bytes()


def build_cached_int8(model: nn.Module, digest: str, input_size: int, ranges: dict,
                      folder: Path | None = None) -> Path:
    """The cached int8 graph for this model file (``engine_onnx.cached_graph``: ``<key>.int8.onnx``), built
    from the cached fp32 one when missing, stale or damaged; keyed also by the recipe and the ranges."""
    import hashlib

    from training.inference.engine_onnx import build_cached, cache_key, cached_graph, engine_cache_dir, engine_facts

    folder = Path(folder) if folder is not None else engine_cache_dir()
    key = cache_key(digest)
    # the graph follows from the fp32 export, the recipe and the ranges: other ranges, another graph
    ranges_sha = hashlib.sha256(json.dumps(ranges, sort_keys=True).encode()).hexdigest()
    facts = {**engine_facts(key, input_size), "fast": FAST_FORMAT, "recipe": list(QUANT_OPS) + ["not the stem"],
             "ranges_sha256": ranges_sha}
    path, _ = cached_graph(folder, f"{key}.int8", facts,
                           lambda: int8_bytes(build_cached(model, digest, input_size, folder)[0], ranges),
                           what="quantised to int8")
    return path


def structural_problem(engine, check, classes: int, lesion: bool) -> str:
    """'' when the int8 engine gives finite outputs of the right shapes on ``check`` (batch, then one image)."""
    check = np.asarray(check)
    logits, lesion_map = engine.outputs(check)
    single = engine.logits(check[:1])
    want = (check.shape[0],) if classes <= 2 else (check.shape[0], classes)
    if tuple(logits.shape) != want or not bool(np.isfinite(logits).all()):
        return f"output shape {tuple(logits.shape)} or values invalid"
    if tuple(single.shape) != (1,) + want[1:] or not bool(np.isfinite(single).all()):
        return "a single image gives an invalid output"
    if lesion and (lesion_map is None or not bool(np.isfinite(lesion_map).all())):
        return "no valid lesion map"
    return ""


def prepare_fast_engine(model: nn.Module, digest: str, input_size: int, check, record: dict,
                        classes: int, *, folder: Path | None = None, threads: int | None = None):
    """A checked int8 :class:`~training.inference.engine_onnx.OnnxEngine`, or ``EngineUnavailable``."""
    from training.inference.engine_onnx import EngineUnavailable, OnnxEngine, onnxruntime_module

    onnxruntime_module()
    problem = fast_mode_problem(record)
    if problem:
        raise EngineUnavailable(problem)
    path = build_cached_int8(model, digest, input_size, record["ranges"], folder)
    engine = OnnxEngine(path, threads)
    engine.name = "onnx-int8"
    problem = structural_problem(engine, check, classes, getattr(model, "lesion", None) is not None)
    if problem:
        from training.model.graph_cache import drop_entry

        drop_entry(path)
        raise EngineUnavailable(f"the int8 engine failed its check ({problem})")
    return engine


# ---------------------------------------------------------------- validation figures

def set_agreement(fp32_rows: list[dict], fast_rows: list[dict]) -> dict[str, Any]:
    """Agreement of one set's fast results with its fp32 results (rows of
    ``training.release.evaluate_v2``: ``status``, ``category``, ``p_covid``, ``label``)."""
    from training.model.metrics import calibration

    pairs = [(a, b) for a, b in zip(fp32_rows, fast_rows) if a["status"] == "ok" and b["status"] == "ok"]
    if len(pairs) != sum(1 for a in fp32_rows if a["status"] == "ok"):
        raise ValueError("the fast and fp32 runs classified different films")
    cat_a = np.array([a["category"] for a, _ in pairs])
    cat_b = np.array([b["category"] for _, b in pairs])
    pa = np.array([float(a["p_covid"]) for a, _ in pairs])
    pb = np.array([float(b["p_covid"]) for _, b in pairs])
    y = np.array([a["label"] == "COVID" for a, _ in pairs], dtype=int)
    dp = np.abs(pa - pb)
    n = len(pairs)
    return {"n": n, "verdicts_agree": int((cat_a == cat_b).sum()),
            "verdict_agreement": float((cat_a == cat_b).mean()) if n else 1.0,
            "dp_within_limit": float((dp <= CRITERIA["dp_limit"]).mean()) if n else 1.0,
            "dp_max": float(dp.max()) if n else 0.0, "dp_median": float(np.median(dp)) if n else 0.0,
            "ece_fp32": calibration(y, pa)["ece"] if n else 0.0, "ece_fast": calibration(y, pb)["ece"] if n else 0.0}


def set_passes(fig: dict[str, Any]) -> list[str]:
    """The criteria one set's figures miss ([] = all met).  ECE: at most 0.05, or - where the fp32
    model already misses 0.05 - no more than 0.01 above fp32's (precision must not make it worse)."""
    c, missed = CRITERIA, []
    if fig["verdict_agreement"] < c["verdict_agreement"]:
        missed.append(f"verdict agreement {fig['verdict_agreement']:.3f} < {c['verdict_agreement']}")
    if fig["dp_within_limit"] < c["dp_share"]:
        missed.append(f"|dP(COVID)| <= {c['dp_limit']} for {fig['dp_within_limit']:.3f} < {c['dp_share']} of films")
    if fig["ece_fast"] > max(c["ece_limit"], fig["ece_fp32"] + c["ece_slack"]):
        missed.append(f"ECE {fig['ece_fast']:.3f} (fp32 {fig['ece_fp32']:.3f})")
    return missed


def validation_record(sets: dict[str, dict[str, Any]], **extra) -> dict[str, Any]:
    """The ``validation`` part of a model file's fast-mode record."""
    missed = {name: set_passes(f) for name, f in sets.items()}
    return {"sets": sets, "criteria": dict(CRITERIA), "missed": {k: v for k, v in missed.items() if v},
            "passed": bool(sets) and not any(missed.values()), **extra}


def summary_lines(record: dict | None) -> list[str]:
    """Readable lines for the About box and ``xray-classify --version``."""
    if not record:
        return ["Fast mode (int8): not prepared for this model file."]
    v = record.get("validation") or {}
    head = "passed" if v.get("passed") else "NOT passed - fp32 stays the default; fast runs only when asked, with a warning"
    lines = [f"Fast mode (int8, ONNX Runtime): validation {head} ({v.get('measured_on', '')})."]
    for name, f in (v.get("sets") or {}).items():
        lines.append(f"  {name}: verdicts agree {f['verdicts_agree']}/{f['n']} ({f['verdict_agreement']:.1%}), "
                     f"|dP(COVID)| <= {CRITERIA['dp_limit']} for {f['dp_within_limit']:.1%}, "
                     f"ECE {f['ece_fast']:.3f} (fp32 {f['ece_fp32']:.3f})")
    return lines


__all__ = ["PRECISIONS", "FAST_FORMAT", "CRITERIA", "fast_cpu_support", "fast_mode_problem", "calibrate",
           "int8_bytes", "build_cached_int8", "prepare_fast_engine", "set_agreement", "set_passes",
           "validation_record", "summary_lines", "cpu_flags", "validation_warning", "first_conv"]
