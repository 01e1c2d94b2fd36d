"""The lung segmenter's network in PyTorch: MONAI's ``BasicUNet``, built from a segmenter file's
weights (checked against their stored SHA-256), its forward pass that also returns the gate's
bottleneck features, the frozen TorchScript for the CPU, and writing a segmenter file.

Only training, calibration and a first run (which exports the cached ONNX Runtime graph,
``training.gate.segmenter.LungSegmenter.from_file``) import this module, and with it torch and MONAI.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from training.common.errors import ModelFileError
from training.gate.segmenter import (
    SEG_FEATURES,
    SEG_FORMAT,
    SEG_FORMAT_VERSION,
    SEG_META_KEY,
    SegmenterInfo,
    read_segmenter_file,
)
from training.model.modelfile import FileContents, state_tensors, verified_tensors, with_tensors, write_tensors


def build_segmenter(features=SEG_FEATURES) -> nn.Module:
    """MONAI's BasicUNet for one grey channel in, one lung logit out."""
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=tuple(int(f) for f in features),
                     act=("LeakyReLU", {"negative_slope": 0.1, "inplace": True}), norm=("instance", {"affine": True}),
                     dropout=0.0)


def save_segmenter(model: nn.Module, info: SegmenterInfo, path: str | os.PathLike) -> Path:
    """Write weights (fp32; the network is small) + metadata atomically."""
    if not info.created:
        info.created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    meta = {"format": SEG_FORMAT, "format_version": SEG_FORMAT_VERSION, **info.to_dict()}
    return write_tensors(state_tensors(model), SEG_META_KEY, meta, path)


def network_of(contents: FileContents, info: SegmenterInfo, name: str) -> nn.Module:
    """The network of a segmenter file read by ``read_segmenter_file``: weights checked, loaded into our build."""
    tensors = verified_tensors(name, with_tensors(contents, name), "segmenter weights")
    net = build_segmenter(info.features)
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{name}: the weights do not fit this program's lung segmenter.") from exc
    return net.eval()


def load_segmenter_module(path: str | os.PathLike) -> tuple[nn.Module, SegmenterInfo]:
    """One read of the file; weights checked against their stored SHA-256; the network rebuilt from our code."""
    contents, info = read_segmenter_file(path)
    return network_of(contents, info, Path(path).name), info


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


def torch_forward(net: nn.Module, device: str, size: int):
    """``(net on device, forward)``: ``forward(x)`` takes a NumPy batch ``(N, 1, S, S)`` and gives NumPy
    (logits, features) - the frozen TorchScript of :class:`SegmentAndPool` on the CPU, eager elsewhere."""
    dev = torch.device(device)
    net = net.eval().to(dev)
    module = SegmentAndPool(net)
    run = freeze_for_cpu(module, size) if dev.type == "cpu" else module

    def forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            logits, feats = run(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev))
            return logits.float().cpu().numpy(), feats.float().cpu().numpy()

    return net, forward


__all__ = ["build_segmenter", "save_segmenter", "network_of", "load_segmenter_module", "SegmentAndPool",
           "freeze_for_cpu", "torch_forward"]
