"""Orientation check for frontal chest radiographs: is the film as stored
rotated by 0 / 90 / 180 / 270 degrees, and is it mirrored left-right?

The research module that trained the shipped file; the network, its input and
:func:`apply_orientation` are the product's (``training.gate.orientation``), imported, not copied.

Input contract: the project's loader output, a grey ``numpy.float32`` array
``(H, W)`` in ``[0, 1]``, 1 = white (MONOCHROME1 already inverted).  The image
is resized (bilinear, antialiased, aspect ratio not kept, as
``training.preprocess.resize_grey`` does) to 96 px and 64 px.  A tiny CNN (the
rotation net, 64 px) gives one softmax over the 8 ways a film can be stored
(the dihedral group D4):

    class = k + 4 * m,   k in 0..3 (rotation_deg = 90 * k), m in {0, 1} (mirrored)

and a second tiny CNN (the mirror net, 96 px) looks at the film turned back by
the most likely rotation and gives P(mirrored) (see ``OrientationDetector``).

Meaning of the labels (what :func:`apply_orientation` does to an upright,
correctly displayed film): first mirror left-right if ``m``, then rotate
``90 * k`` degrees CLOCKWISE.  To repair a stored film, rotate it back
counter-clockwise by ``rotation_deg`` and then un-mirror it
(:func:`undo_orientation`).  On a correct PA film as displayed the heart shadow
is on the image's right (the patient's left); ``mirrored`` means it is on the
image's left (for a film that is not rotated).

Decisions (``OrientationResult.rotation_deg`` / ``.mirrored``) only leave the
default "upright, not mirrored" when the network is confident: rotation when
``P(rotation = argmax) >= rotation_threshold`` and argmax != 0, mirror when
``P(mirrored) >= mirror_threshold``.  The thresholds were chosen on a
validation split of the training films and are stored in the model file.

Model file: ``.safetensors`` (never pickle) with ``__metadata__``:
``xray_orientation`` = JSON (format, architecture, input size, thresholds,
training data, validation metrics) and ``weights_sha256`` (checked on load).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from training.gate.orientation import apply_orientation, to_input  # noqa: F401  (the one copy)
from training.gate.orientation_net import OrientationNet  # noqa: F401  (the one copy)
from training.model.modelfile import weights_digest as _weights_digest  # the project's one weights digest

FORMAT = "xray-orientation"
FORMAT_VERSION = 1
META_KEY = "xray_orientation"
ROTATIONS = (0, 90, 180, 270)
N_CLASSES = 8
DEFAULT_INPUT_SIZE = 64
DEFAULT_WIDTHS = (16, 32, 64, 64)
DEFAULT_MODEL_PATH = Path(__file__).resolve().with_name("orientation.safetensors")
# conservative defaults, replaced by the thresholds stored in the model file
DEFAULT_ROTATION_THRESHOLD = 0.9
DEFAULT_MIRROR_THRESHOLD = 0.9


# --------------------------------------------------------------------------- labels / geometry

def class_index(rotation_deg: int, mirrored: bool) -> int:
    if rotation_deg not in ROTATIONS:
        raise ValueError(f"rotation_deg must be one of {ROTATIONS}, got {rotation_deg!r}")
    return ROTATIONS.index(rotation_deg) + 4 * int(bool(mirrored))


def undo_orientation(image: np.ndarray, rotation_deg: int, mirrored: bool) -> np.ndarray:
    """Stored film -> upright: rotate back (counter-clockwise) by
    ``rotation_deg``, then un-mirror.  Inverse of :func:`apply_orientation`."""
    k = ROTATIONS.index(int(rotation_deg))
    out = np.rot90(image, k)
    if mirrored:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def d4_torch(x: torch.Tensor, rotation_deg: int, mirrored: bool) -> torch.Tensor:
    """:func:`apply_orientation` for tensors ``(..., H, W)``."""
    k = ROTATIONS.index(int(rotation_deg))
    if mirrored:
        x = x.flip(-1)
    return torch.rot90(x, -k, dims=(-2, -1)) if k else x


# --------------------------------------------------------------------------- network

# --------------------------------------------------------------------------- result

@dataclass
class OrientationResult:
    """``rotation_deg``: the film as stored is rotated by this many degrees
    clockwise; rotate it back by this much (counter-clockwise) to make it
    upright.  0 unless the network is confident (see the thresholds).
    ``p_rotation``: P per rotation class (0, 90, 180, 270), summed over mirror.
    ``mirrored``: the film is stored mirrored left-right (decision).
    ``p_mirrored``: P(mirrored), summed over rotations.
    ``rotation_argmax`` / ``p_class``: the raw most likely rotation and the
    8-way probabilities (index ``k + 4 * m``), for logging / review.
    ``review``: the most likely reading is not "upright, not mirrored" but the
    evidence was below a threshold, so nothing was changed."""

    rotation_deg: int
    p_rotation: tuple[float, float, float, float]
    mirrored: bool
    p_mirrored: float
    rotation_argmax: int = 0
    p_class: tuple[float, ...] = ()
    review: bool = False

    @property
    def changed(self) -> bool:
        return self.rotation_deg != 0 or self.mirrored

    def undo(self, image: np.ndarray) -> np.ndarray:
        """The stored film made upright according to this result."""
        return undo_orientation(image, self.rotation_deg, self.mirrored)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def result_from_probs(p8: np.ndarray, rotation_threshold: float, mirror_threshold: float,
                      p_mirrored: float | None = None) -> OrientationResult:
    p8 = np.asarray(p8, dtype=np.float64)
    p_rot = p8[:4] + p8[4:]
    p_mir = float(p8[4:].sum()) if p_mirrored is None else float(p_mirrored)
    k = int(np.argmax(p_rot))
    turn = k != 0 and p_rot[k] >= rotation_threshold
    mirrored = p_mir >= mirror_threshold
    review = (k != 0 and not turn) or (p_mir >= 0.5 and not mirrored)
    return OrientationResult(rotation_deg=ROTATIONS[k] if turn else 0,
                             p_rotation=tuple(float(v) for v in p_rot),  # type: ignore[arg-type]
                             mirrored=bool(mirrored), p_mirrored=p_mir, rotation_argmax=ROTATIONS[k],
                             p_class=tuple(float(v) for v in p8), review=bool(review))


# --------------------------------------------------------------------------- model file

NETS = ("rotation", "mirror")


def build_net(cfg: dict[str, Any]) -> OrientationNet:
    return OrientationNet(int(cfg["input_size"]), cfg["widths"], int(cfg.get("hidden", 64)),
                          float(cfg.get("dropout", 0.2)), int(cfg.get("n_out", N_CLASSES)))


def save_model(nets: dict[str, OrientationNet], meta: dict[str, Any], path: str | os.PathLike) -> Path:
    """Both networks' weights (fp32, names prefixed ``rotation.`` / ``mirror.``)
    + JSON metadata, written atomically.  ``meta[name]`` must describe each
    network (``input_size``, ``widths``, ``hidden``, ``n_out``)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for name, net in nets.items():
        if name not in NETS or name not in meta or "input_size" not in meta[name] or "widths" not in meta[name]:
            raise ValueError(f"metadata needs an architecture entry for {name!r}")
        for k, v in net.state_dict().items():
            v = v.detach().cpu().contiguous()
            tensors[f"{name}.{k}"] = v.float() if v.is_floating_point() else v
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    header = {META_KEY: json.dumps(full, sort_keys=True), "weights_sha256": _weights_digest(tensors)}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=p.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        header = fh.metadata() or {}
    if META_KEY not in header:
        raise ValueError(f"{Path(path).name} is not an orientation model file")
    meta = json.loads(header[META_KEY])
    if meta.get("format") != FORMAT or int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{Path(path).name}: unsupported format {meta.get('format')!r} v{meta.get('format_version')}")
    return meta


def load_model(path: str | os.PathLike = DEFAULT_MODEL_PATH) -> tuple[dict[str, OrientationNet], dict[str, Any]]:
    """Rebuild the networks from our code and load checked weights (no code
    is ever read from the file).  Returns ``({"rotation": net, ["mirror": net]}, meta)``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    meta = read_metadata(path)
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as fh:
        want = (fh.metadata() or {}).get("weights_sha256")
    if want != _weights_digest(tensors):
        raise ValueError(f"{Path(path).name}: weights do not match their stored SHA-256")
    nets = {}
    for name in NETS:
        sub = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
        if not sub:
            continue
        net = build_net(meta[name])
        net.load_state_dict(sub, strict=True)
        nets[name] = net.eval()
    if "rotation" not in nets:
        raise ValueError(f"{Path(path).name}: no rotation network")
    return nets, meta


# --------------------------------------------------------------------------- detector

def _freeze(net: nn.Module, size: int) -> nn.Module:
    """TorchScript trace + freeze (BN folded into the convolutions): faster at
    batch 1 on the CPU; falls back to the eager module."""
    import warnings

    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # trace / freeze deprecation notices
            f = torch.jit.freeze(torch.jit.trace(net, torch.zeros(1, 1, size, size)))
            f(torch.zeros(2, 1, size, size))  # warm-up (oneDNN prepacking)
            return f
    except Exception:  # pragma: no cover - unusual torch build
        return net


def combine_mirror(p_net, p_rot_net):
    """Average in logit space of the mirror net's P(mirrored) and the rotation
    net's mirror marginal (two different networks; works on tensors and arrays)."""
    lib = torch if isinstance(p_net, torch.Tensor) else np
    lg = lambda p: lib.log(lib.clip(p, 1e-6, 1 - 1e-6)) - lib.log(lib.clip(1 - p, 1e-6, 1))  # noqa: E731
    return 1 / (1 + lib.exp(-(lg(p_net) + lg(p_rot_net)) / 2))


class OrientationDetector:
    """Runs the orientation networks on loader images (CPU).

    Step 1, rotation network (8-way, small input): P over the 4 rotations
    (summed over mirror).  Step 2, mirror network (2-way, larger input): run on
    the film turned back by the most likely rotation, so it only ever sees
    upright films; P(mirrored) = its sigmoid, averaged with the
    mirrored input's answer (``p(x) + 1 - p(flip x)) / 2``: left-right
    antisymmetric by construction) when ``mirror_tta``, and averaged in logit
    space with the rotation net's own mirror marginal when ``mirror_combine``
    (both switches stored with the thresholds, chosen on validation).  Without
    a mirror network P(mirrored) is the rotation network's mirror marginal."""

    def __init__(self, nets: dict[str, OrientationNet] | OrientationNet, meta: dict[str, Any] | None = None, *,
                 rotation_threshold: float | None = None, mirror_threshold: float | None = None,
                 mirror_tta: bool | None = None, freeze: bool = True):
        if isinstance(nets, nn.Module):
            nets = {"rotation": nets}
        meta = dict(meta or {})
        self.meta = meta
        self.size = int(meta.get("rotation", {}).get("input_size", DEFAULT_INPUT_SIZE))
        self.mirror_size = int(meta["mirror"]["input_size"]) if "mirror" in nets else None
        th = meta.get("thresholds", {})
        self.rotation_threshold = float(rotation_threshold if rotation_threshold is not None
                                        else th.get("rotation", DEFAULT_ROTATION_THRESHOLD))
        self.mirror_threshold = float(mirror_threshold if mirror_threshold is not None
                                      else th.get("mirror", DEFAULT_MIRROR_THRESHOLD))
        self.mirror_tta = bool(mirror_tta if mirror_tta is not None else th.get("mirror_tta", False))
        self.mirror_combine = bool(th.get("mirror_combine", False))
        self.nets = {k: v.eval() for k, v in nets.items()}
        self._rot = _freeze(self.nets["rotation"], self.size) if freeze else self.nets["rotation"]
        self._mir = None
        if "mirror" in self.nets:
            self._mir = _freeze(self.nets["mirror"], self.mirror_size) if freeze else self.nets["mirror"]

    @classmethod
    def from_file(cls, path: str | os.PathLike = DEFAULT_MODEL_PATH, **kw) -> "OrientationDetector":
        nets, meta = load_model(path)
        return cls(nets, meta, **kw)

    def inputs(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The networks' inputs: (N, 1, size, size) and, with a mirror net,
        (N, 1, mirror_size, mirror_size); the small one is made from the
        large one (one pass over the film)."""
        big = max(self.size, self.mirror_size or 0)
        xb = torch.cat([to_input(im, big) for im in images])
        xs = xb if big == self.size else F.interpolate(xb, size=(self.size, self.size), mode="bilinear",
                                                       align_corners=False, antialias=True)
        xm = None
        if self._mir is not None:
            xm = xb if big == self.mirror_size else F.interpolate(xb, size=(self.mirror_size,) * 2, mode="bilinear",
                                                                  align_corners=False, antialias=True)
        return xs, xm

    def run(self, xs: torch.Tensor, xm: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
        """-> (p8 of the rotation net (N, 8), P(mirrored) (N,))."""
        with torch.inference_mode():
            p8 = torch.softmax(self._rot(xs).float(), dim=1)
            if self._mir is None or xm is None:
                return p8.numpy(), p8[:, 4:].sum(1).numpy()
            k = (p8[:, :4] + p8[:, 4:]).argmax(1)
            # turn each film back by its most likely rotation (counter-clockwise k * 90)
            up = torch.stack([torch.rot90(xm[i], int(k[i]), dims=(-2, -1)) for i in range(len(xm))])
            z = self._mir(up).float()[:, 0]
            pm = torch.sigmoid(z)
            if self.mirror_tta:
                pm = 0.5 * (pm + 1 - torch.sigmoid(self._mir(up.flip(-1)).float()[:, 0]))
            if self.mirror_combine:
                pm = combine_mirror(pm, p8[:, 4:].sum(1))
            return p8.numpy(), pm.numpy()

    def probabilities(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if len(images) == 0:
            return np.zeros((0, N_CLASSES), np.float32), np.zeros(0, np.float32)
        return self.run(*self.inputs(images))

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[OrientationResult]:
        p8, pm = self.probabilities(images)
        return [result_from_probs(p8[i], self.rotation_threshold, self.mirror_threshold, float(pm[i]))
                for i in range(len(p8))]

    def detect(self, image: np.ndarray) -> OrientationResult:
        return self.detect_batch([image])[0]


_DEFAULT: OrientationDetector | None = None


def _default_detector() -> OrientationDetector:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = OrientationDetector.from_file(DEFAULT_MODEL_PATH)
    return _DEFAULT


def detect(image: np.ndarray, detector: OrientationDetector | None = None) -> OrientationResult:
    """One loader image ``(H, W)`` float32 in [0, 1] (1 = white) -> result.
    Uses the model file next to this module unless ``detector`` is given."""
    return (detector or _default_detector()).detect(image)


def detect_batch(images: Sequence[np.ndarray], detector: OrientationDetector | None = None) -> list[OrientationResult]:
    return (detector or _default_detector()).detect_batch(images)


__all__ = ["OrientationNet", "OrientationResult", "OrientationDetector", "detect", "detect_batch",
           "apply_orientation", "undo_orientation", "class_index", "save_model", "load_model", "read_metadata",
           "to_input", "ROTATIONS"]
