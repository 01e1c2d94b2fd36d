"""The lung segmenter: a small MONAI ``BasicUNet`` that finds both lungs on a
frontal chest radiograph, and its self-describing model file.

Input contract: the project's loader output (grey ``(H, W)`` float32 in
``[0, 1]``, 1 = white).  The image is resized to ``SEG_SIZE x SEG_SIZE``
(bilinear, antialiased, aspect ratio not kept, like the mask data set) and the
network returns one logit per pixel (lung = both lungs, heart excluded).

The segmenter was trained with random grey-level inversion, so it finds the
lungs on an inverted film too; that is what makes the polarity check
(:mod:`training.gate.gate`) possible: on a correctly displayed radiograph the
lungs are darker than the rest of the body.

Model file: ``.safetensors`` with metadata ``__metadata__["xray_lungseg"]``
(JSON: architecture, input size, features, training data and test metrics, and
the suitability gate's thresholds) plus a SHA-256 of the weights checked on
load, as for the classifiers (:mod:`training.model.modelfile`).  Loading never runs
code from the file.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from training.common.errors import ModelFileError
from training.imaging.resize import resize_grey
from training.model.modelfile import (
    MetaRecord,
    read_file_once,
    read_header,
    record_from_header,
    state_tensors,
    verified_tensors,
    write_tensors,
)

log = logging.getLogger(__name__)

SEG_FORMAT = "xray-lung-segmenter"
SEG_FORMAT_VERSION = 1
SEG_META_KEY = "xray_lungseg"
SEG_SIZE = 256
# (encoder levels 0-4, final up-sampling); ~125 k parameters, ~22 ms per 256 px image on 2 AVX2 cores
SEG_FEATURES = (8, 8, 16, 32, 64, 8)
DEFAULT_SEGMENTER_NAME = "lung_segmenter.safetensors"


def build_segmenter(features=SEG_FEATURES) -> nn.Module:
    """MONAI's BasicUNet for one grey channel in, one lung logit out."""
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=tuple(int(f) for f in features),
                     act=("LeakyReLU", {"negative_slope": 0.1, "inplace": True}), norm=("instance", {"affine": True}),
                     dropout=0.0)


@dataclass
class SegmenterInfo(MetaRecord):
    """What a segmenter file says about itself."""

    name: str = "Lung segmenter (MONAI BasicUNet)"
    version: str = "1"
    input_size: int = SEG_SIZE
    features: list[int] = field(default_factory=lambda: list(SEG_FEATURES))
    created: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)  # thresholds of training.gate.gate, from validation data


def save_segmenter(model: nn.Module, info: SegmenterInfo, path: str | os.PathLike) -> Path:
    """Write weights (fp32; the network is small) + metadata atomically."""
    if not info.created:
        info.created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    meta = {"format": SEG_FORMAT, "format_version": SEG_FORMAT_VERSION, **info.to_dict()}
    return write_tensors(state_tensors(model), SEG_META_KEY, meta, path)


def read_segmenter_info(path: str | os.PathLike, header: dict[str, str] | None = None) -> SegmenterInfo:
    p = Path(path)
    header = header if header is not None else read_header(p, "lung segmenter")
    return SegmenterInfo.from_dict(record_from_header(p.name, header, SEG_META_KEY, SEG_FORMAT, SEG_FORMAT_VERSION,
                                                      "lung segmenter"))


def _read_segmenter(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], SegmenterInfo, str]:
    """One read of the file: (weights checked against their stored SHA-256, its record, the file's SHA-256)."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"Lung segmenter file not found: {p}")
    contents = read_file_once(p, "segmenter weights")
    info = read_segmenter_info(p, contents.header)
    return verified_tensors(p.name, contents, "segmenter weights"), info, contents.sha256


def _network(tensors: dict[str, torch.Tensor], info: SegmenterInfo, name: str) -> nn.Module:
    net = build_segmenter(info.features)
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{name}: the weights do not fit this program's lung segmenter.") from exc
    return net.eval()


def load_segmenter_module(path: str | os.PathLike) -> tuple[nn.Module, SegmenterInfo]:
    """One read of the file; weights checked against their stored SHA-256; the network rebuilt from our code."""
    tensors, info, _ = _read_segmenter(path)
    return _network(tensors, info, Path(path).name), info


def to_seg_input(pixels: np.ndarray, size: int = SEG_SIZE) -> torch.Tensor:
    """Loader output ``(H, W)`` -> ``(1, 1, size, size)`` float32 in [0, 1]."""
    return resize_grey(pixels, size)[None, None]


@dataclass
class Segmentation:
    """The segmenter's answer for one image, at ``SEG_SIZE`` (aspect not kept).

    ``prob``: P(lung) per pixel; ``mask``: ``prob >= 0.5``; ``features``: the
    bottleneck activations, averaged over space (the gate's feature space);
    ``image``: the segmenter's own input (for the gate's intensity checks)."""

    prob: np.ndarray
    mask: np.ndarray
    features: np.ndarray
    image: np.ndarray

    def mask_at(self, shape: tuple[int, int]) -> np.ndarray:
        """The lung mask resized (nearest) to ``shape`` = (rows, cols)."""
        t = torch.from_numpy(self.prob)[None, None]
        r = F.interpolate(t, size=tuple(int(s) for s in shape), mode="bilinear", align_corners=False)
        return (r[0, 0] >= 0.5).numpy()


class SegmentAndPool(nn.Module):
    """BasicUNet's forward pass that also returns the bottleneck activations
    averaged over space (the gate's feature space): ``(logits, features)``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.net
        x0 = n.conv_0(x)
        x1 = n.down_1(x0)
        x2 = n.down_2(x1)
        x3 = n.down_3(x2)
        x4 = n.down_4(x3)
        u4 = n.upcat_4(x4, x3)
        u3 = n.upcat_3(u4, x2)
        u2 = n.upcat_2(u3, x1)
        u1 = n.upcat_1(u2, x0)
        return n.final_conv(u1), x4.mean(dim=(2, 3))


def freeze_for_cpu(module: nn.Module, size: int) -> nn.Module:
    """TorchScript trace + freeze (oneDNN folds the normalisation and
    activation into the convolutions): about 15 % faster on the CPU, same
    numbers (``tests/test_gate.py``).  The input size is fixed (``size``), the
    batch size is not.  Falls back to the eager module if tracing fails."""
    import warnings

    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # TracerWarning: the shape checks are constant at a fixed size
            return torch.jit.freeze(torch.jit.trace(module.eval(), torch.zeros(1, 1, size, size)))
    except Exception:  # pragma: no cover - an unusual torch build
        return module


class LungSegmenter:
    """Runs the segmenter on loader images (CPU by default: it is small).

    ``from_file`` on the CPU runs the network's cached ONNX Runtime graph
    (``training.model.graph_cache.small_graph``: after the first run the PyTorch
    network - MONAI's BasicUNet - is never built, which saves MONAI's import
    and the tracing at start-up); when ONNX Runtime cannot be used, or with
    ``engine="torch"``, the frozen TorchScript of the PyTorch network.
    ``engine_name`` says which runs."""

    def __init__(self, net: nn.Module | None, info: SegmenterInfo, device: torch.device | str = "cpu", *,
                 graph=None):
        self.info = info
        self.device = torch.device(device)
        self.net = None if net is None else net.eval().to(self.device)
        if graph is not None:
            self._forward, self.engine_name = graph, "onnx"
        elif self.net is None:
            raise ValueError("a lung segmenter needs its network or its graph")
        else:
            module = SegmentAndPool(self.net)
            self._forward = freeze_for_cpu(module, self.size) if self.device.type == "cpu" else module
            self.engine_name = "torch"

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: torch.device | str = "cpu",
                  engine: str = "auto") -> "LungSegmenter":
        tensors, info, sha = _read_segmenter(path)
        name = Path(path).name
        if torch.device(device).type == "cpu" and engine != "torch":
            from training.model.graph_cache import EngineUnavailable, small_graph

            size = int(info.input_size)
            try:
                graph = small_graph(sha, "lung-segmenter", (1, 1, size, size), ("logits", "features"),
                                    lambda: SegmentAndPool(_network(tensors, info, name)))
                return cls(None, info, device, graph=graph)
            except EngineUnavailable as exc:
                log.info("lung segmenter: ONNX Runtime not used (%s); PyTorch runs it", exc)
        return cls(_network(tensors, info, name), info, device)

    @property
    def size(self) -> int:
        return int(self.info.input_size)

    def segment_batch(self, images: list[np.ndarray]) -> list[Segmentation]:
        if not images:
            return []
        x = torch.cat([to_seg_input(im, self.size) for im in images]).to(self.device)
        with torch.inference_mode():
            logits, feats = self._forward(x)
            prob = torch.sigmoid(logits.float())
            feats = feats.float()
        prob_np = prob[:, 0].cpu().numpy()
        feats_np = feats.cpu().numpy()
        x_np = x[:, 0].cpu().numpy()
        return [Segmentation(prob=prob_np[i], mask=prob_np[i] >= 0.5, features=feats_np[i], image=x_np[i])
                for i in range(len(images))]

    def segment(self, pixels: np.ndarray) -> Segmentation:
        return self.segment_batch([pixels])[0]


def default_segmenter_path() -> Path | None:
    from training.common.resources import resources_dir

    p = resources_dir() / "models" / DEFAULT_SEGMENTER_NAME
    return p if p.is_file() else None


__all__ = ["SEG_SIZE", "SEG_FEATURES", "SegmenterInfo", "Segmentation", "LungSegmenter", "build_segmenter",
           "save_segmenter", "load_segmenter_module", "read_segmenter_info", "to_seg_input",
           "default_segmenter_path"]
