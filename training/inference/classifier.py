"""Classify chest X-rays with a loaded model: one image, a list of arrays, or a
batch of files (the app's folder mode and ``xray-classify``).

``Classifier`` wraps a :class:`training.model.modelfile.LoadedModel`:

* ``predict_arrays(images)`` - grey ``(H, W)`` float arrays in [0, 1] -> P(COVID)
  per image (``numpy.float32``), batched (NumPy batches in, NumPy out, whatever the engine).
* ``predict_image(loaded_image)`` -> :class:`Prediction`.
* ``classify_paths(paths, cancel=None)`` -> one :class:`Prediction` per path, in
  input order.  Files are decoded and preprocessed in a small thread pool (PIL,
  pydicom's decoders, the NumPy resize and ONNX Runtime release the GIL) while the model runs
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

Start-up without torch: ``from_file`` on the CPU in fp32 (``device`` ``'cpu'``, or ``'auto'`` on a
computer without an NVIDIA driver or Apple GPU: ``training.common.device.cpu_without_asking_torch``)
first tries the model file's cached ONNX Runtime engine (``engine_onnx.open_cached``: keyed by the
file's SHA-256 and checked against the PyTorch outputs kept when it was built).  When it is there,
the PyTorch model is not loaded at all - the self-test runs on the engine, Grad-CAM's head gradient
comes from the file's head weights in NumPy (``training.inference.head_grad``) - and ``model`` loads
it only when something needs PyTorch (SmoothGrad, the package Grad-CAM, an engine failure).  A run
after the first thus never imports torch (``tests/test_torch_free_start.py``).

Engine: on the CPU in fp32, classification runs on ONNX Runtime when it is
installed (``engine='auto'``; ``training.inference.engine_onnx``: exported once per model
file, cached, checked against PyTorch), PyTorch otherwise; any failure of it
falls back to PyTorch with a logged note.  Grad-CAM comes from the same pass:
the engine also returns the last convolutional block's activations and only the
small head's gradient is computed in torch (``training.inference.explain``;
``predict_full(batch, with_cam=True)``).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from training.common.cpu import single_threaded_blas
from training.common.device import cpu_without_asking_torch, pick_device
from training.common.errors import XrayError
from training.common.formatting import clause
from training.imaging.resize import bilinear
from training.model.lung_input import Box, InputSpec, model_input
from training.model.modelfile import LoadedModel, ModelInfo, load_model

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from training.gate.gate import ChestGate
    from training.imaging.loading import LoadedImage

from training.inference import gate_policy
from training.inference.batch import BatchMixin, default_decode_workers, kept_heatmap
from training.inference.engine import EngineMixin
from training.inference.model_source import ModelSourceMixin
from training.inference.result import (
    HEADER_FORCED_NOTE,
    PNEUMONIA,
    Prediction,
    lung_involvement,
    validate_threshold,
)

log = logging.getLogger(__name__)


class Classifier(ModelSourceMixin, EngineMixin, BatchMixin):
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
    run, PyTorch classifies (with ``mixed_precision`` as set).  ``precision``: ``'fp32'`` or
    ``'fast'`` (ONNX Runtime int8 where the CPU has VNNI / AMX / AVX-512 BF16 and the model file
    records its fast mode - with a warning when that record's validation missed -, fp32 otherwise:
    ``training.inference.engine_fast``; the validation tool's and the benchmark's ``'int8'`` runs it
    on any CPU).  The fast engine is built on the
    first classification, in the calling (worker) thread; ``engine_note`` says
    afterwards what runs and why.

    The wrapped model is moved to ``device`` and put in eval mode (in place).
    """

    def __init__(self, loaded: LoadedModel, device: "str | torch.device" = "auto", batch_size: int = 16, *,
                 mixed_precision: bool | None = None, channels_last: bool | None = None,
                 decode_workers: int | None = None, gate: "ChestGate | None" = None, engine: str = "auto",
                 precision: str = "fp32"):
        from training.inference.engine_fast import PRECISIONS
        from training.inference.engine_onnx import ENGINES

        if engine not in ENGINES:
            raise XrayError(f"Unknown inference engine {engine!r}. Use one of: {', '.join(ENGINES)}.", code="engine")
        if precision not in PRECISIONS + ("int8",):
            raise XrayError(f"Unknown precision {precision!r}. Use one of: {', '.join(PRECISIONS)}.", code="precision")
        single_threaded_blas()  # NumPy's products run in the decode threads beside the engine's own threads
        self.engine = engine
        self.precision = precision
        self.engine_note = ""  # set on the first classification: which engine runs, or why not the fast one
        self._fast = None
        self._fast_tried = False
        self._engine_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._head_gradient = None
        self.loaded = loaded
        self.gate = gate
        self._device = device if not isinstance(device, str) else None
        self._device_choice = device if isinstance(device, str) else None
        if int(batch_size) < 1:
            raise XrayError(f"The batch size must be at least 1, got {batch_size}.", code="batch_size")
        self.batch_size = int(batch_size)
        self.decode_workers = int(decode_workers) if decode_workers else default_decode_workers()
        self._threshold = validate_threshold(loaded.info.threshold)
        self._channels_last_choice = channels_last
        self.channels_last = False
        self.mixed_precision = mixed_precision
        self._model = None
        if loaded.model is not None:
            self._adopt(loaded.model)
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
    def from_file(cls, path: str | os.PathLike, device: "str | torch.device" = "auto", *,
                  gate: "ChestGate | str | os.PathLike | None" = "default", **kwargs) -> "Classifier":
        """Load and verify a model file (``ModelFileError`` on a bad file).

        ``gate``: ``'default'`` = the shipped lung segmenter + chest-radiograph
        gate (none when it is not installed), a segmenter file path, a
        :class:`ChestGate`, or ``None`` for no gate.  On the CPU in fp32 a model whose engine is
        cached starts without torch (module docstring)."""
        if (isinstance(device, str) and cpu_without_asking_torch(device) and kwargs.get("engine", "auto") != "torch"
                and kwargs.get("precision", "fp32") == "fp32" and not kwargs.get("mixed_precision")):
            clf = cls._from_cached_engine(path, gate, **kwargs)
            if clf is not None:
                return clf
        dev = pick_device(device) if isinstance(device, str) else device
        clf = cls(load_model(path, device=dev), device=dev, gate=load_gate(gate), **kwargs)
        clf.self_test()
        return clf

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
        """``name vVERSION`` of the loaded model (``LoadedModel.display_name``)."""
        return self.loaded.display_name

    def model_input(self, pixels: np.ndarray, lung_mask: np.ndarray | None = None) -> tuple[np.ndarray, Box]:
        """Loader pixels -> the model's input ``(3, S, S)`` and the region it shows
        (:func:`training.model.lung_input.model_input`, the one path of prediction,
        batches and Grad-CAM).  ``lung_mask`` is the gate's segmentation; without it
        a lung-region model segments here."""
        if self.spec.needs_lungs and lung_mask is None:
            lung_mask = self._segmenter.segment(pixels).mask
        return model_input(pixels, self.spec, self.input_size, lung_mask)

    def predict_arrays(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Grey ``(H, W)`` images in [0, 1] -> P(COVID) per image (float32)."""
        images = list(images)
        if not images:
            return np.empty(0, dtype=np.float32)
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            batch = np.stack([self.model_input(im)[0] for im in chunk])
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

    def predict_image(self, image: "LoadedImage", *, enforce_gate: bool = True,
                      keep_heatmap: bool = False) -> Prediction:
        """Classify one already-loaded image, through the gate when there is one
        (its policy: ``training.inference.gate_policy``).

        A gate refusal returns a ``'refused'`` Prediction (code ``GATE_CODE``);
        ``enforce_gate=False`` ("Classify anyway") classifies it all the same,
        with ``valid=False``.  An inverted image is classified inverted back
        (``inverted=True``): a viewer shows ``1 - pixels`` then.  ``keep_heatmap``: Grad-CAM from the
        same pass, kept in ``Prediction.heat_input`` (``explain.heatmap_of`` places it; the app's
        heatmap needs no second pass)."""
        meta = getattr(image, "meta", None)
        path = getattr(meta, "path", None)
        warnings = list(getattr(image, "warnings", []))
        pixels = image.pixels
        gres = None
        if self.gate is not None:
            gres, pixels = gate_policy.screen(self.gate, pixels, meta)
            if gate_policy.stops(gres, enforce_gate):
                return gate_policy.refused_prediction(path, gres, meta, warnings, self._threshold)
        tensor, box = self.model_input(pixels, gate_policy.mask_of(gres))
        if keep_heatmap:
            probs, lesions, cams = self.predict_full(tensor[None], with_cam=True)
        else:
            (probs, lesions), cams = self.predict_full(tensor[None]), None
        pred = self._ok(path, probs[0], meta, warnings, None if lesions is None else lesions[0])
        pred.input_box = box
        if cams is not None and pred.ok:
            pred.heat_input = kept_heatmap(self, cams[0])
        if gres is not None:
            gate_policy.apply_gate(pred, gres)
        pred.lung_involvement = lung_involvement(pred)
        return pred


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
    return heatmap_in_lungs(heat, bilinear(mask.astype(np.float32), heat.shape) >= 0.5)


__all__ = ["Classifier", "load_gate", "lung_share"]
