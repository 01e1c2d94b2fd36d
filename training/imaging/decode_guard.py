"""Run a decoder that may hang or crash in a worker process with a time limit.

Compressed DICOM pixel data is decoded by C libraries (openjpeg, libjpeg,
CharLS) behind pure-Python parsing in pydicom.  A damaged file can make either
loop for ever or crash the process; a thread cannot be stopped, so such a
decode would hold a batch, the app's worker pool and process exit hostage.
:func:`run` instead sends the job to a small pool of worker processes:

* the caller waits at most ``timeout`` seconds; then the worker is killed and
  :class:`DecodeTimeout` raised (a fresh worker serves the next job);
* a worker that dies (segfault, out of memory) raises :class:`DecodeCrashed`;
* an exception inside the job comes back as :class:`DecodeFailed` carrying
  the exception's type name and message;
* :func:`abandon` (window closed) and :func:`shutdown` (Ctrl-C, interpreter
  exit) kill every worker at once, so threads waiting on them return
  immediately.

Workers are separate interpreters (``python -m training.imaging.decode_guard``; no
fork of a process that runs Qt or torch threads, and unlike multiprocessing's
``spawn`` they never re-import the caller's main script), started lazily and
reused, so the start cost (measured in docs/LOADER.md) is paid once per
decoding thread, not per file.  Each worker ignores SIGINT (the parent decides) and arms an
alarm of ``timeout + 10 s`` per job, so it ends itself even if its parent was
killed without cleaning up.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["DECODE_TIMEOUT_S", "DecodeTimeout", "DecodeCrashed", "DecodeFailed", "DecodeAbandoned",
           "GuardUnavailable", "run",
           "dicom_pixel_array", "abandon", "shutdown", "worker_command", "worker_main"]

DECODE_TIMEOUT_S = 30.0  # a 64-megapixel JPEG 2000: about 10 s here (extrapolated: 4.3 MP take 0.7 s)
_SELF_DESTRUCT_GRACE_S = 10
_START_TIMEOUT_S = 60.0  # a worker that is not running after this is given up (decoding then stays in-process)
_WORKER_MEMORY_LIMIT = 6 << 30  # address space of a worker (decoded images are at most ~0.5 GB)


class DecodeTimeout(Exception):
    """The job ran past its time limit; the worker was killed."""


class DecodeCrashed(Exception):
    """The worker process died during the job (crash, killed, out of memory)."""


class DecodeAbandoned(Exception):
    """:func:`shutdown` was called: no more jobs are run."""


class GuardUnavailable(Exception):
    """No worker process can be started here (not a POSIX system, or starting
    one failed): the caller decodes in its own process instead."""


class DecodeFailed(Exception):
    """The job raised; ``type_name`` and ``message`` describe the original exception."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


# ------------------------------------------------------------------ worker side


def _serve(inbox, outbox) -> None:
    """Worker process main loop: receive (func, args, limit), send the outcome."""
    import warnings

    warnings.simplefilter("ignore")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    has_alarm = hasattr(signal, "alarm")
    if has_alarm:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # default action: the process ends
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = _WORKER_MEMORY_LIMIT if hard == resource.RLIM_INFINITY else min(hard, _WORKER_MEMORY_LIMIT)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass
    while True:
        try:
            func, args, limit_s = inbox.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if has_alarm:
            signal.alarm(int(limit_s) + _SELF_DESTRUCT_GRACE_S)
        try:
            reply = ("ok", func(*args))
        except MemoryError:
            reply = ("error", "MemoryError", "not enough memory")
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            reply = ("error", type(exc).__name__, str(exc)[:500])
        if has_alarm:
            signal.alarm(0)
        try:
            outbox.send(reply)
        except MemoryError:
            outbox.send(("error", "MemoryError", "not enough memory"))
        except (OSError, EOFError):
            return


def worker_main() -> int:
    """Entry point of a worker process: jobs arrive on stdin, results leave on
    stdout (pickled, length-prefixed); anything the job prints goes to stderr."""
    from multiprocessing.connection import Connection

    out_fd = os.dup(1)
    os.dup2(2, 1)  # a stray print must not corrupt the result stream
    sys.stdout = sys.stderr
    outbox = Connection(out_fd, readable=False)
    outbox.send("ready")
    _serve(Connection(0, writable=False), outbox)
    return 0


def dicom_pixel_array(path: str):
    """The job for compressed DICOMs: read the file, return ``ds.pixel_array``."""
    import pydicom

    return pydicom.dcmread(path, force=True).pixel_array


# ------------------------------------------------------------------ parent side

WORKER_FLAG = "--xray-decode-worker"  # a frozen app (PyInstaller) starts its own executable with this


def worker_command() -> list[str]:
    """The command that starts a worker: ``python -m training.imaging.decode_guard``, or
    the frozen app's executable with :data:`WORKER_FLAG` (see packaging/)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, WORKER_FLAG]
    return [sys.executable, "-m", "training.imaging.decode_guard", WORKER_FLAG]


class _Worker:
    def __init__(self) -> None:
        from multiprocessing.connection import Connection

        self.abandoned = False
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")  # one decode per worker; no BLAS thread pools (they reserve memory per core)
        if not getattr(sys, "frozen", False):  # the worker imports this very copy of the package
            here = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     close_fds=True, env=env)
        self.outbox = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self.inbox = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.proc.stdin.close()
        self.proc.stdout.close()
        try:  # the worker says "ready" once it runs: a worker that cannot start is not a crashing decoder
            ready = self.inbox.poll(_START_TIMEOUT_S) and self.inbox.recv() == "ready"
        except (OSError, EOFError):
            ready = False
        if not ready:
            self.kill()
            raise OSError(f"the decode worker did not start (exit code {self.proc.poll()})")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(2.0)
        except Exception:  # already gone
            pass
        for conn in (self.outbox, self.inbox):
            try:
                conn.close()
            except Exception:
                pass


_lock = threading.Lock()
_idle: list[_Worker] = []
_busy: set[_Worker] = set()
_closed = False


def _take() -> _Worker:
    with _lock:
        if _closed:
            raise DecodeAbandoned("the program is stopping")
        while _idle:
            w = _idle.pop()
            if w.alive():
                _busy.add(w)
                return w
            w.kill()
    if os.name != "posix":  # the pipe protocol uses file descriptors (multiprocessing.connection, Unix only)
        raise GuardUnavailable("decode workers need a POSIX system")
    try:
        w = _Worker()  # started outside the lock: other threads may take idle workers meanwhile
    except OSError as exc:
        raise GuardUnavailable(f"cannot start a decode worker ({exc})") from exc
    with _lock:
        if _closed:
            w.kill()
            raise DecodeAbandoned("the program is stopping")
        _busy.add(w)
    return w


def _give_back(w: _Worker, keep: bool) -> None:
    with _lock:
        _busy.discard(w)
        if keep and not _closed:
            _idle.append(w)
            return
    w.kill()


def run(func: Callable[..., Any], *args, timeout: float = DECODE_TIMEOUT_S) -> Any:
    """``func(*args)`` in a worker process, waiting at most ``timeout`` seconds.

    ``func`` must be importable by name (a module-level function) and its
    arguments and result picklable.  Raises :class:`DecodeTimeout`,
    :class:`DecodeCrashed`, :class:`DecodeFailed`, :class:`DecodeAbandoned`, or
    :class:`GuardUnavailable` before running anything when no worker can be started.
    """
    w = _take()
    keep = False
    try:
        started = time.monotonic()
        try:
            w.outbox.send((func, args, timeout))
            ready = w.inbox.poll(max(0.0, float(timeout)))
        except (OSError, EOFError, ValueError):
            ready = True  # the worker went away; recv below says how
        if not ready:
            if w.abandoned:
                raise DecodeAbandoned("the program is stopping")
            raise DecodeTimeout(f"no result after {time.monotonic() - started:.0f} s")
        try:
            reply = w.inbox.recv()
        except (OSError, EOFError, ValueError):
            if w.abandoned or _closed:
                raise DecodeAbandoned("the program is stopping") from None
            raise DecodeCrashed(f"the decoding process ended unexpectedly (exit code {w.proc.poll()})") from None
        keep = True
    finally:
        _give_back(w, keep)
    if reply[0] == "ok":
        return reply[1]
    raise DecodeFailed(reply[1], reply[2])


def abandon() -> None:
    """Kill every worker now, idle or busy: threads waiting on one get
    :class:`DecodeAbandoned` at once.  Later jobs start fresh workers.  The
    app calls this when its window closes, before waiting for its threads."""
    with _lock:
        idle, busy = list(_idle), list(_busy)
        _idle.clear()
        for w in busy:
            w.abandoned = True
    for w in idle:
        w.kill()
    for w in busy:  # only the process: its pipes belong to the thread waiting on them, which closes them
        try:
            w.proc.kill()
        except OSError:
            pass


def shutdown() -> None:
    """:func:`abandon`, and no further jobs (:func:`run` raises
    :class:`DecodeAbandoned`).  Called by ``xray-classify`` on Ctrl-C / SIGTERM
    and at interpreter exit."""
    global _closed
    with _lock:
        _closed = True
    abandon()


def reset_for_tests() -> None:
    """Re-open the pool after :func:`shutdown` (tests only)."""
    global _closed
    shutdown()
    with _lock:
        _closed = False


def pool_size() -> int:
    """Worker processes alive now (idle + busy)."""
    with _lock:
        return sum(1 for w in list(_idle) + list(_busy) if w.alive())


atexit.register(shutdown)

if __name__ == "__main__" and WORKER_FLAG in sys.argv[1:]:
    sys.exit(worker_main())
