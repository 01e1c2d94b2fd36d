"""What CPU this is: its name (printed beside every benchmark figure) and its instruction-set
flags (which precisions are fast on it).  No torch: the GUI thread may ask."""

from __future__ import annotations

import platform


def _cpuinfo() -> str:
    try:
        return open("/proc/cpuinfo", encoding="ascii", errors="ignore").read()
    except OSError:
        return ""


def cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> set[str]:
    """The CPU's instruction-set flags (``/proc/cpuinfo`` names, e.g. ``avx2``, ``avx512_vnni``,
    ``amx_bf16``); empty where the system does not list them."""
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


__all__ = ["cpu_name", "cpu_flags"]
