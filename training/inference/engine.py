"""The model pass of a :class:`~training.inference.classifier.Classifier`: which engine runs
the network (ONNX Runtime on the CPU in fp32 when it works, PyTorch otherwise, with the one
autocast rule), the self-test of a freshly loaded model, and one forward pass from a
preprocessed batch to calibrated probabilities, the lesion map and (optionally) Grad-CAM.

A mixin: it works on the classifier's ``model``, ``device``, ``loaded``, ``info``,
``batch_size``, ``temperature``, ``channels_last``, ``mixed_precision`` and ``engine``.

Batches are NumPy ``(N, 3, S, S)`` float32 arrays and every output is NumPy: ONNX Runtime takes and
gives NumPy, and PyTorch converts at its boundary (:meth:`EngineMixin._torch_outputs`), so a classifier
whose engine came from the cache (``Classifier.from_file``'s torch-free start-up) never imports torch.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.common.formatting import exception_text
from training.model.calibration import sigmoid, softmax

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger("training.inference.classifier")


class _Captured:
    value: "torch.Tensor | None" = None


@contextlib.contextmanager
def capture_features(model: "torch.nn.Module"):
    """Catch ``model.cam_layer``'s output of a forward pass run in THIS thread (the hook ignores other
    threads' passes on the same model): ``with capture_features(m) as got: m(x)`` -> ``got.value``."""
    got = _Captured()
    me = threading.get_ident()

    def hook(_module, _inputs, output):
        if threading.get_ident() == me:
            got.value = output

    handle = model.cam_layer.register_forward_hook(hook)
    try:
        yield got
    finally:
        handle.remove()


class EngineMixin:
    """Engine choice, self-test and the one forward pass (see the module docstring)."""

    def self_test(self, outputs: np.ndarray | None = None) -> None:
        """Run the model once on two different synthetic images (one batch of 2
        at the model's input size, ``engine_onnx.check_batch``) and raise ``ModelFileError`` when its output
        has the wrong shape, is not finite, or is the same for both - a model
        that cannot tell images apart (zeroed or damaged weights that passed
        the checksums, e.g. re-hashed by whoever altered them).  ``outputs``: the logits of that batch
        already computed (the cached engine's check at a torch-free start-up)."""
        from training.common.errors import ModelFileError

        name = Path(self.loaded.path).name if self.loaded.path else self.loaded.display_name
        self._reference = None
        if outputs is None:
            try:
                outputs = self._self_test_pass()
            except Exception as exc:
                raise ModelFileError(f"{name}: the model fails to run on a test image ({exception_text(exc)}); the "
                                     "file is damaged or does not match this program.", code="self_test") from None
        want = (2, len(self.info.class_names)) if self.multiclass else (2,)
        if not isinstance(outputs, np.ndarray) or tuple(outputs.shape) != want:
            shape = tuple(outputs.shape) if isinstance(outputs, np.ndarray) else type(outputs).__name__
            raise ModelFileError(f"{name}: the model gives an output of the wrong shape ({shape} instead of one "
                                 "value per image and class); the file does not match this program.",
                                 code="self_test")
        logits = outputs.astype(np.float64)
        if not bool(np.isfinite(logits).all()):
            raise ModelFileError(f"{name}: the model gives invalid outputs (not a number) on a test image; the "
                                 "file is damaged.", code="self_test")
        if self.multiclass:  # the COVID logit against the others (unclipped): the score the app shows
            others = logits[:, [i for i in range(logits.shape[1]) if i != self.covid_index]]
            top = others.max(axis=1, keepdims=True)
            logits = logits[:, self.covid_index] - (top[:, 0] + np.log(np.exp(others - top).sum(axis=1)))
        probs = sigmoid(logits)
        a, b = float(logits[0]), float(logits[1])
        if abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b)) or float(probs[0]) == float(probs[1]):
            raise ModelFileError(f"{name}: the model gives the same output (P(COVID) {float(probs[0]):.4g}) for two "
                                 "very different test images, so it cannot tell images apart; the file is damaged "
                                 "or the model untrained.", code="self_test")

    def _self_test_pass(self) -> np.ndarray:
        """The PyTorch model's logits on the check batch (on the CPU in fp32 also kept as the ONNX engine
        check's reference, ``engine_onnx.reference_outputs``, so a start-up runs the PyTorch model once)."""
        import torch

        batch = self._test_batch()
        if self.device.type == "cpu" and not self.mixed_precision:
            from training.inference.engine_onnx import reference_outputs

            self._reference = reference_outputs(self.model, batch)
            return self._reference[0]
        with torch.inference_mode(), self._autocast():
            x = torch.from_numpy(batch).to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float().cpu().numpy()

    def _test_batch(self) -> np.ndarray:
        """Two very different synthetic inputs at the model's size (self-test, engine check)."""
        from training.inference.engine_onnx import check_batch

        return check_batch(self.input_size)

    def _autocast(self):
        from training.common.autocast import autocast, mixed_precision_for

        return autocast(mixed_precision_for(self.device, self.mixed_precision), self.device)

    @property
    def active_engine(self) -> str:
        """``'onnx'`` (fp32) or ``'onnx-int8'`` (the fast mode) once that engine runs, else ``'torch'``
        (before the first classification too)."""
        return getattr(self._fast, "name", "onnx") if self._fast is not None else "torch"

    def _fast_skip_reason(self) -> str:
        """Why the fast engine is not even tried ('' = try it)."""
        if self.engine == "torch" and self.precision != "fp32":
            return "PyTorch (chosen; the fast int8 mode needs ONNX Runtime)"
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
                self._reference = None  # the self-test's outputs served their one use: the engine check
        return self._fast

    def _build_fast_engine(self):
        from training.inference.engine_onnx import EngineUnavailable, prepare_engine
        from training.model.audit import model_stamp

        skip = self._fast_skip_reason()
        if skip:
            self.engine_note = skip
            return None
        fast_off = ""
        if self.precision != "fp32":
            engine, fast_off = self._int8_engine()
            if engine is not None:
                return engine
        try:
            engine = prepare_engine(self.model, model_stamp(self.loaded).sha256, self.input_size, self._test_batch(),
                                    self.temperature, reference=getattr(self, "_reference", None))
        except EngineUnavailable as exc:
            note = str(exc)
        except Exception as exc:  # whatever goes wrong, classification goes on with PyTorch
            note = exception_text(exc)
        else:
            self.engine_note = (f"ONNX Runtime {engine.version} fp32 ({engine.threads} thread(s), {engine.path.name})"
                                + (f"; fast mode off: {fast_off}" if fast_off else ""))
            log.info("%s: classifying with %s", self.version_text, self.engine_note)
            return engine
        self._fast_off(note + (f"; fast mode off: {fast_off}" if fast_off else ""))
        return None

    def _int8_engine(self):
        """(the int8 engine, '') when the fast mode can run here, else (None, why not)."""
        from training.inference import engine_fast
        from training.inference.engine_onnx import EngineUnavailable
        from training.model.audit import model_stamp

        record = getattr(self.info, "fast_mode", None) or {}
        if self.precision == "fast":  # "int8": the validation tool's and the benchmark's run, on any CPU
            ok, cpu = engine_fast.fast_cpu_support()
            if not ok:
                return None, f"{cpu}, so fp32 is kept"
        try:
            engine = engine_fast.prepare_fast_engine(
                self.model, model_stamp(self.loaded).sha256, self.input_size, self._test_batch(), record,
                len(self.info.class_names))
        except EngineUnavailable as exc:
            return None, str(exc)
        except Exception as exc:  # whatever goes wrong, classification goes on in fp32
            return None, exception_text(exc)
        warning = engine_fast.validation_warning(record) if self.precision == "fast" else ""
        self.engine_note = (f"ONNX Runtime {engine.version} int8, fast mode ({engine.threads} thread(s), "
                            f"{engine.path.name})" + (f"; WARNING: {warning}" if warning else ""))
        (log.warning if warning else log.info)("%s: classifying with %s", self.version_text, self.engine_note)
        return engine, ""

    def _fast_off(self, why: str) -> None:
        self._fast = None
        self.engine_note = f"PyTorch (the ONNX engine is off: {why})"
        log.warning("%s: %s", self.version_text, self.engine_note)

    def _torch_outputs(self, x: np.ndarray, features: bool = False) -> tuple:
        """The PyTorch model's (logits, lesion logits or None[, ``cam_layer``'s activations]) as NumPy."""
        import torch

        def out(t):
            return None if t is None else t.float().cpu().numpy()

        model = self.model
        with torch.inference_mode(), self._autocast(), \
                capture_features(model) if features else contextlib.nullcontext() as got:
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device, non_blocking=True)
            if self.channels_last:
                t = t.contiguous(memory_format=torch.channels_last)
            logits, lesion = model.forward_with_lesion(t) if self.has_lesion_map else (model(t), None)
            if not features:
                return out(logits), out(lesion)
        if got.value is None:
            raise RuntimeError("the model's cam_layer gave no output in the forward pass")
        return out(logits), out(lesion), out(got.value)

    def outputs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(class logits, lesion logits or None) from ONE forward pass of the engine."""
        fast = self.fast_engine()
        if fast is not None:
            try:
                return fast.outputs(x)
            except Exception as exc:  # a session error: this batch and the rest run on PyTorch
                self._fast_off(f"it failed on a batch: {exception_text(exc)}")
        return self._torch_outputs(x)

    def outputs_with_features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """ONE forward pass: (class logits, lesion logits or None, ``cam_layer``'s activations ``(N, C, h, w)``)
        for Grad-CAM (``training.inference.explain.cams_from_features``).  ONNX Runtime when it runs and its
        graph has the ``features`` output, PyTorch (precision, channels_last as :meth:`outputs`) otherwise."""
        fast = self.fast_engine()
        if fast is not None and getattr(fast, "has_features", False):
            try:
                return fast.outputs_with_features(x)
            except Exception as exc:  # a session error: this batch and the rest run on PyTorch (as in outputs)
                self._fast_off(f"it failed on a batch: {exception_text(exc)}")
        return self._torch_outputs(x, features=True)

    def _logits(self, x: np.ndarray) -> np.ndarray:
        return self.outputs(x)[0]

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``(N, C)`` float32 in the order of the model's class names."""
        if self.multiclass:
            return softmax(logits, self.temperature).astype(np.float32)
        p = sigmoid(np.asarray(logits, dtype=np.float64) / self.temperature).astype(np.float32)
        probs = np.stack([1.0 - p, p], axis=1)  # [negative, positive] for class_names [Normal, COVID]
        return probs if self.covid_index == 1 else probs[:, ::-1]

    def predict_full(self, batch, *, with_cam: bool = False):
        """A preprocessed ``(N, 3, S, S)`` batch -> (calibrated probabilities ``(N, C)`` float32, lesion
        probability maps ``(N, h, w)`` float32 or None), from one forward pass per chunk.

        ``with_cam``: a third item, the heatmaps ``(N, S, S)`` float32 in [0, 1] at the model's input size
        (``training.inference.explain.gradcam_maps``), Grad-CAM from the same pass for the convolutional models; None
        when the explanation failed (logged; the classification stands)."""
        batch = np.asarray(batch, dtype=np.float32)  # a CPU torch tensor converts too
        n_cls = len(self.info.class_names)
        if batch.shape[0] == 0:
            empty = (np.empty((0, n_cls), dtype=np.float32), None)
            return (*empty, np.empty((0, *batch.shape[-2:]), dtype=np.float32)) if with_cam else empty
        probs, lesions, cams = [], [], []
        self.fast_engine()  # built here on the first call, outside inference mode (the export traces the model)
        for start in range(0, batch.shape[0], self.batch_size):
            chunk = batch[start:start + self.batch_size]
            if with_cam:
                from training.inference.explain import pass_with_cams

                logits, lesion, cam = pass_with_cams(self, chunk)
                cams.append(cam)
            else:
                logits, lesion = self.outputs(chunk)
            probs.append(self._probabilities(logits))
            if lesion is not None:
                lesions.append(sigmoid(lesion)[:, 0].astype(np.float32))
        out = (np.concatenate(probs).astype(np.float32, copy=False),
               np.concatenate(lesions).astype(np.float32, copy=False) if lesions else None)
        if not with_cam:
            return out
        return (*out, None if any(c is None for c in cams) else np.concatenate(cams))

    def predict_batch(self, batch) -> np.ndarray:
        """A preprocessed ``(N, 3, S, S)`` batch -> P(COVID) as float32 numpy."""
        probs, _ = self.predict_full(batch)
        return np.ascontiguousarray(probs[:, self.covid_index], dtype=np.float32)

