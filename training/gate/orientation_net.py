"""The orientation check's networks in PyTorch: ``OrientationNet``, built from an orientation file's
weights (checked against their stored SHA-256), frozen TorchScript for the CPU, and writing the file.

Only training, the tools and a first run (which exports the cached ONNX Runtime graphs,
``training.gate.orientation.OrientationDetector.from_file``) import this module, and with it torch.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from training.common.errors import ModelFileError
from training.gate.orientation import (
    N_CLASSES,
    ORIENT_FORMAT,
    ORIENT_FORMAT_VERSION,
    ORIENT_META_KEY,
    OrientationInfo,
    _names,
    read_orientation_file,
)
from training.model.modelfile import FileContents, state_tensors, verified_tensors, with_tensors, write_tensors


def _cbr(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class OrientationNet(nn.Module):
    """``(N, 1, S, S)`` grey in [0, 1] -> ``(N, 8)`` logits.  Four stride-2 stages of 3x3
    conv + BN + ReLU; the ``(S/16)^2`` positions are kept (flattened, not averaged: where the
    apices, heart and diaphragm lie is the whole point), then two linear layers."""

    def __init__(self, input_size: int = 64, widths: Sequence[int] = (16, 32, 64, 64), hidden: int = 64,
                 dropout: float = 0.2, n_out: int = N_CLASSES):
        super().__init__()
        if input_size % 16:
            raise ValueError("input_size must be a multiple of 16")
        layers: list[nn.Module] = []
        cin = 1
        w = [int(v) for v in widths]
        for i, c in enumerate(w):
            layers.append(_cbr(cin, c, 2))
            if i < len(w) - 1:
                layers.append(_cbr(c, c, 1))
            cin = c
        self.features = nn.Sequential(*layers)
        side = input_size // 16
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin * side * side, hidden),
                                  nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x - 0.5))


def build_net(cfg: dict[str, Any]) -> OrientationNet:
    return OrientationNet(int(cfg["input_size"]), cfg["widths"], int(cfg.get("hidden", 64)),
                          n_out=int(cfg.get("n_out", N_CLASSES)))


def save_orientation(nets: dict[str, nn.Module], info: OrientationInfo, path: str | os.PathLike) -> Path:
    """Both networks' weights (names prefixed ``rotation.`` / ``mirror.``) + metadata, atomically."""
    if not info.created:
        info.created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    meta = {"format": ORIENT_FORMAT, "format_version": ORIENT_FORMAT_VERSION, **info.to_dict()}
    tensors = {f"{name}.{k}": v for name, net in nets.items() for k, v in state_tensors(net).items()}
    return write_tensors(tensors, ORIENT_META_KEY, meta, path)


def networks_of(contents: FileContents, info: OrientationInfo, file_name: str) -> dict[str, OrientationNet]:
    """The networks of an orientation file read by ``read_orientation_file``: weights checked, loaded into our
    builds (names prefixed ``rotation.`` / ``mirror.`` in the file)."""
    tensors = verified_tensors(file_name, with_tensors(contents, file_name), "orientation weights")
    nets = {}
    for name in _names(info):
        sub = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
        if not sub:
            raise ModelFileError(f"{file_name}: the file holds no {name} network.")
        net = build_net(getattr(info, name))
        try:
            net.load_state_dict(sub, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(f"{file_name}: the weights do not fit the orientation network.") from exc
        nets[name] = net.eval()
    return nets


def load_orientation(path: str | os.PathLike) -> tuple[dict[str, OrientationNet], OrientationInfo]:
    """One read of the file; weights checked against their stored SHA-256; the networks rebuilt from our code."""
    contents, info = read_orientation_file(path)
    return networks_of(contents, info, Path(path).name), info


def _freeze(net: nn.Module, size: int) -> nn.Module:
    """TorchScript trace + freeze (BatchNorm folded): faster at batch 1 on the CPU; eager on failure."""
    import warnings

    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            f = torch.jit.freeze(torch.jit.trace(net, torch.zeros(1, 1, size, size)))
            f(torch.zeros(2, 1, size, size))  # warm-up
            return f
    except Exception:  # pragma: no cover - an unusual torch build
        return net


def torch_callable(net: nn.Module, size: int):
    """The network frozen for the CPU, called with a NumPy batch ``(N, 1, S, S)``: NumPy logits."""
    run = _freeze(net.eval(), size)

    def call(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return run(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).float().numpy()

    return call


__all__ = ["OrientationNet", "build_net", "save_orientation", "networks_of", "load_orientation", "torch_callable"]
