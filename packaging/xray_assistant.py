"""Entry point of the packaged app (PyInstaller bundle ``xray-assistant``).

Same as ``xray-gui``: ``xray_gui.__main__.main`` with its start-up error guard
(a log file and a message box instead of a vanished window).

``XRAY_STARTUP_TIMING=1`` prints to stderr how long after the process started
the main window was shown, the first event-loop pass ran and the model was
ready (used for the figures in docs/PACKAGING.md).
"""

import os
import sys
import time


def _process_age() -> float:
    """Seconds since this process started (Linux: from /proc, including the bootloader)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rpartition(")")[2].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _T0 + _AGE0


_T0, _AGE0 = time.perf_counter(), 0.0
_AGE0 = _process_age()


def _instrument() -> None:
    from PySide6.QtCore import QTimer

    from xray_gui import main_window

    def say(what: str) -> None:
        print(f"startup-timing: {what} {_process_age():.2f} s after the process started "
              f"(Python entry point reached at {_AGE0:.2f} s)", file=sys.stderr, flush=True)

    show = main_window.MainWindow.show

    def timed_show(self):
        show(self)
        say("window shown")
        QTimer.singleShot(0, lambda: say("first event-loop pass (window usable)"))
        self.models.changed.connect(lambda *_: say("model ready"))

    main_window.MainWindow.show = timed_show


if __name__ == "__main__":
    from training.imaging.decode_guard import WORKER_FLAG

    if sys.argv[1:2] == [WORKER_FLAG]:  # a decode worker process (training/imaging/decode_guard.py), not the app
        from training.imaging.decode_guard import worker_main

        sys.exit(worker_main())
    if os.environ.get("XRAY_STARTUP_TIMING") == "1":
        _instrument()
    from xray_gui.__main__ import main

    sys.exit(main())
