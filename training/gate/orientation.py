"""The orientation check: is a frontal chest film stored rotated by 0 / 90 /
180 / 270 degrees, and is it mirrored left-right?

Two tiny CNNs (``training.gate.orientation_net.OrientationNet``): the *rotation* network (64 px) gives one
softmax over the 8 ways a film can be stored (the dihedral group D4; class
``k + 4 * m`` means "mirrored left-right if ``m``, then rotated ``90 * k``
degrees clockwise"), of which the rotation is used; the *mirror* network (96 px)
sees the film turned back by the most likely rotation and gives P(mirrored),
averaged with its answer on the flipped film (``(p(x) + 1 - p(flip x)) / 2``,
antisymmetric by construction) and, in logit space, with the rotation network's own
mirror marginal (``thresholds.mirror_tta`` / ``mirror_combine`` in the model file).  Both were trained on rotated and mirrored
copies of training films only (the labels are free; docs/GATE.md says how and
what they measure).

Input contract: the loader's grey ``(H, W)`` float32 in [0, 1], 1 = white,
resized to ``S x S`` (bilinear, antialiased, aspect not kept).

Decisions leave "upright, not mirrored" only when the network is confident
(thresholds from a validation split of the training films, stored in the model
file): a rotation is then undone by the gate (:mod:`training.gate.gate`), a
mirror is only flagged.  Model file: safetensors with JSON metadata and SHA-256
digests, like every model file of the project (:mod:`training.model.modelfile`);
nothing in it is executed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from training.common.errors import ModelFileError
from training.imaging.resize import resize_grey
from training.model.calibration import logit, sigmoid, softmax
from training.model.modelfile import FileContents, MetaRecord, read_file_bytes, read_header, record_from_header

ORIENT_FORMAT = "xray-orientation"
ORIENT_FORMAT_VERSION = 1
ORIENT_META_KEY = "xray_orientation"
ROTATIONS = (0, 90, 180, 270)
N_CLASSES = 8
DEFAULT_ORIENTATION_NAME = "orientation.safetensors"
log = logging.getLogger(__name__)


def to_input(image: np.ndarray, size: int) -> np.ndarray:
    """Loader image -> ``(1, 1, size, size)`` float32.  A large film is first subsampled by an integer
    stride (still >= 4x the target; the antialiased resize does the low-pass): < 1 grey level of
    difference on real films, 0.5 ms instead of 8 ms for a 2500 x 2048 film."""
    arr = np.asarray(image)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"expected a 2-D grey image, got shape {arr.shape}")
    f = min(arr.shape) // (4 * size)
    if f >= 2:
        arr = arr[::f, ::f]
    return resize_grey(arr, size)[None, None]


def apply_orientation(image: np.ndarray, rotation_deg: int, mirrored: bool) -> np.ndarray:
    """An upright film as it would be stored: mirrored left-right (if ``mirrored``), then rotated
    ``rotation_deg`` degrees clockwise (how the training copies and the tests are made)."""
    k = ROTATIONS.index(int(rotation_deg))
    out = image[:, ::-1] if mirrored else image
    return np.ascontiguousarray(np.rot90(out, -k))


@dataclass
class OrientationResult:
    """``rotation_deg``: the film as stored is rotated this many degrees clockwise (0 unless the
    network is confident); ``mirrored``: it looks mirrored left-right (decision).  ``p_rotation``
    per rotation (summed over mirror), ``p_mirrored`` summed over rotations."""

    rotation_deg: int
    p_rotation: tuple[float, float, float, float]
    mirrored: bool
    p_mirrored: float


def decide(p8: np.ndarray, rotation_threshold: float, mirror_threshold: float,
           p_mirrored: float | None = None) -> OrientationResult:
    """The decision from the rotation network's 8 probabilities and P(mirrored) (the mirror
    network's; without one, the rotation network's mirror marginal)."""
    p8 = np.asarray(p8, dtype=np.float64)
    p_rot = p8[:4] + p8[4:]
    p_mir = float(p8[4:].sum()) if p_mirrored is None else float(p_mirrored)
    k = int(np.argmax(p_rot))
    turn = k != 0 and p_rot[k] >= rotation_threshold
    return OrientationResult(rotation_deg=ROTATIONS[k] if turn else 0,
                             p_rotation=tuple(float(v) for v in p_rot),  # type: ignore[arg-type]
                             mirrored=bool(p_mir >= mirror_threshold), p_mirrored=p_mir)


@dataclass
class OrientationInfo(MetaRecord):
    """What an orientation model file says about itself."""

    name: str = "Orientation check (rotation + mirror CNNs)"
    version: str = "1"
    # per network: input_size, widths, hidden, n_out (8 for rotation, 1 for mirror)
    rotation: dict[str, Any] = field(default_factory=lambda: {"input_size": 64, "widths": [16, 32, 64, 64],
                                                              "hidden": 64, "n_out": 8})
    mirror: dict[str, Any] = field(default_factory=dict)  # empty: no mirror network
    thresholds: dict[str, Any] = field(default_factory=lambda: {"rotation": 0.9, "mirror": 0.9, "mirror_tta": True})
    created: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


NETS = ("rotation", "mirror")


def read_orientation_info(path: str | os.PathLike, header: dict[str, str] | None = None) -> OrientationInfo:
    p = Path(path)
    header = header if header is not None else read_header(p, "orientation model")
    return OrientationInfo.from_dict(record_from_header(p.name, header, ORIENT_META_KEY, ORIENT_FORMAT,
                                                        ORIENT_FORMAT_VERSION, "orientation model"))


def read_orientation_file(path: str | os.PathLike) -> tuple[FileContents, OrientationInfo]:
    """One read of the file, without torch: its bytes, header and SHA-256, and its record (checked); the
    weights are loaded and checked only when a network is built (``training.gate.orientation_net``)."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"Orientation model file not found: {p}")
    contents = read_file_bytes(p)
    return contents, read_orientation_info(p, contents.header)


def _names(info: OrientationInfo) -> tuple[str, ...]:
    """The networks the file's record describes (the rotation network always)."""
    return tuple(name for name in NETS if name == "rotation" or getattr(info, name))


class _FirstOutput:
    """A cached graph (``training.model.graph_cache.SmallGraph``) called like the network: its one output."""

    def __init__(self, graph):
        self.graph = graph

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.graph(x)[0]


def _graphs(contents: FileContents, info: OrientationInfo, file_name: str) -> dict | None:
    """Each network's cached ONNX Runtime graph (built from the network on the first run), or None
    when ONNX Runtime cannot be used (logged; the networks then run in PyTorch)."""
    from training.model.graph_cache import EngineUnavailable, small_graph

    def build(name):
        from training.gate.orientation_net import networks_of

        return networks_of(contents, info, file_name)[name]

    out = {}
    try:
        for name in _names(info):
            size = int(getattr(info, name)["input_size"])
            out[name] = _FirstOutput(small_graph(contents.sha256, f"orientation-{name}", (1, 1, size, size),
                                                 ("logit",), lambda name=name: build(name)))
    except EngineUnavailable as exc:
        log.info("orientation check: ONNX Runtime not used (%s); PyTorch runs it", exc)
        return None
    return out


def _combine(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The mean of two probabilities in logit space (two different networks' P(mirrored))."""
    return sigmoid((logit(p) + logit(q)) / 2).astype(np.float32)


class OrientationDetector:
    """Runs the orientation networks on loader images (CPU): the rotation network, then the
    mirror network on each film turned back by its most likely rotation."""

    def __init__(self, nets: dict, info: OrientationInfo | None = None, *,
                 graphs: dict | None = None):
        self.info = info or OrientationInfo()
        th = self.info.thresholds
        self.rotation_threshold = float(th.get("rotation", 0.9))
        self.mirror_threshold = float(th.get("mirror", 0.9))
        self.mirror_tta = bool(th.get("mirror_tta", False))
        self.mirror_combine = bool(th.get("mirror_combine", False))
        self.size = int(self.info.rotation["input_size"])
        has_mirror = "mirror" in (graphs if graphs is not None else nets)
        self.mirror_size = int(self.info.mirror["input_size"]) if has_mirror else None
        if graphs is not None:  # the cached ONNX Runtime graphs (``from_file``)
            self._rot, self._mir, self.engine_name = graphs["rotation"], graphs.get("mirror"), "onnx"
            return
        from training.gate.orientation_net import torch_callable  # the networks given in PyTorch

        self._rot = torch_callable(nets["rotation"], self.size)
        self._mir = torch_callable(nets["mirror"], self.mirror_size) if "mirror" in nets else None
        self.engine_name = "torch"

    @classmethod
    def from_file(cls, path: str | os.PathLike, engine: str = "auto") -> "OrientationDetector":
        """The file's networks, run from their cached ONNX Runtime graphs (no PyTorch network built, no
        tracing, after the first run), or in PyTorch (``engine="torch"``, or ONNX Runtime unavailable)."""
        contents, info = read_orientation_file(path)
        graphs = _graphs(contents, info, Path(path).name) if engine != "torch" else None
        if graphs is not None:
            return cls({}, info, graphs=graphs)
        from training.gate.orientation_net import networks_of

        return cls(networks_of(contents, info, Path(path).name), info)

    def _inputs(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        big = max(self.size, self.mirror_size or 0)  # one pass over each film; the smaller input from it
        xb = np.concatenate([to_input(im, big) for im in images])

        def at(size):
            return xb if size == big else np.stack([resize_grey(x[0], size)[None] for x in xb])
        return at(self.size), (at(self.mirror_size) if self._mir is not None else None)

    def probabilities(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(the rotation network's ``(N, 8)`` probabilities, P(mirrored) ``(N,)``)."""
        if len(images) == 0:
            return np.zeros((0, N_CLASSES), np.float32), np.zeros(0, np.float32)
        xs, xm = self._inputs(images)
        p8 = softmax(self._rot(xs)).astype(np.float32)
        if self._mir is None:
            return p8, p8[:, 4:].sum(1)
        k = (p8[:, :4] + p8[:, 4:]).argmax(1)
        up = np.ascontiguousarray(np.stack([np.rot90(xm[i], int(k[i]), axes=(-2, -1)) for i in range(len(xm))]))
        pm = sigmoid(self._mir(up)[:, 0]).astype(np.float32)
        if self.mirror_tta:
            pm = 0.5 * (pm + 1 - sigmoid(self._mir(np.ascontiguousarray(up[..., ::-1]))[:, 0]).astype(np.float32))
        if self.mirror_combine:  # with the rotation network's own mirror marginal, in logit space
            pm = _combine(pm, p8[:, 4:].sum(1))
        return p8, pm.astype(np.float32)

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[OrientationResult]:
        p8, pm = self.probabilities(images)
        return [decide(p8[i], self.rotation_threshold, self.mirror_threshold, float(pm[i])) for i in range(len(p8))]

    def detect(self, image: np.ndarray) -> OrientationResult:
        return self.detect_batch([image])[0]


def default_orientation_path() -> Path | None:
    from training.common.resources import resources_dir

    p = resources_dir() / "models" / DEFAULT_ORIENTATION_NAME
    return p if p.is_file() else None


def load_detector(spec: "str | os.PathLike | OrientationDetector | None") -> OrientationDetector | None:
    """``'default'`` -> the shipped orientation model (None when not installed); a path -> that
    file; a detector -> itself; None -> None (no orientation check)."""
    if spec is None or isinstance(spec, OrientationDetector):
        return spec
    if isinstance(spec, str) and spec == "default":
        path = default_orientation_path()
        return OrientationDetector.from_file(path) if path is not None else None
    return OrientationDetector.from_file(spec)


__all__ = ["OrientationResult", "OrientationInfo", "OrientationDetector", "apply_orientation", "decide",
           "read_orientation_info", "read_orientation_file", "load_detector", "default_orientation_path", "to_input",
           "ROTATIONS"]
