"""Device choice: CUDA, then Apple MPS, then CPU; overridable.

:func:`cpu_without_asking_torch` answers "will this choice run on the CPU?" without importing
torch (1.6-3.5 s on a 2-core CPU), for a start-up that runs every network from cached ONNX
Runtime graphs: ``'cpu'``, or ``'auto'`` on a computer with no NVIDIA driver loaded (Linux:
``/proc/driver/nvidia/version``; Windows: ``nvcuda.dll``) and not an Apple-silicon Mac (MPS).
Anything else asks torch (:func:`pick_device`).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from training.common.constants import DEVICE_CHOICES  # noqa: E402,F401  (the one list)
from training.common.errors import XrayError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def cpu_without_asking_torch(preference: str = "auto") -> bool:
    """True when ``preference`` certainly means the CPU, decided without importing torch (module doc)."""
    pref = (preference or "auto").strip().lower()
    if pref == "cpu":
        return True
    if pref != "auto":
        return False
    if sys.platform == "darwin":
        return platform.machine() != "arm64"
    if sys.platform == "win32":
        root = os.environ.get("SystemRoot") or r"C:\Windows"
        return not Path(root, "System32", "nvcuda.dll").exists()
    return not Path("/proc/driver/nvidia/version").exists() and not Path("/dev/nvidiactl").exists()


def cuda_available() -> bool | None:
    """Whether CUDA can run here: torch's answer when torch is loaded; False without an NVIDIA driver
    (decided without torch); None (not known yet) otherwise - choosing it then asks torch."""
    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    if cpu_without_asking_torch("auto") and sys.platform != "darwin":
        return False
    return None


def pick_device(preference: str = "auto") -> "torch.device":
    """Return the device for ``preference`` ('auto', 'cuda', 'cuda:1', 'mps', 'cpu').

    Raises ``XrayError`` with a readable reason when the requested device is
    not available on this computer."""
    import torch

    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise XrayError("CUDA was requested but no NVIDIA GPU is available on this computer.", code="device")
        return torch.device(pref)
    if pref == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise XrayError("Apple MPS was requested but is not available on this computer.", code="device")
        return torch.device("mps")
    if pref == "cpu":
        return torch.device("cpu")
    raise XrayError(f"Unknown device '{preference}'. Use one of: auto, cuda, mps, cpu.", code="device")


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matrix instructions (AVX-512 BF16 / AMX)."""
    from training.common.cpu import cpu_flags

    if cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        return True
    try:  # macOS / other: ask oneDNN through torch
        import torch

        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False
