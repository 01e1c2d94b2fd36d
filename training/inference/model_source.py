"""Where a :class:`~training.inference.classifier.Classifier`'s model comes from: the PyTorch model
loaded from its file, or - on the CPU in fp32, after the first run - the file's cached ONNX Runtime
engine alone, without torch (``Classifier.from_file``); then the PyTorch model is loaded only when
something needs it (:attr:`ModelSourceMixin.model`), the device is resolved only then, and Grad-CAM's
head gradient comes from the file's head weights in NumPy (:attr:`ModelSourceMixin.head_gradient`).

A mixin: it works on the classifier's ``loaded``, ``info`` and the settings ``Classifier.__init__`` keeps.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from training.common.device import cpu_without_asking_torch, pick_device
from training.common.errors import XrayError
from training.model.modelfile import LoadedModel, load_model

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger("training.inference.classifier")


class ModelSourceMixin:
    """The PyTorch model on demand, the device, the NumPy Grad-CAM head, the start from the cached engine."""

    def _adopt(self, model) -> None:
        """Take the PyTorch model: eval mode on the device, ``channels_last`` for convolutional models."""
        import torch

        from training.common.cpu import apply_to_torch

        apply_to_torch()  # the app's thread choice, made before torch was loaded
        model.eval().to(self.device)
        channels_last = self._channels_last_choice
        if channels_last is None:
            channels_last = getattr(model, "cam_layer", None) is not None and self.device.type != "mps"
        self.channels_last = bool(channels_last)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self._model = model

    @property
    def device(self) -> "torch.device":
        """The torch device (resolved on first use: a torch-free classifier asks only when PyTorch runs)."""
        if self._device is None:
            self._device = pick_device(self._device_choice or "auto")
        return self._device

    @property
    def device_type(self) -> str:
        """``'cpu'``, ``'cuda'`` or ``'mps'``, for people (without importing torch when the choice is the CPU)."""
        if self._device is None and cpu_without_asking_torch(self._device_choice or "auto"):
            return "cpu"
        return self.device.type

    @property
    def model(self):
        """The PyTorch model; a classifier started from its cached engine loads it here, on first use."""
        if self._model is None:
            with self._model_lock:
                if self._model is None:
                    if self.loaded.path is None:
                        raise XrayError("The model is not available.", code="model")
                    self.loaded.model = load_model(self.loaded.path, device=self.device).model
                    self._adopt(self.loaded.model)
        return self._model

    @property
    def head_gradient(self):
        """Grad-CAM's head in NumPy (``training.inference.head_grad.HeadGradient``), or None when Grad-CAM
        cannot come from the classification pass (the LSTM-only model, a network without that head)."""
        if self._head_gradient is None:
            from training.inference.head_grad import HeadGradient

            if self._model is not None:
                from training.inference.explain import cam_head

                ok = cam_head(self._model) is not None
                state = self._model.state_dict() if ok else {}
                arch = getattr(self._model, "arch", self.info.arch)
            else:  # started from the cached engine: the head's weights were taken from the file's bytes
                ok, arch, state = True, self.info.arch, getattr(self, "_head_state", None) or {}
            self._head_gradient = (HeadGradient.from_state_dict(arch, state, self.info.sequence_order)
                                   if ok and state else None) or False
        return self._head_gradient or None

    @classmethod
    def _from_cached_engine(cls, path, gate, **kwargs):
        """The classifier on its cached, checked ONNX Runtime engine without the PyTorch model, or None
        (no usable entry: the caller loads the model).  A bad file still raises ``ModelFileError``."""
        from training.inference.classifier import load_gate
        from training.inference.engine_onnx import EngineUnavailable, open_cached
        from training.inference.head_grad import HEAD_ARCHS, HeadGradient
        from training.model.modelfile import check_model_path, info_from_header, numpy_tensors, read_file_bytes

        p = Path(path)
        check_model_path(p)
        contents = read_file_bytes(p)
        info = info_from_header(p.name, contents.header)
        try:
            engine, logits, _ = open_cached(contents.sha256, int(info.input_size), float(info.temperature))
            head = numpy_tensors(contents, HeadGradient.head_keys(info.arch)) if info.arch in HEAD_ARCHS else {}
        except EngineUnavailable as exc:
            log.info("%s: starting with PyTorch (%s)", p.name, exc)
            return None
        except (KeyError, ValueError, TypeError) as exc:  # a header the PyTorch load will explain in words
            log.info("%s: starting with PyTorch (the head's weights: %s)", p.name, exc)
            return None
        finally:
            contents.data = b""
        clf = cls(LoadedModel(model=None, info=info, path=p, sha256=contents.sha256), device="cpu",
                  gate=load_gate(gate), **kwargs)
        clf._head_state = head
        clf.self_test(outputs=logits)
        clf._fast, clf._fast_tried = engine, True
        clf.engine_note = f"ONNX Runtime {engine.version} fp32 ({engine.threads} thread(s), {engine.path.name})"
        log.info("%s: classifying with %s (started from the cached engine)", clf.version_text, clf.engine_note)
        return clf


__all__ = ["ModelSourceMixin"]
