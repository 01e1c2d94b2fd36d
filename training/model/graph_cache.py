"""The cache of exported ONNX graphs and small networks run by ONNX Runtime.

* :func:`cached_graph` is the one cache-entry mechanism of every exported graph
  (the classifier's fp32 and int8 engines in ``training.inference``, the lung
  segmenter and the orientation networks here): ``<folder>/<stem>.onnx`` plus
  ``<stem>.json`` (what it was built from and the ``.onnx`` file's SHA-256),
  both written atomically; an entry that is missing, made for other facts or
  damaged is built again.  The folder is :func:`engine_cache_dir`
  (``$XRAY_ENGINE_CACHE``, else the per-user cache folder).
* :class:`SmallGraph` runs a small fixed-size network (the gate's segmenter, the
  orientation check) from its cached graph.  Why: after the first run a
  process then never builds these networks in PyTorch - no MONAI import (the
  segmenter is MONAI's BasicUNet, and importing any MONAI network costs about
  4 s on a 2-core CPU), no TorchScript tracing (1.5 s) - and ONNX Runtime runs
  them at least as fast.  The graph is exported from the PyTorch network the
  first time (``make``) and checked against it then (:func:`check_small`);
  later runs trust the entry's SHA-256.  Any failure raises
  :class:`EngineUnavailable` and the caller runs the network in PyTorch.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from training.common import atomic

if TYPE_CHECKING:  # pragma: no cover - torch is imported only to export and check a graph
    import torch.nn as nn

log = logging.getLogger(__name__)

CACHE_ENV = "XRAY_ENGINE_CACHE"
APP_CACHE = "xray-cxr"
SMALL_FORMAT = 1
OPSET = 17  # every graph this program exports
SMALL_TOLERANCE = 1e-4  # max |d output| / max(1, max |output|) between ONNX Runtime and PyTorch, when exported


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
    """A file-name-safe key for a model digest (``training.model.audit`` digests may carry a ``weights:`` prefix)."""
    key = re.sub(r"[^A-Za-z0-9_-]", "-", digest)
    if not key:
        raise EngineUnavailable("the model has no digest to key its engine cache on")
    return key


def _sha256(path: Path) -> str:
    from training.model.modelfile import file_sha256

    return file_sha256(path)


def usable_entry(onnx_path: Path, record_path: Path, facts: dict) -> str:
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


def cached_graph(folder: Path, stem: str, facts: dict, make, *, rebuild: bool = False,
                 what: str = "exported to ONNX") -> tuple[Path, bool]:
    """The one cache-entry mechanism of the engines: ``<folder>/<stem>.onnx`` + ``<stem>.json`` (``facts`` and
    the ``.onnx`` file's SHA-256).  When the entry is missing, stale (other facts), damaged or ``rebuild``,
    ``make()`` gives the graph's bytes, written atomically with its record.  Returns ``(path, made_now)``."""
    onnx_path, record_path = folder / f"{stem}.onnx", folder / f"{stem}.json"
    problem = "rebuild requested" if rebuild else usable_entry(onnx_path, record_path, facts)
    if not problem:
        return onnx_path, False
    if onnx_path.exists():
        log.info("engine cache %s: %s; building again", onnx_path.name, problem)
    try:
        data = make()
    except EngineUnavailable:
        raise
    except Exception as exc:
        raise EngineUnavailable(f"the model could not be {what} ({type(exc).__name__}: {exc})") from None
    try:
        atomic.write_bytes(onnx_path, data)
        atomic.write_text(record_path, json.dumps({**facts, "sha256": _sha256(onnx_path)}, indent=1))
    except OSError as exc:
        raise EngineUnavailable(f"the engine cache folder {folder} is not writable ({exc.strerror or exc})") from None
    return onnx_path, True




def torch_version() -> str:
    """The installed torch's version, read from its package record (no import): a cache fact."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "none"


def export_graph(module: "nn.Module", input_shape: Sequence[int], outputs: Sequence[str]) -> bytes:
    """The fp32 ONNX graph of ``module`` with one input ``x`` of ``input_shape`` (the batch dimension dynamic,
    like every output's): the TorchScript exporter (``dynamo=False``), opset ``OPSET``, traced on a seeded
    random batch of 2.  The one export of the classifier's engine and of the small networks."""
    import torch

    example = torch.rand(2, *[int(s) for s in input_shape[1:]], generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    with warnings.catch_warnings():  # tracer and deprecation chatter; correctness is checked on the result
        warnings.simplefilter("ignore")
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(module.eval(), (example,), buf, dynamo=False, input_names=["x"],
                              output_names=list(outputs), dynamic_axes={"x": {0: "n"}, **{o: {0: "n"} for o in outputs}},
                              opset_version=OPSET, do_constant_folding=True)
    return buf.getvalue()


def cpu_session(path: Path, threads: int | None = None):
    """``(session, threads)``: an ONNX Runtime CPU session of the graph at ``path`` (full graph
    optimisation, ``threads`` intra-op threads, default torch's, one inter-op thread, no busy-waiting
    between runs: the decode threads and the GUI share these cores); :class:`EngineUnavailable` with
    a one-line reason when it cannot be opened."""
    ort = onnxruntime_module()
    opts = ort.SessionOptions()
    from training.common.cpu import compute_threads

    opts.intra_op_num_threads = int(threads or compute_threads())
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise EngineUnavailable(f"ONNX Runtime cannot open {Path(path).name} ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    return session, opts.intra_op_num_threads


def drop_entry(path: Path) -> None:
    """Remove a cache entry (``.onnx`` and its ``.json`` record) that failed its check: never kept."""
    for stale in (Path(path), Path(path).with_suffix(".json")):
        try:
            stale.unlink()
        except OSError:
            pass


class SmallGraph:
    """A small network's cached graph in an ONNX Runtime session (CPU, one thread per core torch uses):
    ``graph(x)`` (a NumPy batch) -> the outputs as fp32 NumPy arrays, in the exported order."""

    def __init__(self, path: Path, threads: int | None = None):
        self.session, self.threads = cpu_session(path, threads)
        self.path = Path(path)
        self.names = [o.name for o in self.session.get_outputs()]

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        arr = np.ascontiguousarray(np.asarray(x), dtype=np.float32)
        return tuple(np.asarray(o, dtype=np.float32) for o in self.session.run(self.names, {"x": arr}))


def check_small(graph: SmallGraph, module: "nn.Module", input_shape: Sequence[int]) -> str:
    """'' when ``graph`` gives ``module``'s outputs (batch of 2, then 1) within ``SMALL_TOLERANCE``, else what differs."""
    import torch

    x = torch.rand(2, *[int(s) for s in input_shape[1:]], generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = module.eval()(x)
    want = want if isinstance(want, tuple) else (want,)
    for batch in (x, x[:1]):
        got = graph(batch.numpy())
        if len(got) != len(want):
            return f"{len(got)} outputs, not {len(want)}"
        for g, w in zip(got, want):
            w = w[: len(batch)].float().numpy()
            if tuple(g.shape) != tuple(w.shape) or not bool(np.isfinite(g).all()):
                return f"output shape {tuple(g.shape)} or values invalid"
            err = float(np.abs(g - w).max()) / max(1.0, float(np.abs(w).max()))
            if err > SMALL_TOLERANCE:
                return f"|d output| {err:.2e} (limit {SMALL_TOLERANCE:g})"
    return ""


def small_graph(digest: str, name: str, input_shape: Sequence[int], outputs: Sequence[str],
                build: Callable[[], "nn.Module"], folder: Path | None = None) -> SmallGraph:
    """The checked ONNX Runtime session of a small network, keyed by its file's ``digest`` and ``name``
    (one file may hold several networks), exported from ``build()`` when not cached.  ``build`` is called
    only then: a cached graph never builds the PyTorch network.  :class:`EngineUnavailable` on any failure."""
    onnxruntime_module()
    folder = Path(folder) if folder is not None else engine_cache_dir()
    stem = f"{cache_key(digest)}-{cache_key(name)}"
    facts = {"format": SMALL_FORMAT, "model": stem, "input": [int(s) for s in input_shape[1:]],
             "outputs": list(outputs), "opset": OPSET, "torch": torch_version()}
    built: dict[str, "nn.Module"] = {}

    def make() -> bytes:
        built["module"] = build()
        return export_graph(built["module"], input_shape, outputs)

    path, fresh = cached_graph(folder, stem, facts, make, what=f"exported to ONNX ({name})")
    graph = SmallGraph(path)
    if fresh:
        problem = check_small(graph, built["module"], input_shape)
        if problem:
            drop_entry(path)
            raise EngineUnavailable(f"ONNX Runtime does not agree with PyTorch on the {name} ({problem})")
    return graph


__all__ = ["CACHE_ENV", "APP_CACHE", "EngineUnavailable", "engine_cache_dir", "onnxruntime_module", "cache_key",
           "cached_graph", "usable_entry", "cpu_session", "drop_entry", "torch_version", "SmallGraph", "small_graph", "export_graph", "check_small", "OPSET", "SMALL_TOLERANCE"]
