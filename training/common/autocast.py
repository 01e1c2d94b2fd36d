"""Numeric precision: the one rule for choosing it and the one autocast context,
for training, inference, the wizard's estimate and the benchmarks.

* CUDA: fp16 autocast (AMP, with a gradient scaler in training).
* CPU with native bf16 instructions (``avx512_bf16`` / ``amx_bf16``): bf16
  autocast - measured 2.3x faster than fp32 for a ResNet50 training step on an
  AMX Xeon (docs/TRAINING.md).
* Any other CPU (e.g. AVX2-only, where bf16 is emulated and several times
  slower): fp32.
"""

from __future__ import annotations

import contextlib

import torch

from training.common.device import cpu_supports_bf16

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def choose_precision(requested: str, device: torch.device) -> str:
    """``'auto'`` -> the fastest safe precision on ``device``; anything else as asked."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "fp16"
    if device.type == "cpu" and cpu_supports_bf16():
        return "bf16"
    return "fp32"


def autocast(precision: str, device: torch.device):
    """The autocast context for ``precision`` on ``device`` (fp32: none; fp16 only on CUDA)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def mixed_precision_for(device: torch.device, mixed: bool | None) -> str:
    """An inference switch -> precision: ``None`` automatic, ``False`` fp32,
    ``True`` the device's low precision (fp16 on CUDA, bf16 on CPU)."""
    if mixed is None:
        return choose_precision("auto", device)
    if not mixed:
        return "fp32"
    return "fp16" if device.type == "cuda" else "bf16" if device.type == "cpu" else "fp32"


__all__ = ["PRECISIONS", "choose_precision", "autocast", "mixed_precision_for"]
