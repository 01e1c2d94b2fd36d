"""Where did the model look?  Heatmaps at the image's own resolution.

``gradcam(classifier, pixels)`` -> ``np.float32 (H, W)`` in [0, 1] (1 = most
evidence for the positive class), for the image as loaded (not the 224 x 224
model input).

* ResNet50 and ResNet50-LSTM: Grad-CAM (Selvaraju et al. 2017) on
  ``model.cam_layer`` (the last bottleneck block of ResNet50 stage 5,
  ``backbone.layer4[-1]``: a 2048 x 7 x 7 map at 224 input, the last layer with
  a spatial layout), **from the classification pass**.  Grad-CAM needs that
  block's activations ``A`` and the gradient of the class score ``Y`` with
  respect to them; ``A`` comes out of the forward pass that classifies the
  image (ONNX Runtime returns it as the graph output ``features`` beside the
  logits, ``training.inference.engine_onnx``; the PyTorch engine catches it with a forward
  hook), and ``dY/dA`` flows only through the model's small head
  (``model._head``: global average pool + linear, or the stacked-LSTM head), so
  it is computed on the head alone, in NumPy from the head's weights
  (``training.inference.head_grad``, checked against torch autograd in
  ``tests/test_head_grad.py``; :func:`cams_from_features`) - no second pass, no
  backward pass through the backbone, and no torch in a run whose engine came
  from the cache.
  ``cam = ReLU(sum_c mean_hw(dY/dA)_c * A_c)``, min-max scaled per image,
  bilinearly resized to the model's input and min-max scaled again: exactly
  the post-processing of the ``grad-cam`` package's ``GradCAM``
  (``BaseCAM.compute_cam_per_layer`` / ``scale_cam_image`` /
  ``aggregate_multi_layers``), which stays the reference
  (``tests/test_gradcam_from_pass.py``: <= 1e-4 per pixel on real images, both
  engines) and the fallback for a model with a ``cam_layer`` but no ``_head``
  (:func:`package_gradcam_maps`).  Targets as in that package: a binary model
  returns one logit per image and ``Y`` is that logit
  (``BinaryClassifierOutputTarget(1)``: the COVID logit, whatever the
  prediction was; "Normal" evidence would be its negative); a three-class model
  (v2) returns ``(N, 3)`` and ``Y`` is the COVID logit
  (``ClassifierOutputTarget(COVID index)``).  The head's gradient is taken in
  fp32; ``A`` has the precision of the classification pass (fp32 on ONNX
  Runtime and with ``mixed_precision=False``; under PyTorch mixed precision it
  is the bf16 / fp16 map, cast to fp32).  ``Classifier.predict_full(batch,
  with_cam=True)`` gives the maps with the probabilities (the lung share of
  ``classify_paths(explain=True)``); :func:`gradcam` for one image runs one
  such pass.
* LSTM (no convolutional map): SmoothGrad (Smilkov et al. 2017) - the mean
  gradient of the COVID logit w.r.t. the input over ``n`` noisy copies
  (sigma = 10 % of the intensity range), absolute value, summed over the 3
  identical channels, blurred with a Gaussian (sigma = 1.5 % of the input size)
  and scaled to [0, 1] with the 99.5th percentile as the top (one hot pixel
  must not flatten the map).  Plain gradients, not gradient x input: air-filled
  lungs are dark (close to 0) on a radiograph, and multiplying by the input
  would blank exactly the region of interest.

This module imports torch only in the functions that need it (SmoothGrad, the
package's Grad-CAM); Grad-CAM from the pass and the overlays are torch-free.

Gradients run with ``torch.inference_mode(False)`` + ``torch.enable_grad()``
(so they work even when called from inside an inference-mode block), in fp32
(no autocast), with the model in eval mode, and never leave ``.grad`` buffers
on the weights (SmoothGrad and the package fallback freeze them for the pass;
the head's gradient is ``torch.autograd.grad`` with respect to ``A`` alone).

CUDA: cuDNN's LSTM kernels implement backward only in training mode
("cudnn RNN backward can only be called in training mode"), and the model must
stay in eval mode (dropout off, BatchNorm running statistics).  For models with
an LSTM every gradient pass here (the LSTM head's backward included) therefore
runs under ``torch.backends.cudnn.flags(enabled=False)``: PyTorch's native
LSTM and convolution kernels are used for it.  The flag is process-wide for
the duration of the call (a concurrent prediction in another thread would run
on the native kernels meanwhile: slower, same result).

``overlay_rgb`` / ``save_overlay_png`` draw the heatmap over the grey image
(colour map from ``matplotlib.colormaps``, no pyplot, so no GUI backend), by
default as the app shows it: ``training.common.heat_style`` (inferno, transparent
below half of the map's maximum).
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING

import numpy as np

from training.common import atomic
from training.common.heat_style import HEAT_CMAP_DEFAULT, HEAT_FLOOR_DEFAULT
from training.imaging.resize import bilinear

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import torch.nn as nn

log = logging.getLogger(__name__)


def _two_dim_output(model: "nn.Module") -> "nn.Module":
    """``(N,)`` logits -> ``(N, 1)``, the shape ``pytorch_grad_cam`` expects."""
    import torch.nn as nn

    class TwoDimOutput(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x).reshape(x.shape[0], -1)

    return TwoDimOutput()


def _has_lstm(model: "nn.Module") -> bool:
    import torch.nn as nn

    return any(isinstance(m, nn.RNNBase) for m in model.modules())


@contextlib.contextmanager
def _grad_pass(model: "nn.Module", device: "torch.device"):
    """Gradients on, fp32, weights frozen; cuDNN off for LSTMs on CUDA (see module doc)."""
    import torch

    params = [p for p in model.parameters()]
    flags = [p.requires_grad for p in params]
    was_training = model.training
    cudnn_off = (torch.backends.cudnn.flags(enabled=False)
                 if device.type == "cuda" and _has_lstm(model) else contextlib.nullcontext())
    try:
        for p in params:
            p.requires_grad_(False)
        model.eval()
        with torch.inference_mode(False), torch.enable_grad(), \
                torch.autocast(device_type=device.type, enabled=False), cudnn_off:
            yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
        model.train(was_training)


def _normalise(heat: np.ndarray, top_percentile: float | None = None) -> np.ndarray:
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo = float(heat.min())
    hi = float(np.percentile(heat, top_percentile)) if top_percentile else float(heat.max())
    if hi - lo <= 1e-12:
        return np.zeros_like(heat, dtype=np.float32)
    return np.clip((heat - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def cam_head(model: "nn.Module"):
    """``model._head`` (the layers after ``model.cam_layer``: ``cam_layer``'s output -> class logits) when
    Grad-CAM can come from the classification pass, else None (no ``cam_layer``, or no such head)."""
    if getattr(model, "cam_layer", None) is None:
        return None
    head = getattr(model, "_head", None)
    return head if callable(head) else None


def _target_index(classifier) -> int | None:
    """The logit Grad-CAM explains: None = the single logit of a binary model, else the COVID column."""
    info = getattr(classifier, "info", None)
    if info is not None and getattr(info, "multiclass", False):
        return info.class_names.index(info.positive_class)
    return None


def _area(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A heatmap made smaller by averaging the pixels each output pixel covers (OpenCV's ``INTER_AREA``)."""
    import cv2

    return cv2.resize(np.ascontiguousarray(heat, dtype=np.float32), (int(size[1]), int(size[0])),
                      interpolation=cv2.INTER_AREA)


def _minmax(cam: np.ndarray) -> np.ndarray:
    """Per image ``(N, h, w)``: ``x - min``, then ``/ (1e-7 + max)`` (``pytorch_grad_cam.utils.image.scale_cam_image``)."""
    cam = cam - cam.min(axis=(1, 2), keepdims=True)
    return cam / (np.float32(1e-7) + cam.max(axis=(1, 2), keepdims=True))


def cams_from_features(classifier, features: np.ndarray, size: tuple[int, int] | int) -> np.ndarray:
    """Grad-CAM maps ``(N, H, W)`` float32 in [0, 1] at the model's input ``size`` from ``cam_layer``'s
    activations ``A`` of a classification pass: the target logit's gradient through the head alone
    (``classifier.head_gradient``, NumPy), then ``GradCAM``'s weighting and scaling (module docstring)."""
    head = classifier.head_gradient
    if head is None:
        raise ValueError("this model has no head after its cam_layer; use package_gradcam_maps")
    size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    a = np.asarray(features, dtype=np.float32)
    _, grads = head.gradient(a, _target_index(classifier))
    weights = grads.mean(axis=(2, 3), dtype=np.float32)  # GradCAM.get_cam_weights
    cam = np.maximum(np.einsum("nc,nchw->nhw", weights, a), 0)  # get_cam_image, then np.maximum(cam, 0)
    cam = _minmax(cam)  # scale_cam_image(cam, target_size) ...
    if tuple(cam.shape[-2:]) != size:  # ... cv2.resize, INTER_LINEAR (half-pixel centres)
        cam = bilinear(cam, size)
    cam = _minmax(np.maximum(cam, 0))  # aggregate_multi_layers: max(., 0), mean of one layer, scale again
    return np.ascontiguousarray(cam, dtype=np.float32)


def pass_with_cams(classifier, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``Classifier.predict_full(with_cam=True)``'s pass for one chunk: (class logits, lesion logits or None,
    heatmaps ``(N, S, S)`` or None when the explanation failed - it never fails the classification).
    Models with :func:`cam_head`: one forward pass (``Classifier.outputs_with_features``).  Others (the ``lstm``
    model's SmoothGrad, a ``cam_layer`` without ``_head``): the classification pass, then
    :func:`gradcam_maps`."""
    if classifier.head_gradient is None:
        logits, lesion = classifier.outputs(x)
        try:
            cams = gradcam_maps(classifier, x)
        except Exception as exc:
            log.warning("explanation failed on a batch: %s: %s", type(exc).__name__, exc)
            cams = None
        return logits, lesion, cams
    logits, lesion, features = classifier.outputs_with_features(x)
    try:
        cams = cams_from_features(classifier, features, tuple(x.shape[-2:]))
    except Exception as exc:
        log.warning("Grad-CAM failed on a batch: %s: %s", type(exc).__name__, exc)
        cams = None
    return logits, lesion, cams


def gradcam_maps(classifier, batch) -> np.ndarray:
    """Heatmaps at the model's input size for a preprocessed batch
    ``(N, 3, S, S)``: ``(N, S, S)`` float32 in [0, 1].  Grad-CAM from one forward
    pass per chunk (:func:`cams_from_features`) for the convolutional models;
    SmoothGrad per image for ``lstm``; the ``grad-cam`` package for a model with a
    ``cam_layer`` but no ``_head``."""
    batch = np.asarray(batch, dtype=np.float32)
    if classifier.head_gradient is None:
        if getattr(classifier.model, "cam_layer", None) is None:
            return np.stack([smoothgrad_tensor(classifier, x) for x in batch])
        return package_gradcam_maps(classifier, batch)
    classifier.fast_engine()  # built outside inference mode (the export traces the model)
    step = int(getattr(classifier, "batch_size", 0) or max(1, batch.shape[0]))
    out = []
    for start in range(0, batch.shape[0], step):
        chunk = batch[start:start + step]
        _, _, features = classifier.outputs_with_features(chunk)
        out.append(cams_from_features(classifier, features, tuple(chunk.shape[-2:])))
    if not out:
        return np.empty((0, *batch.shape[-2:]), dtype=np.float32)
    return np.concatenate(out)


def package_gradcam_maps(classifier, batch) -> np.ndarray:
    """Grad-CAM by the ``grad-cam`` package (``pytorch_grad_cam.GradCAM``): a full forward and backward
    pass of the PyTorch model.  The reference the one-pass maps are tested against, and the path for a
    model with a ``cam_layer`` but no ``_head``.  ``(N, S, S)`` float32 in [0, 1]."""
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget, ClassifierOutputTarget

    model = classifier.model
    index = _target_index(classifier)
    target = BinaryClassifierOutputTarget(1) if index is None else ClassifierOutputTarget(index)
    device = classifier.device
    with _grad_pass(model, device):
        x = torch.as_tensor(np.asarray(batch), dtype=torch.float32).clone().to(device)  # not an inference tensor
        if getattr(classifier, "channels_last", False):
            x = x.contiguous(memory_format=torch.channels_last)
        with GradCAM(model=_two_dim_output(model), target_layers=[model.cam_layer]) as cam:
            # compute_input_gradient: the input carries the gradient (weights are
            # frozen) so the hook on the cam layer's output sees a graph
            cam.compute_input_gradient = True
            maps = cam(input_tensor=x, targets=[target] * x.shape[0])
    return np.ascontiguousarray(maps, dtype=np.float32)


def gradcam(classifier, pixels: np.ndarray, lung_mask: np.ndarray | None = None) -> np.ndarray:
    """Heatmap ``(H, W)`` float32 in [0, 1] for the grey image ``pixels`` (H, W).

    Grad-CAM on ``model.cam_layer`` for the convolutional models (from one
    forward pass of the classifier's engine and the head's gradient), SmoothGrad
    for the ``lstm`` model (see the module docstring).  For a model that sees only
    the lungs' box the map is computed on that box and put back in place (zero
    outside it).  ``lung_mask``: the gate's mask, saves segmenting again."""
    from training.model.lung_input import place_heatmap

    pixels = np.asarray(pixels)
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {pixels.shape}")
    if classifier.head_gradient is None and getattr(classifier.model, "cam_layer", None) is None:
        return smoothgrad(classifier, pixels, lung_mask=lung_mask)
    x, box = classifier.model_input(pixels, lung_mask)
    heat = gradcam_maps(classifier, x[None])[0]
    return _normalise(place_heatmap(heat, box, pixels.shape))


def heatmap_of(classifier, pred, pixels: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The image-sized heatmap of a result, as :func:`gradcam` gives it for ``pixels`` (the result's
    model frame): from the classification pass when the result kept it (``Prediction.heat_input``),
    else computed now.  ``shape``: place it on a grid of that size instead of the image's (the app
    asks for its colour layer's size, ``colour_layer_size``: a 2k film's map at 1024 px is a quarter
    of the work, and the viewer stretches it over the image anyway)."""
    from training.model.lung_input import Box, place_heatmap

    if pred.heat_input is None:
        heat = gradcam(classifier, pixels, pred.lung_mask)
        if shape is not None and tuple(shape) != heat.shape:
            heat = _area(heat, tuple(int(s) for s in shape))
        return heat
    grid = tuple(int(s) for s in shape) if shape is not None else np.asarray(pixels).shape
    return _normalise(place_heatmap(pred.heat_input, pred.input_box or Box(), grid))


def _gaussian_blur(img: "torch.Tensor", sigma: float) -> "torch.Tensor":
    """Separable Gaussian blur of a 2-D tensor (reflect padding)."""
    import torch
    import torch.nn.functional as F

    if sigma <= 0:
        return img
    radius = min(max(1, int(round(3 * sigma))), img.shape[0] - 1, img.shape[1] - 1)
    if radius < 1:
        return img
    xs = torch.arange(-radius, radius + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-(xs ** 2) / (2 * sigma * sigma))
    k = k / k.sum()
    t = img[None, None]
    t = F.pad(t, (radius, radius, 0, 0), mode="reflect")
    t = F.conv2d(t, k.view(1, 1, 1, -1))
    t = F.pad(t, (0, 0, radius, radius), mode="reflect")
    t = F.conv2d(t, k.view(1, 1, -1, 1))
    return t[0, 0]


def smoothgrad_tensor(classifier, x, n: int = 16, noise: float = 0.10, seed: int = 0) -> np.ndarray:
    """SmoothGrad saliency at the model's input size for one preprocessed
    image ``(3, S, S)``: ``(S, S)`` float32 in [0, 1]."""
    import torch

    model = classifier.model
    device = classifier.device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with _grad_pass(model, device):
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32).clone()[None].to(device)
        size = x.shape[-1]
        grads = torch.zeros_like(x[0])
        remaining = n
        while remaining > 0:
            m = min(remaining, 8)
            eps = torch.randn((m, *x.shape[1:]), generator=gen).to(device) * noise
            xi = (x.expand(m, -1, -1, -1) + eps).detach().requires_grad_(True)
            out = model(xi).reshape(m, -1)[:, 0]
            (g,) = torch.autograd.grad(out.sum(), xi)
            grads += g.detach().sum(0)
            remaining -= m
    sal = (grads / n).abs().sum(0).float()  # (S, S)
    sal = _gaussian_blur(sal, sigma=max(1.0, 0.015 * size)).cpu()
    return _normalise(sal.numpy(), top_percentile=99.5)


def smoothgrad(classifier, pixels: np.ndarray, n: int = 16, noise: float = 0.10, seed: int = 0,
               lung_mask: np.ndarray | None = None) -> np.ndarray:
    """SmoothGrad saliency ``(H, W)`` float32 in [0, 1] for any model (used for
    the ``lstm`` model, which has no convolutional map)."""
    from training.model.lung_input import place_heatmap

    pixels = np.asarray(pixels)
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {pixels.shape}")
    x, box = classifier.model_input(pixels, lung_mask)
    sal = smoothgrad_tensor(classifier, x, n, noise, seed)
    return _normalise(place_heatmap(sal, box, pixels.shape), top_percentile=99.5)


# ---------------------------------------------------------------- overlays
def _colormap(name: str = HEAT_CMAP_DEFAULT):
    import matplotlib

    return matplotlib.colormaps[name]


def heat_weight(heatmap: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Per-pixel weight ``float32 (H, W)`` in [0, 1] of a heatmap's colour layer.

    Values are taken relative to the map's maximum.  ``floor`` <= 0: weight 1
    everywhere (the whole map).  Otherwise pixels at or below ``floor`` x max get
    weight 0 (fully transparent) and the weight rises linearly to 1 halfway
    between the floor and the maximum, so only the strongest regions are
    coloured and the edge of a region fades in instead of cutting."""
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, None)
    f = float(floor)
    if f <= 0.0:
        return np.ones_like(heat, dtype=np.float32)
    top = float(heat.max()) if heat.size else 0.0
    if top <= 1e-12:
        return np.zeros_like(heat, dtype=np.float32)
    f = min(f, 0.99)
    ramp = (1.0 - f) / 2.0
    return np.clip((heat / top - f) / ramp, 0.0, 1.0).astype(np.float32)


# The colour layer of a large image is drawn at most this many pixels on its long
# side and stretched over the image by the viewer: a Grad-CAM map is a smooth
# upsampling of a 7 x 7 grid, so nothing is lost, and a 2k x 2k film's layer
# takes ~0.02 s instead of ~0.25 s (bench/bench_gui_latency.py).
COLOUR_LAYER_MAX_SIDE = 1024


def colour_layer_size(shape: tuple[int, int], max_side: int = COLOUR_LAYER_MAX_SIDE) -> tuple[int, int]:
    """(h, w) of the colour layer for a heatmap of ``shape``: the same aspect,
    the long side at most ``max_side``."""
    h, w = int(shape[0]), int(shape[1])
    scale = min(1.0, max_side / max(h, w, 1))
    return max(1, round(h * scale)), max(1, round(w * scale))


def heat_rgba(heatmap: np.ndarray, cmap: str = HEAT_CMAP_DEFAULT, floor: float = 0.0,
              max_side: int | None = None) -> np.ndarray:
    """The heatmap's colour layer, ``uint8 (h, w, 4)`` (straight alpha): the colour
    map of the value relative to the map's maximum, alpha = :func:`heat_weight`.
    ``max_side``: draw it smaller (:func:`colour_layer_size`) when the map is larger."""
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, None)
    if max_side is not None and heat.ndim == 2:
        size = colour_layer_size(heat.shape, max_side)
        if size != heat.shape:
            heat = _area(heat, size)
    top = float(heat.max()) if heat.size else 0.0
    rel = heat / top if top > 1e-12 else np.zeros_like(heat)
    rgba = _colormap(cmap)(rel, bytes=True)  # (H, W, 4) uint8
    rgba[..., 3] = np.rint(heat_weight(heat, floor) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(rgba)


def overlay_rgb(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, cmap: str = HEAT_CMAP_DEFAULT,
                floor: float = HEAT_FLOOR_DEFAULT) -> np.ndarray:
    """Blend ``heatmap`` over the grey image: ``uint8 (H, W, 3)``.

    ``alpha`` is the heatmap's weight (0 = grey image only, 1 = heatmap only),
    times :func:`heat_weight` per pixel when ``floor`` > 0 (the weak part of the
    map left out).  A heatmap of another size is resized to the image's."""
    grey = np.clip(np.nan_to_num(np.asarray(pixels, dtype=np.float32)), 0.0, 1.0)
    if grey.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {grey.shape}")
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    if heat.shape != grey.shape:
        heat = bilinear(heat, grey.shape)
    a = float(np.clip(alpha, 0.0, 1.0))
    colours = _colormap(cmap)(heat)[..., :3].astype(np.float32)  # (H, W, 3) in [0, 1]
    if float(floor) > 0.0:
        a = a * heat_weight(heat, floor)[..., None]
    rgb = (1.0 - a) * grey[..., None] + a * colours
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def save_overlay_png(path: str | os.PathLike, pixels: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> None:
    """Write the overlay as an RGB PNG, atomically."""
    from PIL import Image

    rgb = overlay_rgb(pixels, heatmap, alpha)
    atomic.write_with(path, lambda tmp: Image.fromarray(rgb).save(tmp, format="PNG"))


__all__ = ["gradcam", "heatmap_of", "gradcam_maps", "cams_from_features", "pass_with_cams",
           "package_gradcam_maps", "cam_head", "smoothgrad", "overlay_rgb", "heat_rgba", "colour_layer_size", "COLOUR_LAYER_MAX_SIDE", "heat_weight", "save_overlay_png"]
