"""Classify chest X-rays with a loaded model: one image, a list of arrays, or a
batch of files (the app's folder mode and ``xray-classify``).

``Classifier`` wraps a :class:`training.model.modelfile.LoadedModel`:

* ``predict_arrays(images)`` - grey ``(H, W)`` float arrays in [0, 1] -> P(COVID)
  per image (``numpy.float32``), batched, under ``torch.inference_mode``.
* ``predict_image(loaded_image)`` -> :class:`Prediction`.
* ``classify_paths(paths, cancel=None)`` -> one :class:`Prediction` per path, in
  input order.  Files are decoded and preprocessed in a small thread pool (PIL,
  pydicom's decoders and torch's resize release the GIL) while the model runs
  on the previous batch.  A file that is refused (``ImageRefused``) or breaks
  the decoder yields a Prediction with status ``'refused'`` / ``'error'`` and a
  one-line reason; it never stops the batch.  ``cancel`` (a callable returning
  True, or a ``threading.Event``) is checked between batches; when it fires
  the iterator simply ends early.

Speed levers (measured in ``bench/bench_classify.py``, see docs/INFERENCE.md):
batching, ``channels_last`` memory format for the convolutional models, decode
threads overlapping inference, and mixed precision only where
``training.common.autocast`` chooses it (CUDA fp16; CPU bf16 only on CPUs
with native bf16 instructions - on AVX2-only CPUs bf16 is emulated and slower).

Engine: on the CPU in fp32, classification runs on ONNX Runtime when it is
installed (``engine='auto'``; ``training.inference.engine_onnx``: exported once per model
file, cached, checked against PyTorch), PyTorch otherwise; any failure of it
falls back to PyTorch with a logged note.  Grad-CAM comes from the same pass:
the engine also returns the last convolutional block's activations and only the
small head's gradient is computed in torch (``training.inference.explain``;
``predict_full(batch, with_cam=True)``).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from training.common.device import pick_device
from training.common.errors import ImageRefused, XrayError
from training.common.formatting import clause, exception_text
from training.imaging.loading import load_image
from training.imaging.resize import preprocess
from training.model.lung_input import Box, InputSpec, model_view, place_heatmap
from training.model.modelfile import LoadedModel, ModelInfo, load_model

if TYPE_CHECKING:  # pragma: no cover
    from training.gate.gate import ChestGate
    from training.imaging.loading import LoadedImage

from training.inference.result import (
    FORCED_NOTE,
    GATE_CODE,
    HEADER_FORCED_NOTE,
    PNEUMONIA,
    Prediction,
    lung_involvement,
    validate_threshold,
)

log = logging.getLogger(__name__)


@dataclass
class _Decoded:
    """A file after the worker thread: preprocessed tensor or a failure."""

    path: Path
    status: str
    tensor: torch.Tensor | None = None
    meta: Any = None
    warnings: list[str] = field(default_factory=list)
    reason: str = ""
    code: str = ""
    preview: np.ndarray | None = None
    gate: Any = None  # GateResult when the gate ran
    box: Box | None = None  # the model's input region


def _preview(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """A decimated copy whose longer side is about ``max_side`` (aspect kept)."""
    step = max(1, int(max(pixels.shape) // max_side))
    return np.ascontiguousarray(pixels[::step, ::step])


def _default_decode_workers() -> int:
    n = os.cpu_count() or 1
    return max(1, min(4, n // 2))


def _is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


class Classifier:
    """P(COVID) for grey chest X-rays with one loaded model.

    ``device``: ``'auto'`` (CUDA, then MPS, then CPU), ``'cpu'``, ``'cuda'``,
    ``'mps'`` or a ``torch.device``.  ``batch_size``: images per forward pass.
    ``mixed_precision``: ``None`` follows ``training.common.autocast.choose_precision`` (fp16
    on CUDA, bf16 only on CPUs with native bf16), ``False`` forces fp32, ``True``
    forces bf16 on CPU / fp16 on CUDA.  ``channels_last``: ``None`` = on for
    the convolutional models.  ``decode_workers``: threads decoding files in
    ``classify_paths``.  ``engine``: ``'auto'`` (ONNX Runtime, fp32, on the CPU
    when it is installed and the model came from a file, unless
    ``mixed_precision=True``; PyTorch otherwise), ``'torch'``, or ``'onnx'``
    (the same, also for in-memory models).  Whenever the ONNX engine cannot
    run, PyTorch classifies (with ``mixed_precision`` as set).  The fast engine is built on the
    first classification, in the calling (worker) thread; ``engine_note`` says
    afterwards what runs and why.

    The wrapped model is moved to ``device`` and put in eval mode (in place).
    """

    def __init__(self, loaded: LoadedModel, device: str | torch.device = "auto", batch_size: int = 16, *,
                 mixed_precision: bool | None = None, channels_last: bool | None = None,
                 decode_workers: int | None = None, gate: "ChestGate | None" = None, engine: str = "auto"):
        from training.inference.engine_onnx import ENGINES

        if engine not in ENGINES:
            raise XrayError(f"Unknown inference engine {engine!r}. Use one of: {', '.join(ENGINES)}.", code="engine")
        self.engine = engine
        self.engine_note = ""  # set on the first classification: which engine runs, or why not the fast one
        self._fast = None
        self._fast_tried = False
        self._engine_lock = threading.Lock()
        self.loaded = loaded
        self.gate = gate
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        if int(batch_size) < 1:
            raise XrayError(f"The batch size must be at least 1, got {batch_size}.", code="batch_size")
        self.batch_size = int(batch_size)
        self.decode_workers = int(decode_workers) if decode_workers else _default_decode_workers()
        self._threshold = validate_threshold(loaded.info.threshold)
        model = loaded.model
        model.eval().to(self.device)
        if channels_last is None:
            channels_last = getattr(model, "cam_layer", None) is not None and self.device.type != "mps"
        self.channels_last = bool(channels_last)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.mixed_precision = mixed_precision
        self.model = model
        self.spec = InputSpec.from_metadata(loaded.info.preprocessing)
        self.temperature = loaded.info.temperature
        self.band = tuple(float(v) for v in loaded.info.band) if loaded.info.band else None
        self._segmenter = None
        if self.spec.needs_lungs:
            if gate is not None:
                self._segmenter = gate.segmenter
            else:
                from training.gate.segmenter import LungSegmenter, default_segmenter_path

                seg_path = default_segmenter_path()
                if seg_path is None:
                    raise XrayError("This model looks at the lungs only and needs the lung segmenter "
                                    "(lung_segmenter.safetensors), which is not installed.", code="segmenter")
                self._segmenter = LungSegmenter.from_file(seg_path)

    # ------------------------------------------------------------------ setup
    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "auto", *,
                  gate: "ChestGate | str | os.PathLike | None" = "default", **kwargs) -> "Classifier":
        """Load and verify a model file (``ModelFileError`` on a bad file).

        ``gate``: ``'default'`` = the shipped lung segmenter + chest-radiograph
        gate (none when it is not installed), a segmenter file path, a
        :class:`ChestGate`, or ``None`` for no gate."""
        dev = device if isinstance(device, torch.device) else pick_device(device)
        clf = cls(load_model(path, device=dev), device=dev, gate=load_gate(gate), **kwargs)
        clf.self_test()
        return clf

    def self_test(self) -> None:
        """Run the model once on two different synthetic images (one batch of 2
        at the model's input size) and raise ``ModelFileError`` when its output
        has the wrong shape, is not finite, or is the same for both - a model
        that cannot tell images apart (zeroed or damaged weights that passed
        the checksums, e.g. re-hashed by whoever altered them)."""
        from training.common.errors import ModelFileError

        name = Path(self.loaded.path).name if self.loaded.path else self.loaded.display_name
        batch = self._test_batch()
        try:
            with torch.inference_mode(), self._autocast():
                x = batch.to(self.device)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                out = self.model(x)
        except Exception as exc:
            raise ModelFileError(f"{name}: the model fails to run on a test image ({exception_text(exc)}); the file is "
                                 "damaged or does not match this program.", code="self_test") from None
        want = (2, len(self.info.class_names)) if self.multiclass else (2,)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelFileError(f"{name}: the model gives an output of the wrong shape ({shape} instead of one "
                                 "value per image and class); the file does not match this program.",
                                 code="self_test")
        logits = out.detach().float().cpu()
        if not bool(torch.isfinite(logits).all()):
            raise ModelFileError(f"{name}: the model gives invalid outputs (not a number) on a test image; the "
                                 "file is damaged.", code="self_test")
        if self.multiclass:  # the COVID logit against the others: the score the app shows
            logits = logits[:, self.covid_index] - torch.logsumexp(
                logits[:, [i for i in range(logits.shape[1]) if i != self.covid_index]], dim=1)
        probs = torch.sigmoid(logits)
        a, b = float(logits[0]), float(logits[1])
        if abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b)) or float(probs[0]) == float(probs[1]):
            raise ModelFileError(f"{name}: the model gives the same output (P(COVID) {float(probs[0]):.4g}) for two "
                                 "very different test images, so it cannot tell images apart; the file is damaged "
                                 "or the model untrained.", code="self_test")

    def warm_up(self, explain: bool = True) -> None:
        """Run the gate, the classification engine (building the ONNX Runtime
        session, see :meth:`fast_engine`) and, with ``explain``, Grad-CAM once on
        a synthetic film, so the first image a user opens is not the slow one.
        Meant for the loading worker; results are thrown away.  Measured by
        bench/bench_gui_latency.py."""
        s = max(64, self.input_size)
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
        film = np.clip(0.6 + 0.3 * yy - 0.4 * np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.02)
                       - 0.4 * np.exp(-((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / 0.02), 0.0, 1.0).astype(np.float32)
        if self.gate is not None:
            self.gate.check(film, 0.0)
        self.predict_arrays([film])
        if explain:
            from training.inference.explain import gradcam

            gradcam(self, film)

    def _test_batch(self) -> torch.Tensor:
        """Two very different synthetic inputs at the model's size (self-test, engine check)."""
        s = self.input_size
        ramp = np.linspace(0.0, 1.0, s, dtype=np.float32)
        first = np.outer(ramp, np.ones(s, dtype=np.float32))  # dark top, bright bottom
        second = np.random.default_rng(13).random((s, s), dtype=np.float32)  # noise
        return torch.stack([preprocess(first, s), preprocess(second, s)])

    @property
    def info(self) -> ModelInfo:
        return self.loaded.info

    @property
    def input_size(self) -> int:
        return int(self.info.input_size)

    @property
    def threshold(self) -> float:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._threshold = validate_threshold(value)

    @property
    def positive_class(self) -> str:
        return self.info.positive_class

    @property
    def multiclass(self) -> bool:
        """Three classes (model v2): softmax, P for each class, "Other pneumonia" as a verdict."""
        return self.info.multiclass

    @property
    def has_lesion_map(self) -> bool:
        return bool(self.info.lesion_head)

    @property
    def covid_index(self) -> int:
        return self.info.class_names.index(self.info.positive_class)

    @property
    def negative_class(self) -> str:
        others = [c for c in self.info.class_names if c != self.info.positive_class]
        return others[0] if others else f"not {self.info.positive_class}"

    def label_for(self, p: float, probs: dict | None = None) -> str:
        """COVID at or above the threshold; below it, for a three-class model,
        "Pneumonia" when P(Pneumonia) / (P(Pneumonia) + P(Normal)) reaches the
        model's pneumonia cut, else Normal."""
        if p >= self._threshold:
            return self.positive_class
        if self.multiclass and probs and PNEUMONIA in probs and "Normal" in probs:
            pn, nm = float(probs[PNEUMONIA]), float(probs["Normal"])
            share = pn / (pn + nm) if pn + nm > 0 else 0.0
            return PNEUMONIA if share >= float(self.info.pneumonia_threshold) else "Normal"
        return self.negative_class

    def relabel(self, pred: Prediction) -> bool:
        """Apply this classifier's current threshold to a result it computed
        (no model run); False when there is nothing to relabel."""
        if pred is None or pred.status != "ok" or pred.p_covid is None:
            return False
        pred.label = self.label_for(pred.p_covid, pred.probs)
        pred.threshold = self._threshold
        return True

    @property
    def version_text(self) -> str:
        return f"{self.info.label} v{self.info.version}"

    def model_input(self, pixels: np.ndarray, lung_mask: np.ndarray | None = None) -> tuple[torch.Tensor, Box]:
        """Loader pixels -> the model's input ``(3, S, S)`` and the region it shows.

        The one image -> tensor path of prediction and Grad-CAM: the model
        file's input spec (lung crop, intensity normalisation; see
        ``training.model.lung_input``), then the model's resize.  ``lung_mask`` is the
        gate's segmentation; without it a lung-region model segments here."""
        if self.spec.needs_lungs and lung_mask is None:
            lung_mask = self._segmenter.segment(pixels).mask
        view, box = model_view(pixels, self.spec, lung_mask)
        return preprocess(view, self.input_size), box

    def _autocast(self):
        from training.common.autocast import autocast, mixed_precision_for

        return autocast(mixed_precision_for(self.device, self.mixed_precision), self.device)

    # ----------------------------------------------------------------- engine
    @property
    def active_engine(self) -> str:
        """``'onnx'`` once the fast engine runs, else ``'torch'`` (before the first classification too)."""
        return "onnx" if self._fast is not None else "torch"

    def _fast_skip_reason(self) -> str:
        """Why the fast engine is not even tried ('' = try it)."""
        if self.engine == "torch":
            return "PyTorch (chosen)"
        if self.device.type != "cpu":
            return f"PyTorch on {self.device.type} (ONNX Runtime is used on the CPU only)"
        if self.mixed_precision:
            return "PyTorch (mixed precision was asked for; the ONNX engine is fp32)"
        if self.engine == "auto" and self.loaded.path is None:
            return "PyTorch (the model is not from a file)"
        return ""

    def fast_engine(self):
        """The ONNX Runtime engine when chosen and working, else None.  Built
        once, on the first call, in the calling thread (a worker in the app)."""
        if self._fast_tried:
            return self._fast
        with self._engine_lock:
            if not self._fast_tried:
                self._fast = self._build_fast_engine()
                self._fast_tried = True
        return self._fast

    def _build_fast_engine(self):
        from training.inference.engine_onnx import EngineUnavailable, prepare_engine
        from training.model.audit import model_stamp

        skip = self._fast_skip_reason()
        if skip:
            self.engine_note = skip
            return None
        try:
            engine = prepare_engine(self.model, model_stamp(self.loaded).sha256, self.input_size, self._test_batch(),
                                    self.temperature)
        except EngineUnavailable as exc:
            note = str(exc)
        except Exception as exc:  # whatever goes wrong, classification goes on with PyTorch
            note = exception_text(exc)
        else:
            self.engine_note = f"ONNX Runtime {engine.version} ({engine.threads} thread(s), {engine.path.name})"
            log.info("%s: classifying with %s", self.version_text, self.engine_note)
            return engine
        self._fast_off(note)
        return None

    def _fast_off(self, why: str) -> None:
        self._fast = None
        self.engine_note = f"PyTorch (the ONNX engine is off: {why})"
        log.warning("%s: %s", self.version_text, self.engine_note)

    def _torch_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        with self._autocast():
            x = x.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if self.has_lesion_map:
                logits, lesion = self.model.forward_with_lesion(x)
                return logits.float(), lesion.float()
            return self.model(x).float(), None

    def _outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(class logits, lesion logits or None) from ONE forward pass."""
        fast = self.fast_engine()
        if fast is not None:
            try:
                return fast.outputs(x)
            except Exception as exc:  # a session error: this batch and the rest run on PyTorch
                self._fast_off(f"it failed on a batch: {exception_text(exc)}")
        return self._torch_outputs(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._outputs(x)[0]

    # -------------------------------------------------------------- inference
    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities ``(N, C)`` in the order of the model's class names."""
        z = logits.float() / self.temperature
        if self.multiclass:
            return torch.softmax(z, dim=1)
        p = torch.sigmoid(z)
        probs = torch.stack([1.0 - p, p], dim=1)  # [negative, positive] for class_names [Normal, COVID]
        return probs if self.covid_index == 1 else probs.flip(1)

    def predict_full(self, batch: torch.Tensor, *, with_cam: bool = False):
        """A preprocessed ``(N, 3, S, S)`` batch -> (calibrated probabilities ``(N, C)`` float32, lesion
        probability maps ``(N, h, w)`` float32 or None), from one forward pass per chunk.

        ``with_cam``: a third item, the heatmaps ``(N, S, S)`` float32 in [0, 1] at the model's input size
        (``training.inference.explain.gradcam_maps``), Grad-CAM from the same pass for the convolutional models; None
        when the explanation failed (logged; the classification stands)."""
        n_cls = len(self.info.class_names)
        if batch.shape[0] == 0:
            empty = (np.empty((0, n_cls), dtype=np.float32), None)
            return (*empty, np.empty((0, *batch.shape[-2:]), dtype=np.float32)) if with_cam else empty
        probs, lesions, cams = [], [], []
        self.fast_engine()  # built here on the first call, outside inference mode (the export traces the model)
        with torch.inference_mode():
            for start in range(0, batch.shape[0], self.batch_size):
                chunk = batch[start:start + self.batch_size]
                if with_cam:
                    from training.inference.explain import pass_with_cams

                    logits, lesion, cam = pass_with_cams(self, chunk)
                    cams.append(cam)
                else:
                    logits, lesion = self._outputs(chunk)
                probs.append(self._probabilities(logits).cpu())
                if lesion is not None:
                    lesions.append(torch.sigmoid(lesion.float())[:, 0].cpu())
        out = (torch.cat(probs).numpy().astype(np.float32, copy=False),
               torch.cat(lesions).numpy().astype(np.float32, copy=False) if lesions else None)
        if not with_cam:
            return out
        return (*out, None if any(c is None for c in cams) else np.concatenate(cams))

    def predict_batch(self, batch: torch.Tensor) -> np.ndarray:
        """A preprocessed ``(N, 3, S, S)`` batch -> P(COVID) as float32 numpy."""
        probs, _ = self.predict_full(batch)
        return np.ascontiguousarray(probs[:, self.covid_index], dtype=np.float32)

    def predict_arrays(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Grey ``(H, W)`` images in [0, 1] -> P(COVID) per image (float32)."""
        images = list(images)
        if not images:
            return np.empty(0, dtype=np.float32)
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            batch = torch.stack([self.model_input(im)[0] for im in chunk])
            out.append(self.predict_batch(batch))
        return np.concatenate(out)

    def _ok(self, path, p, meta, warnings, lesion: np.ndarray | None = None) -> Prediction:
        """The result for one classified image: ``p`` is P(COVID) or the row of calibrated class probabilities."""
        row = np.atleast_1d(np.asarray(p, dtype=np.float64))
        if row.size > 1:
            probs = {c: float(v) for c, v in zip(self.info.class_names, row)}
            p = probs[self.positive_class]
        else:
            p = float(row[0])
            probs = {self.positive_class: p, self.negative_class: 1.0 - p}
        if not all(np.isfinite(v) for v in probs.values()):  # damaged weights or an overflow: never a label
            return Prediction(path=None if path is None else Path(path), status="error", threshold=self._threshold,
                              reason="The model produced an invalid output (not a number); the model file may be "
                                     "damaged.", warnings=list(warnings or []), meta=meta, code="error")
        pred = Prediction(path=None if path is None else Path(path), status="ok", label=self.label_for(p, probs),
                          p_covid=p, threshold=self._threshold, warnings=list(warnings or []), meta=meta,
                          band=self.band, model_version=self.version_text, probs=probs)
        if lesion is not None:
            pred.lesion_u8 = np.clip(np.rint(np.asarray(lesion, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
        overridden = getattr(meta, "header_overridden", ())
        if overridden:  # a header refusal overridden: classified, but never a valid verdict
            pred.valid = False
            repeats = {f"{r} (header check overridden)." for r in overridden}  # the loader's notes, said once
            pred.warnings = [w for w in pred.warnings if w not in repeats]
            pred.warnings.insert(0, f"{clause(HEADER_FORCED_NOTE)} ({'; '.join(overridden)}).")
        return pred

    def predict_image(self, image: "LoadedImage", *, enforce_gate: bool = True) -> Prediction:
        """Classify one already-loaded image, through the gate when there is one.

        A gate refusal returns a ``'refused'`` Prediction (code ``GATE_CODE``);
        ``enforce_gate=False`` ("Classify anyway") classifies it all the same,
        with ``valid=False``.  An inverted image is classified inverted back
        (``inverted=True``): a viewer shows ``1 - pixels`` then."""
        meta = getattr(image, "meta", None)
        path = getattr(meta, "path", None)
        warnings = list(getattr(image, "warnings", []))
        pixels = image.pixels
        gres = None
        if self.gate is not None:
            gres, pixels = self.gate.check(pixels, float(getattr(meta, "colour", 0.0) or 0.0))
            pred = self._gated(path, gres, meta, warnings, enforce_gate)
            if pred is not None:
                return pred
        tensor, box = self.model_input(pixels, _mask_of(gres))
        probs, lesions = self.predict_full(tensor[None])
        pred = self._ok(path, probs[0], meta, warnings, None if lesions is None else lesions[0])
        pred.input_box = box
        if gres is not None:
            self._apply_gate(pred, gres)
        pred.lung_involvement = lung_involvement(pred)
        return pred

    def _gated(self, path, gres, meta, warnings, enforce: bool) -> "Prediction | None":
        """The refused Prediction for a gate refusal, or None to go on classifying."""
        if not gres.refused or not enforce:
            return None
        pred = Prediction(path=None if path is None else Path(path), status="refused", threshold=self._threshold,
                          reason=gres.refusal_text(), warnings=warnings + gres.warning_texts(), meta=meta,
                          code=GATE_CODE, suitability=gres.decision, inverted=gres.inverted,
                          gate_scores=dict(gres.scores))
        pred.lung_mask = _mask_of(gres)
        return pred

    @staticmethod
    def _apply_gate(pred: Prediction, gres) -> None:
        pred.suitability = gres.decision
        pred.inverted = gres.inverted
        pred.gate_scores = dict(gres.scores)
        pred.lung_mask = _mask_of(gres)  # kept: Grad-CAM, the lung outline and DICOM export need not segment again
        pred.warnings.extend(gres.warning_texts())
        if gres.refused:
            pred.valid = False
            pred.warnings.insert(0, f"{clause(FORCED_NOTE)} ({clause(gres.refusal_text())}).")

    # ----------------------------------------------------------- file batches
    def _decode(self, path: Path, check_header: bool, preview: int = 0, enforce_gate: bool = True) -> _Decoded:
        try:
            img = load_image(path, check_header=check_header)
        except ImageRefused as exc:
            return _Decoded(path, "refused", reason=exc.reason, code=exc.code)
        except Exception as exc:  # a decoder bug, MemoryError, ... never stops the batch
            return _Decoded(path, "error", reason=exception_text(exc), code="error")
        pixels, gres = img.pixels, None
        try:
            if self.gate is not None:
                gres, pixels = self.gate.check(pixels, float(img.meta.colour or 0.0))
                if gres.refused and enforce_gate:
                    return _Decoded(path, "refused", meta=img.meta, warnings=list(img.warnings), gate=gres,
                                    preview=_preview(pixels, preview) if preview else None)
            tensor, box = self.model_input(pixels, _mask_of(gres))
        except Exception as exc:
            return _Decoded(path, "error", reason=exception_text(exc), code="error", meta=img.meta,
                            warnings=list(img.warnings))
        return _Decoded(path, "ok", tensor=tensor, meta=img.meta, warnings=list(img.warnings), gate=gres,
                        preview=_preview(pixels, preview) if preview else None, box=box)

    def classify_paths(self, paths: Iterable[str | os.PathLike], cancel: Callable[[], bool] | Any = None,
                       check_header: bool = True, preview: int = 0, *, enforce_gate: bool = True,
                       explain: bool = False) -> Iterator[Prediction]:
        """One :class:`Prediction` per path, in input order (fewer if cancelled).

        ``preview > 0`` keeps a decimated copy of each classified image (longer
        side about ``preview`` px) in ``Prediction.preview``, so a front end can
        show thumbnails without decoding the file again.  ``explain`` computes
        Grad-CAM for every classified image from the classification pass itself
        (``predict_full(with_cam=True)``) to fill ``heat_in_lungs``.  ``enforce_gate=False`` classifies gate-refused
        images anyway (``valid=False``).  Decoding runs ``decode_workers`` threads ahead (at most two batches in
        flight, so memory stays bounded for any number of files)."""
        it = iter(paths)
        window = 2 * self.batch_size
        pending: collections.deque[tuple[Path, cf.Future]] = collections.deque()
        pool = cf.ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="xray-decode")
        exhausted = False

        def fill() -> None:
            nonlocal exhausted
            while not exhausted and len(pending) < window:
                try:
                    raw = next(it)
                except StopIteration:
                    exhausted = True
                    return
                p = Path(raw)
                pending.append((p, pool.submit(self._decode, p, check_header, preview, enforce_gate)))

        try:
            fill()
            while pending:
                if _is_cancelled(cancel):
                    return
                chunk = [pending.popleft() for _ in range(min(self.batch_size, len(pending)))]
                fill()  # the next batch decodes while this one runs through the model
                decoded = [fut.result() for _, fut in chunk]
                ok = [d for d in decoded if d.status == "ok"]
                probs: dict[int, np.ndarray] = {}
                lesions: dict[int, np.ndarray] = {}
                shares: dict[int, float | None] = {}
                failure = ""
                cams = None
                if ok:
                    try:
                        batch = torch.stack([d.tensor for d in ok])
                        if explain and self.gate is not None:  # shares need lung masks; the CAM from this pass
                            values, maps, cams = self.predict_full(batch, with_cam=True)
                        else:
                            values, maps = self.predict_full(batch)
                        probs = {id(d): v for d, v in zip(ok, values)}
                        if maps is not None:
                            lesions = {id(d): m for d, m in zip(ok, maps)}
                    except Exception as exc:  # e.g. out of memory: report, keep going
                        failure = exception_text(exc)
                    if cams is not None and not failure:
                        shares = self._lung_shares(ok, batch, cams)
                for d in decoded:
                    if d.status == "ok" and not failure:
                        pred = self._ok(d.path, probs[id(d)], d.meta, d.warnings, lesions.get(id(d)))
                        pred.preview = d.preview
                        pred.input_box = d.box
                        if d.gate is not None:
                            self._apply_gate(pred, d.gate)
                        pred.lung_involvement = lung_involvement(pred)
                        if id(d) in shares:
                            pred.set_heat_share(shares[id(d)])
                        yield pred
                    elif d.status == "refused" and d.gate is not None:
                        pred = self._gated(d.path, d.gate, d.meta, d.warnings, True)
                        pred.preview = d.preview
                        yield pred
                    elif d.status == "ok":
                        yield Prediction(path=d.path, status="error", threshold=self._threshold,
                                         reason=f"the model failed on this batch: {failure}",
                                         warnings=d.warnings, meta=d.meta, code="error", preview=d.preview)
                    else:
                        yield Prediction(path=d.path, status=d.status, threshold=self._threshold,
                                         reason=d.reason, warnings=d.warnings, meta=d.meta, code=d.code)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _lung_shares(self, decoded: list[_Decoded], batch: torch.Tensor,
                     maps: np.ndarray | None = None) -> dict[int, float | None]:
        """Grad-CAM share inside the lungs for each decoded image with a lung mask.  ``maps``: the
        heatmaps at the model's input (``predict_full(with_cam=True)``); None computes them."""
        from training.gate.notes import heatmap_in_lungs
        from training.inference.explain import gradcam_maps

        out: dict[int, float | None] = {}
        try:
            if maps is None:
                maps = gradcam_maps(self, batch)
        except Exception:  # an explanation failure never stops the batch
            return out
        for d, heat in zip(decoded, maps):
            if d.gate is None or d.gate.segmentation is None:
                continue
            seg = d.gate.segmentation
            placed = place_heatmap(heat, d.box or Box(), seg.mask.shape)  # the model's view -> the mask's frame
            out[id(d)] = heatmap_in_lungs(placed, seg.mask)
        return out


def _mask_of(gres) -> np.ndarray | None:
    """The gate's lung mask (bool, ``SEG_SIZE`` square), or None."""
    return gres.segmentation.mask if gres is not None and gres.segmentation is not None else None


def load_gate(gate) -> "ChestGate | None":
    """``'default'`` -> the shipped gate or None; a path -> that segmenter's gate."""
    from training.gate.gate import ChestGate
    from training.gate.segmenter import default_segmenter_path

    if gate is None or isinstance(gate, ChestGate):
        return gate
    if isinstance(gate, str) and gate == "default":
        path = default_segmenter_path()
        return ChestGate.from_file(path) if path is not None else None
    return ChestGate.from_file(gate)


def lung_share(pred: Prediction, heat: np.ndarray) -> float | None:
    """Share of an image-sized heatmap inside ``pred``'s lung mask."""
    from training.gate.notes import heatmap_in_lungs

    mask = pred.lung_mask
    if mask is None:
        return None
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    m = torch.nn.functional.interpolate(t, size=tuple(heat.shape), mode="bilinear", align_corners=False)[0, 0] >= 0.5
    return heatmap_in_lungs(heat, m.numpy())


__all__ = ["Classifier", "load_gate", "lung_share"]
