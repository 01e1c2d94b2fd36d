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
  fresh one that disagrees makes the engine unavailable.  The check's PyTorch outputs (logits and
  lesion map) are then kept in the entry's record (``reference``), so a later start-up can open the
  cached graph and check it against them **without torch** (:func:`open_cached`: the model file's
  SHA-256 is the key, the ``.onnx`` file's own SHA-256 is checked, and the graph must still give the
  recorded outputs within the same tolerances) - ``Classifier.from_file`` then never imports torch.

No torch at import: only exporting and computing the reference outputs import it.

Every failure raises :class:`EngineUnavailable` with a one-line reason; the
``Classifier`` then logs it and classifies with PyTorch.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.common import atomic
from training.model.calibration import sigmoid
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
    torch_version,
    usable_entry,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnx")
# 2: class logits (N,) or (N, C) and the lesion map as a second output; 3: cam_layer's activations as
# ``features`` (Grad-CAM from the classification pass).  Bump when the export changes: older entries are rebuilt
# 4: the record keeps PyTorch's outputs on the check batch (``reference``)
FORMAT = 4
P_TOLERANCE = 1e-4
LOGIT_TOLERANCE = 1e-3  # absolute, for |logit| <= 1; relative above
FEATURE_TOLERANCE = 1e-4  # max |d features| / max(1, max |features|)


def _export_view(model: "nn.Module", lesion: bool, features: bool) -> "nn.Module":
    """The traced forward: class logits, then the lesion logits (``forward_with_lesion``) and ``cam_layer``'s
    output, each when the model has it."""
    import torch.nn as nn

    from training.inference.engine import capture_features

    class ExportView(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            with capture_features(self.model) if features else contextlib.nullcontext() as got:
                outs = list(self.model.forward_with_lesion(x)) if lesion else [self.model(x)]
            if features:
                outs.append(got.value)
            return tuple(outs)

    return ExportView()


def _has_lesion(model: "nn.Module") -> bool:
    return getattr(model, "lesion", None) is not None


def _has_features(model: "nn.Module") -> bool:
    from training.inference.explain import cam_head

    return cam_head(model) is not None


def export_onnx(model: "nn.Module", input_size: int) -> bytes:
    """The fp32 ONNX graph of ``model`` (input ``x``: ``(N, 3, S, S)``, output ``logit``: ``(N,)`` or
    ``(N, C)``; a model with a lesion decoder also ``lesion``: ``(N, 1, h, w)``; a model with a Grad-CAM
    head also ``features``: ``cam_layer``'s output ``(N, C', h', w')``; all from the same pass)."""
    import torch

    work = copy.deepcopy(model).cpu().float().eval().to(memory_format=torch.contiguous_format)
    lesion, features = _has_lesion(work), _has_features(work)
    names = ["logit"] + (["lesion"] if lesion else []) + (["features"] if features else [])
    if len(names) > 1:
        work = _export_view(work, lesion, features)
    return export_graph(work, (1, 3, int(input_size), int(input_size)), names)


def engine_facts(key: str, input_size: int) -> dict:
    """What an fp32 graph is built from (its cache record's facts)."""
    return {"format": FORMAT, "model": key, "input_size": int(input_size), "opset": OPSET, "torch": torch_version()}


def check_batch(input_size: int) -> np.ndarray:
    """Two very different synthetic inputs at the model's size (the self-test, the engine check): a ramp
    (dark top, bright bottom) and seeded noise, ``(2, 3, S, S)`` float32."""
    from training.imaging.resize import preprocess

    s = int(input_size)
    ramp = np.linspace(0.0, 1.0, s, dtype=np.float32)
    first = np.outer(ramp, np.ones(s, dtype=np.float32))
    second = np.random.default_rng(13).random((s, s), dtype=np.float32)
    return np.stack([preprocess(first, s), preprocess(second, s)])


def build_cached(model: "nn.Module", digest: str, input_size: int, folder: Path | None = None,
                 *, rebuild: bool = False) -> tuple[Path, bool]:
    """The cached ONNX file for this model, exported when missing, stale or
    damaged (or ``rebuild``).  Returns ``(path, exported_now)``."""
    folder = Path(folder) if folder is not None else engine_cache_dir()
    key = cache_key(digest)
    return cached_graph(folder, key, engine_facts(key, input_size), lambda: export_onnx(model, input_size),
                        rebuild=rebuild)


class OnnxEngine:
    """An ONNX Runtime session on the CPU: NumPy batches in, NumPy arrays out.  ``logits(batch) -> (N,)``
    or ``(N, C)``; ``outputs`` and ``outputs_with_features`` (``has_features``) give the other outputs of
    the same run."""

    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None):
        ort = onnxruntime_module()
        self.session, self.threads = cpu_session(path, threads)
        self.path = Path(path)
        self.version = getattr(ort, "__version__", "?")

        self.output_names = [o.name for o in self.session.get_outputs()]
        self.has_features = "features" in self.output_names
        self._class_outputs = [n for n in self.output_names if n != "features"]

    def _run(self, batch, names: list[str]) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(np.asarray(batch), dtype=np.float32)
        outs = self.session.run(names, {"x": x})
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(names, outs)}

    @staticmethod
    def _logit(outs: dict[str, np.ndarray]) -> np.ndarray:
        logit = outs["logit"].reshape(outs["logit"].shape[0], -1)
        return logit[:, 0] if logit.shape[1] == 1 else logit

    def outputs(self, batch) -> tuple[np.ndarray, np.ndarray | None]:
        """``(N, 3, S, S)`` -> (fp32 logits ``(N,)`` or ``(N, C)``, lesion logits ``(N, 1, h, w)`` or None)."""
        outs = self._run(batch, self._class_outputs)
        return self._logit(outs), outs.get("lesion")

    def outputs_with_features(self, batch) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """:meth:`outputs` and ``cam_layer``'s activations ``(N, C, h, w)`` fp32, from the same run."""
        if not self.has_features:
            raise EngineUnavailable("this engine's graph has no features output")
        outs = self._run(batch, self.output_names)
        return self._logit(outs), outs.get("lesion"), outs["features"]

    def logits(self, batch) -> np.ndarray:
        """``(N, 3, S, S)`` -> ``(N,)`` or ``(N, C)`` fp32 logits."""
        return self.outputs(batch)[0]


def reference_outputs(model: "nn.Module", check) -> tuple:
    """The fp32 PyTorch ``model``'s (logits, lesion logits or None, ``cam_layer`` activations or None) on
    ``check`` (NumPy), on the CPU, as NumPy: what an engine is checked against (the classifier's self-test
    computes them once and hands them to :func:`prepare_engine`, so a start-up runs the PyTorch model once)."""
    import torch

    from training.inference.engine import capture_features

    features = _has_features(model)
    with torch.inference_mode():
        x = torch.as_tensor(np.asarray(check), dtype=torch.float32).to(next(model.parameters()).device)
        with capture_features(model) if features else contextlib.nullcontext() as grabbed:
            ref, ref_lesion = model.forward_with_lesion(x) if _has_lesion(model) else (model(x), None)
        return (ref.float().cpu().numpy(), None if ref_lesion is None else ref_lesion.float().cpu().numpy(),
                grabbed.value.float().cpu().numpy() if features else None)


def _compare(name: str, out, want, temperature: float) -> str:
    out, want = np.asarray(out, dtype=np.float32), np.asarray(want, dtype=np.float32)
    if tuple(out.shape) != tuple(want.shape) or not bool(np.isfinite(out).all()):
        return f"{name}: output shape {tuple(out.shape)} or values invalid"
    dlogit = np.abs(out - want) / np.maximum(np.abs(want), 1.0)
    dp = np.abs(sigmoid(out / temperature) - sigmoid(want / temperature))
    if float(dlogit.max(initial=0.0)) > LOGIT_TOLERANCE or float(dp.max(initial=0.0)) > P_TOLERANCE:
        return (f"{name}: |dP| {float(dp.max()):.2e}, relative |dlogit| {float(dlogit.max()):.2e} "
                f"(limits {P_TOLERANCE:g}, {LOGIT_TOLERANCE:g})")
    return ""


def disagreement(engine: OnnxEngine, model: "nn.Module | None", check, temperature: float,
                 reference: tuple | None = None) -> str:
    """'' when ``engine`` agrees with the fp32 PyTorch ``model`` on ``check``
    (batch of N, then its first image alone), else what differs.  ``reference``: the model's
    :func:`reference_outputs` on ``check`` when already computed (``features`` None: not checked)."""
    ref, ref_lesion, ref_features = reference if reference is not None else reference_outputs(model, check)
    if ref_features is not None:
        if not engine.has_features:
            return "the engine gives no features output"
        got, got_lesion, got_features = engine.outputs_with_features(check)
    else:
        (got, got_lesion), got_features = engine.outputs(check), None
    if ref_features is not None:
        if tuple(got_features.shape) != tuple(ref_features.shape) or not bool(np.isfinite(got_features).all()):
            return f"features: output shape {tuple(got_features.shape)} or values invalid"
        scale = max(1.0, float(np.abs(ref_features).max()))
        dfeat = float(np.abs(got_features - ref_features).max()) / scale
        if dfeat > FEATURE_TOLERANCE:
            return f"features: |dA| / max|A| {dfeat:.2e} (limit {FEATURE_TOLERANCE:g})"
    return (_outputs_problem(got, got_lesion, ref, ref_lesion, temperature)
            or _compare("single image", engine.logits(np.asarray(check)[:1]), np.asarray(ref)[:1], temperature))


def _outputs_problem(logits, lesion, ref, ref_lesion, temperature: float) -> str:
    """'' when the batch's logits and lesion map agree with the reference's, else what differs."""
    if ref_lesion is not None and lesion is None:
        return "the engine gives no lesion map"
    return (_compare("batch", logits, ref, temperature)
            or (_compare("lesion map", lesion, ref_lesion, temperature) if ref_lesion is not None else ""))


def _feature_summary(features) -> dict | None:
    """``cam_layer``'s activations ``(N, C, h, w)`` in brief: the mean of each channel and of each position,
    and the largest value (a drifting graph moves them; the full map would make the record megabytes)."""
    if features is None:
        return None
    a = np.asarray(features, dtype=np.float64)
    return {"channel_mean": a.mean(axis=(2, 3)).tolist(), "position_mean": a.mean(axis=1).reshape(len(a), -1).tolist(),
            "max": float(np.abs(a).max())}


def _feature_drift(got, want: dict) -> float:
    """Largest difference of the two summaries, relative to ``max(1, max |A|)``."""
    have = _feature_summary(got)
    d = max(float(np.abs(np.subtract(have[k], want[k])).max()) for k in ("channel_mean", "position_mean"))
    return d / max(1.0, float(want["max"]))


def _keep_reference(path: Path, reference: tuple) -> None:
    """Store PyTorch's logits, lesion map and a summary of the activations on the check batch in the entry's
    record (for :func:`open_cached`)."""
    record_path = Path(path).with_suffix(".json")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        ref, ref_lesion, ref_features = reference
        record["reference"] = {"logit": np.asarray(ref, dtype=np.float32).tolist(),
                               "lesion": None if ref_lesion is None else np.asarray(ref_lesion, np.float32).tolist(),
                               "features": _feature_summary(ref_features)}
        atomic.write_text(record_path, json.dumps(record))
    except (OSError, ValueError) as exc:  # the engine works; only the torch-free start-up is lost
        log.info("engine cache %s: the reference outputs could not be kept (%s)", record_path.name, exc)


def open_cached(digest: str, input_size: int, temperature: float = 1.0, *, folder: Path | None = None,
                threads: int | None = None) -> tuple[OnnxEngine, np.ndarray, np.ndarray | None]:
    """The cached fp32 engine of the model file with SHA-256 ``digest``, opened and checked WITHOUT torch:
    the entry must match this program's facts and its checksum, and the graph must give the PyTorch outputs
    kept in its record (:func:`prepare_engine` keeps them) within the tolerances.  Returns ``(engine, logits,
    lesion logits or None)`` on the check batch (the self-test's outputs); :class:`EngineUnavailable` otherwise
    (the caller then loads the model in PyTorch)."""
    folder = Path(folder) if folder is not None else engine_cache_dir()
    key = cache_key(digest)
    path = folder / f"{key}.onnx"
    problem = usable_entry(path, path.with_suffix(".json"), engine_facts(key, input_size))
    if problem:
        raise EngineUnavailable(f"no usable cached engine ({problem})")
    try:
        stored = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))["reference"]
        ref = np.asarray(stored["logit"], dtype=np.float32)
        ref_lesion = None if stored.get("lesion") is None else np.asarray(stored["lesion"], dtype=np.float32)
        ref_features = stored.get("features")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineUnavailable(f"the cached engine keeps no reference outputs ({type(exc).__name__})") from None
    engine = OnnxEngine(path, threads)
    check = check_batch(input_size)  # one run: also the self-test's outputs
    if ref_features is not None:
        if not engine.has_features:
            raise EngineUnavailable("the cached engine gives no features output")
        logits, lesion, features = engine.outputs_with_features(check)
        drift = _feature_drift(features, ref_features)
        if not drift <= FEATURE_TOLERANCE:
            raise EngineUnavailable(f"the cached engine does not give its recorded outputs (features: |dA| / max|A| "
                                    f"{drift:.2e}, limit {FEATURE_TOLERANCE:g})")
    else:
        logits, lesion = engine.outputs(check)
    problem = _outputs_problem(logits, lesion, ref, ref_lesion, temperature)
    if problem:
        raise EngineUnavailable(f"the cached engine does not give its recorded outputs ({problem})")
    return engine, logits, lesion


def prepare_engine(model: "nn.Module", digest: str, input_size: int, check, temperature: float = 1.0,
                   *, folder: Path | None = None, threads: int | None = None,
                   reference: tuple | None = None) -> OnnxEngine:
    """A checked ONNX Runtime engine for ``model`` (exported and cached on first
    use), or :class:`EngineUnavailable`.  A cached entry that cannot be opened or
    disagrees with PyTorch is rebuilt once.  The reference outputs are kept in the entry's record."""
    onnxruntime_module()  # fail fast, before an export nobody could run
    reference = reference if reference is not None else reference_outputs(model, check)
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
    if np.array_equal(np.asarray(check), check_batch(input_size)):
        _keep_reference(path, reference)
    return engine


__all__ = ["ENGINES", "CACHE_ENV", "EngineUnavailable", "OnnxEngine", "engine_cache_dir", "build_cached",
           "cached_graph", "engine_facts", "cache_key", "check_batch", "open_cached",
           "export_onnx", "prepare_engine", "disagreement", "reference_outputs", "onnxruntime_module", "P_TOLERANCE",
           "FEATURE_TOLERANCE"]
