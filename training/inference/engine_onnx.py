"""The CPU inference engine: the classifier exported once to ONNX and run by
ONNX Runtime, with PyTorch as the fallback.

Why: on the CPUs this project runs on, ONNX Runtime's fp32 kernels classify
faster than PyTorch eager (channels_last) with the same weights and the same
numbers (measured by ``bench/bench_classify.py``; figures in docs/INFERENCE.md).
PyTorch stays the engine for training and on CUDA/MPS.

* **Outputs**: ``logit`` (``(N,)`` or ``(N, C)``), for a model with a lesion
  decoder ``lesion`` (``(N, 1, h, w)``), and for a model whose Grad-CAM can
  come from the classification pass (``training.inference.explain.cam_head``: a
  ``cam_layer`` followed by ``_head``) ``features``: ``cam_layer``'s output
  (ResNet50's ``layer4``, ``(N, 2048, S/32, S/32)``), all from the same pass.
  Grad-CAM then needs only the gradient through the small head, taken in
  torch (``training.inference.explain.cams_from_features``).  ``OnnxEngine.outputs``
  fetches the first two; ``outputs_with_features`` all three.

* **Export**: ``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``:
  it handles the stacked LSTM head without extra packages), fp32, opset
  ``OPSET``, a dynamic batch dimension, of a private copy of the model (the
  caller's model, possibly in ``channels_last`` and shared with Grad-CAM, is
  not touched).
* **Cache**: one file per model, ``<cache>/<key>.onnx`` plus ``<key>.json``
  (what it was built from and the ``.onnx`` file's own SHA-256), where
  ``<key>`` is the model file's SHA-256 (``training.model.audit.model_stamp``).
  ``<cache>`` is ``$XRAY_ENGINE_CACHE`` if set, else the per-user cache folder
  (``$XDG_CACHE_HOME`` or ``~/.cache``/xray-cxr/engines on Linux,
  ``~/Library/Caches/xray-cxr/engines`` on macOS,
  ``%LOCALAPPDATA%\\xray-cxr\\Cache\\engines`` on Windows).  Both files are
  written atomically (``training.common.atomic``), the ``.onnx`` first; an entry whose
  record is missing, unreadable, made for other facts (format, input size,
  model) or whose ``.onnx`` does not match its recorded SHA-256 is stale or
  damaged and is rebuilt.
* **One-time check on load**: the session runs the caller's check batch
  (batch of 2, then the first image alone, so a batch size baked into the
  graph is caught) and must agree with PyTorch fp32 within ``P_TOLERANCE`` in
  P(COVID) (after the temperature) and ``LOGIT_TOLERANCE`` in the logit (the
  lesion map likewise), and in ``features`` within ``FEATURE_TOLERANCE`` times
  the map's largest value; a cached file that disagrees is rebuilt once, a
  fresh one that disagrees makes the engine unavailable.

Every failure raises :class:`EngineUnavailable` with a one-line reason; the
``Classifier`` then logs it and classifies with PyTorch.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from training.model.graph_cache import (
    CACHE_ENV,
    OPSET,
    EngineUnavailable,
    cache_key,
    cached_graph,
    cpu_session,
    drop_entry,
    engine_cache_dir,
    export_graph,
    onnxruntime_module,
)

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnx")
# 2: class logits (N,) or (N, C) and the lesion map as a second output; 3: cam_layer's activations as
# ``features`` (Grad-CAM from the classification pass).  Bump when the export changes: older entries are rebuilt
FORMAT = 3
P_TOLERANCE = 1e-4
LOGIT_TOLERANCE = 1e-3  # absolute, for |logit| <= 1; relative above
FEATURE_TOLERANCE = 1e-4  # max |d features| / max(1, max |features|)


class _ExportView(nn.Module):
    """The traced forward: class logits, then the lesion logits (``forward_with_lesion``) and ``cam_layer``'s
    output, each when the model has it."""

    def __init__(self, model: nn.Module, lesion: bool, features: bool):
        super().__init__()
        self.model = model
        self.lesion = lesion
        self.features = features

    def forward(self, x: torch.Tensor):
        from training.inference.engine import capture_features

        with capture_features(self.model) if self.features else contextlib.nullcontext() as got:
            outs = list(self.model.forward_with_lesion(x)) if self.lesion else [self.model(x)]
        if self.features:
            outs.append(got.value)
        return tuple(outs)


def _has_lesion(model: nn.Module) -> bool:
    return getattr(model, "lesion", None) is not None


def _has_features(model: nn.Module) -> bool:
    from training.inference.explain import cam_head

    return cam_head(model) is not None


def export_onnx(model: nn.Module, input_size: int) -> bytes:
    """The fp32 ONNX graph of ``model`` (input ``x``: ``(N, 3, S, S)``, output ``logit``: ``(N,)`` or
    ``(N, C)``; a model with a lesion decoder also ``lesion``: ``(N, 1, h, w)``; a model with a Grad-CAM
    head also ``features``: ``cam_layer``'s output ``(N, C', h', w')``; all from the same pass)."""
    work = copy.deepcopy(model).cpu().float().eval().to(memory_format=torch.contiguous_format)
    lesion, features = _has_lesion(work), _has_features(work)
    names = ["logit"] + (["lesion"] if lesion else []) + (["features"] if features else [])
    if len(names) > 1:
        work = _ExportView(work, lesion, features)
    return export_graph(work, (1, 3, int(input_size), int(input_size)), names)


def engine_facts(key: str, input_size: int) -> dict:
    """What an fp32 graph is built from (its cache record's facts)."""
    return {"format": FORMAT, "model": key, "input_size": int(input_size), "opset": OPSET, "torch": torch.__version__}


def build_cached(model: nn.Module, digest: str, input_size: int, folder: Path | None = None,
                 *, rebuild: bool = False) -> tuple[Path, bool]:
    """The cached ONNX file for this model, exported when missing, stale or
    damaged (or ``rebuild``).  Returns ``(path, exported_now)``."""
    folder = Path(folder) if folder is not None else engine_cache_dir()
    key = cache_key(digest)
    return cached_graph(folder, key, engine_facts(key, input_size), lambda: export_onnx(model, input_size),
                        rebuild=rebuild)


class OnnxEngine:
    """An ONNX Runtime session on the CPU: ``logits(batch) -> (N,) float32``; ``outputs`` and
    ``outputs_with_features`` (``has_features``) give the other outputs of the same run."""

    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None):
        ort = onnxruntime_module()
        self.session, self.threads = cpu_session(path, threads)
        self.path = Path(path)
        self.version = getattr(ort, "__version__", "?")

        self.output_names = [o.name for o in self.session.get_outputs()]
        self.has_features = "features" in self.output_names
        self._class_outputs = [n for n in self.output_names if n != "features"]

    def _run(self, batch: torch.Tensor, names: list[str]) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).contiguous().numpy())
        outs = self.session.run(names, {"x": x})
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(names, outs)}

    @staticmethod
    def _logit(outs: dict[str, np.ndarray]) -> torch.Tensor:
        logit = outs["logit"].reshape(outs["logit"].shape[0], -1)
        return torch.from_numpy(logit[:, 0] if logit.shape[1] == 1 else logit)

    def outputs(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(N, 3, S, S)`` -> (fp32 logits ``(N,)`` or ``(N, C)``, lesion logits ``(N, 1, h, w)`` or None)."""
        outs = self._run(batch, self._class_outputs)
        lesion = outs.get("lesion")
        return self._logit(outs), None if lesion is None else torch.from_numpy(lesion)

    def outputs_with_features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """:meth:`outputs` and ``cam_layer``'s activations ``(N, C, h, w)`` fp32, from the same run."""
        if not self.has_features:
            raise EngineUnavailable("this engine's graph has no features output")
        outs = self._run(batch, self.output_names)
        lesion = outs.get("lesion")
        return (self._logit(outs), None if lesion is None else torch.from_numpy(lesion),
                torch.from_numpy(outs["features"]))

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` -> ``(N,)`` or ``(N, C)`` fp32 logits (CPU tensor)."""
        return self.outputs(batch)[0]


def reference_outputs(model: nn.Module, check: torch.Tensor) -> tuple:
    """The fp32 PyTorch ``model``'s (logits, lesion logits or None, ``cam_layer`` activations or None) on
    ``check``, on the CPU: what an engine is checked against (the classifier's self-test computes them
    once and hands them to :func:`prepare_engine`, so a start-up runs the PyTorch model once)."""
    from training.inference.engine import capture_features

    features = _has_features(model)
    with torch.inference_mode():
        x = check.to(next(model.parameters()).device, torch.float32)
        with capture_features(model) if features else contextlib.nullcontext() as grabbed:
            ref, ref_lesion = model.forward_with_lesion(x) if _has_lesion(model) else (model(x), None)
        return (ref.float().cpu(), None if ref_lesion is None else ref_lesion.float().cpu(),
                grabbed.value.float().cpu() if features else None)


def disagreement(engine: OnnxEngine, model: nn.Module, check: torch.Tensor, temperature: float,
                 reference: tuple | None = None) -> str:
    """'' when ``engine`` agrees with the fp32 PyTorch ``model`` on ``check``
    (batch of N, then its first image alone), else what differs.  ``reference``: the model's
    :func:`reference_outputs` on ``check`` when already computed."""
    ref, ref_lesion, ref_features = reference if reference is not None else reference_outputs(model, check)
    features = ref_features is not None
    if features:
        if not engine.has_features:
            return "the engine gives no features output"
        got, got_lesion, got_features = engine.outputs_with_features(check)
    else:
        (got, got_lesion), got_features = engine.outputs(check), None
    single = engine.logits(check[:1])
    checks = [("batch", got, ref), ("single image", single, ref[:1])]
    if ref_lesion is not None:
        if got_lesion is None:
            return "the engine gives no lesion map"
        checks.append(("lesion map", got_lesion, ref_lesion))
    if ref_features is not None:
        if tuple(got_features.shape) != tuple(ref_features.shape) or not bool(torch.isfinite(got_features).all()):
            return f"features: output shape {tuple(got_features.shape)} or values invalid"
        scale = max(1.0, float(ref_features.abs().max()))
        dfeat = float((got_features - ref_features).abs().max()) / scale
        if dfeat > FEATURE_TOLERANCE:
            return f"features: |dA| / max|A| {dfeat:.2e} (limit {FEATURE_TOLERANCE:g})"
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
                   *, folder: Path | None = None, threads: int | None = None,
                   reference: tuple | None = None) -> OnnxEngine:
    """A checked ONNX Runtime engine for ``model`` (exported and cached on first
    use), or :class:`EngineUnavailable`.  A cached entry that cannot be opened or
    disagrees with PyTorch is rebuilt once."""
    onnxruntime_module()  # fail fast, before an export nobody could run
    path, fresh = build_cached(model, digest, input_size, folder)
    try:
        engine = OnnxEngine(path, threads)
        problem = disagreement(engine, model, check, temperature, reference)
    except EngineUnavailable as exc:
        problem = str(exc)
    if problem and not fresh:
        log.info("engine cache %s rejected (%s); exporting again", path.name, problem)
        path, fresh = build_cached(model, digest, input_size, folder, rebuild=True)
        try:
            engine = OnnxEngine(path, threads)
            problem = disagreement(engine, model, check, temperature, reference)
        except EngineUnavailable as exc:
            problem = str(exc)
    if problem:
        drop_entry(path)  # never keep a file that failed its check
        raise EngineUnavailable(f"ONNX Runtime does not agree with PyTorch on this model ({problem})"
                                if "|dP|" in problem or "|dA|" in problem or "invalid" in problem else problem)
    return engine


__all__ = ["ENGINES", "CACHE_ENV", "EngineUnavailable", "OnnxEngine", "engine_cache_dir", "build_cached",
           "cached_graph", "engine_facts", "cache_key",
           "export_onnx", "prepare_engine", "disagreement", "reference_outputs", "onnxruntime_module", "P_TOLERANCE",
           "FEATURE_TOLERANCE"]
