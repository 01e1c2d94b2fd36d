"""What CPU this is: its name (printed beside every benchmark figure) and its instruction-set
flags (which precisions are fast on it).  No torch: the GUI thread may ask."""

from __future__ import annotations

import os
import platform
import sys


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


_CHOSEN_THREADS: list[int] = []


def set_compute_threads(n: int) -> None:
    """The intra-op threads of every network run from now on, in this process: ONNX Runtime sessions
    made afterwards, torch now if it is loaded and when it is (``apply_to_torch``).  The app leaves one
    core to its window this way, without importing torch."""
    _CHOSEN_THREADS[:] = [max(1, int(n))]
    apply_to_torch()


def apply_to_torch() -> None:
    """torch's intra-op threads set to :func:`set_compute_threads`'s choice, when there is one and torch is loaded."""
    if _CHOSEN_THREADS and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(_CHOSEN_THREADS[0])


def compute_threads() -> int:
    """Intra-op threads for a network run: :func:`set_compute_threads`'s choice, else torch's setting when
    torch is loaded (``--threads``), else ``OMP_NUM_THREADS``, else the physical cores this process may
    use - without importing torch (its default is the same count on the machines measured here)."""
    if _CHOSEN_THREADS:
        return _CHOSEN_THREADS[0]
    if "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        logical = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        logical = os.cpu_count() or 1
    per_core = {}  # torch counts physical cores: "siblings" logical CPUs share "cpu cores" cores
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("siblings", "cpu cores") and value.strip().isdigit():
            per_core[key.strip()] = int(value)
    if per_core.get("siblings", 0) > per_core.get("cpu cores", 0) > 0:
        logical = logical * per_core["cpu cores"] // per_core["siblings"]
    return max(1, logical)


_BLAS_LIMITED: list = []


def single_threaded_blas() -> None:
    """NumPy's BLAS on one thread, for the rest of the process (once).  The classifier's NumPy matrix
    products (the antialiased resize, Grad-CAM's head) are small and run in the decode threads beside
    ONNX Runtime's own threads; OpenBLAS's worker threads spin while they wait, and on 2 cores they cost
    a 300-film batch about a seventh of its time (300 films: 29.8-31.9 s against 25.9-27.5 s, docs/INFERENCE.md).  ``threadpoolctl``
    sets it in the loaded library; without it, nothing changes."""
    if _BLAS_LIMITED:
        return
    _BLAS_LIMITED.append(True)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency; a bundle without it keeps NumPy's default
        return
    _BLAS_LIMITED.append(threadpool_limits(limits=1, user_api="blas"))


__all__ = ["cpu_name", "cpu_flags", "compute_threads", "set_compute_threads", "apply_to_torch", "single_threaded_blas"]
