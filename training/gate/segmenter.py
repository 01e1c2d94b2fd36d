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

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.common.errors import ModelFileError
from training.imaging.resize import bilinear, resize_grey
from training.model.calibration import sigmoid
from training.model.modelfile import FileContents, MetaRecord, read_file_bytes, read_header, record_from_header

log = logging.getLogger(__name__)

SEG_FORMAT = "xray-lung-segmenter"
SEG_FORMAT_VERSION = 1
SEG_META_KEY = "xray_lungseg"
SEG_SIZE = 256
# (encoder levels 0-4, final up-sampling); ~125 k parameters, ~22 ms per 256 px image on 2 AVX2 cores
SEG_FEATURES = (8, 8, 16, 32, 64, 8)
DEFAULT_SEGMENTER_NAME = "lung_segmenter.safetensors"


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


def read_segmenter_info(path: str | os.PathLike, header: dict[str, str] | None = None) -> SegmenterInfo:
    p = Path(path)
    header = header if header is not None else read_header(p, "lung segmenter")
    return SegmenterInfo.from_dict(record_from_header(p.name, header, SEG_META_KEY, SEG_FORMAT, SEG_FORMAT_VERSION,
                                                      "lung segmenter"))


def read_segmenter_file(path: str | os.PathLike) -> tuple[FileContents, SegmenterInfo]:
    """One read of the file, without torch: its bytes, header and SHA-256, and its record (checked);
    the weights are loaded and checked only when the network is built (``segmenter_net``)."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"Lung segmenter file not found: {p}")
    contents = read_file_bytes(p)
    return contents, read_segmenter_info(p, contents.header)


def to_seg_input(pixels: np.ndarray, size: int = SEG_SIZE) -> np.ndarray:
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
        """The lung mask on a grid of ``shape`` = (rows, cols): P(lung) resized bilinearly, then >= 0.5."""
        return bilinear(self.prob, shape) >= 0.5


class LungSegmenter:
    """Runs the segmenter on loader images (CPU by default: it is small).

    ``from_file`` on the CPU runs the network's cached ONNX Runtime graph
    (``training.model.graph_cache.small_graph``: after the first run the PyTorch
    network - MONAI's BasicUNet - is never built and torch is not even imported);
    when ONNX Runtime cannot be used, or with ``engine="torch"``, the frozen
    TorchScript of the PyTorch network (``training.gate.segmenter_net``).
    ``engine_name`` says which runs."""

    def __init__(self, net, info: SegmenterInfo, device="cpu", *, graph=None):
        self.info = info
        self.device = str(device)
        self.net = net
        if graph is not None:
            self._forward, self.engine_name = graph, "onnx"
        elif net is None:
            raise ValueError("a lung segmenter needs its network or its graph")
        else:
            from training.gate.segmenter_net import torch_forward

            self.net, self._forward = torch_forward(net, self.device, self.size)
            self.engine_name = "torch"

    @classmethod
    def from_file(cls, path: str | os.PathLike, device="cpu", engine: str = "auto") -> "LungSegmenter":
        contents, info = read_segmenter_file(path)
        name = Path(path).name
        if str(device).split(":")[0] == "cpu" and engine != "torch":
            from training.model.graph_cache import EngineUnavailable, small_graph

            def build():
                from training.gate.segmenter_net import SegmentAndPool, network_of

                return SegmentAndPool(network_of(contents, info, name))

            size = int(info.input_size)
            try:
                graph = small_graph(contents.sha256, "lung-segmenter", (1, 1, size, size), ("logits", "features"),
                                    build)
                return cls(None, info, device, graph=graph)
            except EngineUnavailable as exc:
                log.info("lung segmenter: ONNX Runtime not used (%s); PyTorch runs it", exc)
        from training.gate.segmenter_net import network_of

        return cls(network_of(contents, info, name), info, device)

    @property
    def size(self) -> int:
        return int(self.info.input_size)

    def segment_batch(self, images: list[np.ndarray]) -> list[Segmentation]:
        if not images:
            return []
        x = np.concatenate([to_seg_input(im, self.size) for im in images])
        logits, feats = self._forward(x)
        prob_np = sigmoid(logits)[:, 0].astype(np.float32)
        feats_np = np.asarray(feats, dtype=np.float32)
        return [Segmentation(prob=prob_np[i], mask=prob_np[i] >= 0.5, features=feats_np[i], image=x[i, 0])
                for i in range(len(images))]

    def segment(self, pixels: np.ndarray) -> Segmentation:
        return self.segment_batch([pixels])[0]


def default_segmenter_path() -> Path | None:
    from training.common.resources import resources_dir

    p = resources_dir() / "models" / DEFAULT_SEGMENTER_NAME
    return p if p.is_file() else None


__all__ = ["SEG_SIZE", "SEG_FEATURES", "SegmenterInfo", "Segmentation", "LungSegmenter", "read_segmenter_info",
           "read_segmenter_file", "to_seg_input", "default_segmenter_path"]
