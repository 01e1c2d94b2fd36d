"""The CPU inference engine: the classifier exported once to ONNX and run by
ONNX Runtime, with PyTorch as the fallback.

Why: on the CPUs this project runs on, ONNX Runtime's fp32 kernels classify
faster than PyTorch eager (channels_last) with the same weights and the same
numbers (measured by ``bench/bench_classify.py``; figures in docs/INFERENCE.md).
PyTorch stays the engine for Grad-CAM (it needs gradients), for training and
on CUDA/MPS.

* **Export**: ``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``:
  it handles the stacked LSTM head without extra packages), fp32, opset
  ``OPSET``, a dynamic batch dimension, of a private copy of the model (the
  caller's model, possibly in ``channels_last`` and shared with Grad-CAM, is
  not touched).
* **Cache**: one file per model, ``<cache>/<key>.onnx`` plus ``<key>.json``
  (what it was built from and the ``.onnx`` file's own SHA-256), where
  ``<key>`` is the model file's SHA-256 (``training.audit.model_stamp``).
  ``<cache>`` is ``$XRAY_ENGINE_CACHE`` if set, else the per-user cache folder
  (``$XDG_CACHE_HOME`` or ``~/.cache``/xray-cxr/engines on Linux,
  ``~/Library/Caches/xray-cxr/engines`` on macOS,
  ``%LOCALAPPDATA%\\xray-cxr\\Cache\\engines`` on Windows).  Both files are
  written atomically (``training.atomic``), the ``.onnx`` first; an entry whose
  record is missing, unreadable, made for other facts (format, input size,
  model) or whose ``.onnx`` does not match its recorded SHA-256 is stale or
  damaged and is rebuilt.
* **One-time check on load**: the session runs the caller's check batch
  (batch of 2, then the first image alone, so a batch size baked into the
  graph is caught) and must agree with PyTorch fp32 within ``P_TOLERANCE`` in
  P(COVID) (after the temperature) and ``LOGIT_TOLERANCE`` in the logit; a
  cached file that disagrees is rebuilt once, a fresh one that disagrees makes
  the engine unavailable.

Every failure raises :class:`EngineUnavailable` with a one-line reason; the
``Classifier`` then logs it and classifies with PyTorch.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from . import atomic

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnx")
CACHE_ENV = "XRAY_ENGINE_CACHE"
APP_CACHE = "xray-cxr"
FORMAT = 2  # 2: class logits (N,) or (N, C) and the lesion map as a second output; bump when the export changes: older cache entries are rebuilt
OPSET = 17
P_TOLERANCE = 1e-4
LOGIT_TOLERANCE = 1e-3  # absolute, for |logit| <= 1; relative above


class EngineUnavailable(RuntimeError):
    """The fast engine cannot be used; ``str(exc)`` says why in one line."""


def engine_cache_dir() -> Path:
    """The folder of exported engines (see the module docstring)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / APP_CACHE / "Cache" / "engines"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / APP_CACHE / "engines"
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / APP_CACHE / "engines"


def onnxruntime_module():
    """``onnxruntime``, or :class:`EngineUnavailable` when it cannot be imported."""
    try:
        import onnxruntime
    except Exception as exc:  # ImportError, or a broken install (missing shared library)
        raise EngineUnavailable(f"ONNX Runtime is not available ({type(exc).__name__}: {exc})") from None
    return onnxruntime


def cache_key(digest: str) -> str:
    """A file-name-safe key for a model digest (``training.audit`` digests may carry a ``weights:`` prefix)."""
    key = re.sub(r"[^A-Za-z0-9_-]", "-", digest)
    if not key:
        raise EngineUnavailable("the model has no digest to key its engine cache on")
    return key


def _sha256(path: Path) -> str:
    from .modelfile import file_sha256

    return file_sha256(path)


class _WithLesion(nn.Module):
    """``forward_with_lesion`` as the traced forward: (class logits, lesion logits)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model.forward_with_lesion(x)


def _has_lesion(model: nn.Module) -> bool:
    return getattr(model, "lesion", None) is not None


def export_onnx(model: nn.Module, input_size: int) -> bytes:
    """The fp32 ONNX graph of ``model`` (input ``x``: ``(N, 3, S, S)``, output ``logit``: ``(N,)`` or
    ``(N, C)``; a model with a lesion decoder also ``lesion``: ``(N, 1, h, w)``, from the same pass)."""
    work = copy.deepcopy(model).cpu().float().eval().to(memory_format=torch.contiguous_format)
    names = ["logit"]
    if _has_lesion(work):
        work, names = _WithLesion(work), ["logit", "lesion"]
    example = torch.rand(2, 3, int(input_size), int(input_size), generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    with warnings.catch_warnings():  # tracer and deprecation chatter; correctness is checked on the result
        warnings.simplefilter("ignore")
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(work, (example,), buf, dynamo=False, input_names=["x"], output_names=names,
                              dynamic_axes={"x": {0: "n"}, **{o: {0: "n"} for o in names}}, opset_version=OPSET,
                              do_constant_folding=True)
    return buf.getvalue()


def _facts(key: str, input_size: int) -> dict:
    return {"format": FORMAT, "model": key, "input_size": int(input_size), "opset": OPSET, "torch": torch.__version__}


def _usable_entry(onnx_path: Path, record_path: Path, facts: dict) -> str:
    """'' when the cache entry matches ``facts`` and is undamaged, else why not."""
    if not onnx_path.is_file():
        return "not built yet"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"its record is missing or unreadable ({type(exc).__name__})"
    if not isinstance(record, dict) or any(record.get(k) != v for k, v in facts.items()):
        return "it was built for another model, input size or program version"
    if record.get("sha256") != _sha256(onnx_path):
        return "the file is damaged (checksum mismatch)"
    return ""


def build_cached(model: nn.Module, digest: str, input_size: int, folder: Path | None = None,
                 *, rebuild: bool = False) -> tuple[Path, bool]:
    """The cached ONNX file for this model, exported when missing, stale or
    damaged (or ``rebuild``).  Returns ``(path, exported_now)``."""
    folder = Path(folder) if folder is not None else engine_cache_dir()
    key = cache_key(digest)
    onnx_path, record_path = folder / f"{key}.onnx", folder / f"{key}.json"
    facts = _facts(key, input_size)
    problem = "rebuild requested" if rebuild else _usable_entry(onnx_path, record_path, facts)
    if not problem:
        return onnx_path, False
    if onnx_path.exists():
        log.info("engine cache %s: %s; exporting again", onnx_path.name, problem)
    try:
        data = export_onnx(model, input_size)
    except Exception as exc:
        raise EngineUnavailable(f"the model could not be exported to ONNX ({type(exc).__name__}: {exc})") from None
    try:
        atomic.write_bytes(onnx_path, data)
        atomic.write_text(record_path, json.dumps({**facts, "sha256": _sha256(onnx_path)}, indent=1))
    except OSError as exc:
        raise EngineUnavailable(f"the engine cache folder {folder} is not writable ({exc.strerror or exc})") from None
    return onnx_path, True


class OnnxEngine:
    """An ONNX Runtime session on the CPU: ``logits(batch) -> (N,) float32``."""

    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None):
        ort = onnxruntime_module()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between runs: the decode threads and the GUI share these cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise EngineUnavailable(f"ONNX Runtime cannot open {Path(path).name} ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
        self.path = Path(path)
        self.threads = opts.intra_op_num_threads
        self.version = getattr(ort, "__version__", "?")

        self.output_names = [o.name for o in self.session.get_outputs()]

    def outputs(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(N, 3, S, S)`` -> (fp32 logits ``(N,)`` or ``(N, C)``, lesion logits ``(N, 1, h, w)`` or None)."""
        x = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).contiguous().numpy())
        outs = self.session.run(self.output_names, {"x": x})
        logit = np.asarray(outs[0], dtype=np.float32).reshape(x.shape[0], -1)
        logit_t = torch.from_numpy(logit[:, 0] if logit.shape[1] == 1 else logit)
        lesion = torch.from_numpy(np.asarray(outs[1], dtype=np.float32)) if len(outs) > 1 else None
        return logit_t, lesion

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` -> ``(N,)`` or ``(N, C)`` fp32 logits (CPU tensor)."""
        return self.outputs(batch)[0]


def disagreement(engine: OnnxEngine, model: nn.Module, check: torch.Tensor, temperature: float) -> str:
    """'' when ``engine`` agrees with the fp32 PyTorch ``model`` on ``check``
    (batch of N, then its first image alone), else what differs."""
    with torch.inference_mode():
        x = check.to(next(model.parameters()).device, torch.float32)
        ref, ref_lesion = model.forward_with_lesion(x) if _has_lesion(model) else (model(x), None)
        ref = ref.float().cpu()
    got, got_lesion = engine.outputs(check)
    single = engine.logits(check[:1])
    checks = [("batch", got, ref), ("single image", single, ref[:1])]
    if ref_lesion is not None:
        if got_lesion is None:
            return "the engine gives no lesion map"
        checks.append(("lesion map", got_lesion, ref_lesion.float().cpu()))
    for name, out, want in checks:
        if tuple(out.shape) != tuple(want.shape) or not bool(torch.isfinite(out).all()):
            return f"{name}: output shape {tuple(out.shape)} or values invalid"
        dlogit = (out - want).abs() / want.abs().clamp(min=1.0)
        dp = (torch.sigmoid(out / temperature) - torch.sigmoid(want / temperature)).abs()
        if float(dlogit.max()) > LOGIT_TOLERANCE or float(dp.max()) > P_TOLERANCE:
            return (f"{name}: |dP| {float(dp.max()):.2e}, relative |dlogit| {float(dlogit.max()):.2e} "
                    f"(limits {P_TOLERANCE:g}, {LOGIT_TOLERANCE:g})")
    return ""


def prepare_engine(model: nn.Module, digest: str, input_size: int, check: torch.Tensor, temperature: float = 1.0,
                   *, folder: Path | None = None, threads: int | None = None) -> OnnxEngine:
    """A checked ONNX Runtime engine for ``model`` (exported and cached on first
    use), or :class:`EngineUnavailable`.  A cached entry that cannot be opened or
    disagrees with PyTorch is rebuilt once."""
    onnxruntime_module()  # fail fast, before an export nobody could run
    path, fresh = build_cached(model, digest, input_size, folder)
    try:
        engine = OnnxEngine(path, threads)
        problem = disagreement(engine, model, check, temperature)
    except EngineUnavailable as exc:
        problem = str(exc)
    if problem and not fresh:
        log.info("engine cache %s rejected (%s); exporting again", path.name, problem)
        path, fresh = build_cached(model, digest, input_size, folder, rebuild=True)
        try:
            engine = OnnxEngine(path, threads)
            problem = disagreement(engine, model, check, temperature)
        except EngineUnavailable as exc:
            problem = str(exc)
    if problem:
        for stale in (path, path.with_suffix(".json")):  # never keep a file that failed its check
            try:
                stale.unlink()
            except OSError:
                pass
        raise EngineUnavailable(f"ONNX Runtime does not agree with PyTorch on this model ({problem})"
                                if "|dP|" in problem or "invalid" in problem else problem)
    return engine


__all__ = ["ENGINES", "CACHE_ENV", "EngineUnavailable", "OnnxEngine", "engine_cache_dir", "build_cached",
           "export_onnx", "prepare_engine", "disagreement", "onnxruntime_module", "P_TOLERANCE"]
