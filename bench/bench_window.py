"""The real main window with a model loaded, for the GUI benchmarks
(bench_gui_latency.py, bench_gui_responsiveness.py).  Not a benchmark itself."""

from __future__ import annotations

import sys
from pathlib import Path


def window_with_model(model: Path, device: str, size: tuple[int, int] = (1360, 860)):
    """(app, window) with ``model`` loaded on ``device``; (app, None) after
    printing the reason when the model does not load."""
    from PySide6.QtCore import QEventLoop

    from xray_gui.app import _make_app
    from xray_gui.main_window import MainWindow
    from xray_gui.settings import AppSettings

    app = _make_app("bench")
    settings = AppSettings()
    settings.device = device
    win = MainWindow(settings, dialogs=False)
    win.resize(*size)
    win.show()
    loop = QEventLoop()
    win.models.settled.connect(loop.quit)
    win.open_model(model)
    loop.exec()
    if win.models.classifier is None:
        print("model failed:", win.models.last_error, file=sys.stderr)
        win.close()
        return app, None
    return app, win
