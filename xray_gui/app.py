"""Start-up: command line, QApplication, the main window, screenshot mode.

The window appears at once; torch is imported and the model loaded in a
worker meanwhile (the window says "loading model…").

    xray-gui [FILE] [--model M] [--device auto|cuda|cpu]
    xray-gui --screenshot OUT.png [FILE] [--model M]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from . import APP_NAME, ORG_NAME


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xray-gui", description=f"{APP_NAME} (research use only — not a diagnosis)")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="image(s) (PNG, JPEG, BMP, TIFF, DICOM) or folder(s) to open at start; several start a batch")
    p.add_argument("--model", metavar="M", help="model file (.safetensors) to use instead of the default")
    from training.common.constants import APP_DEVICES

    p.add_argument("--device", choices=APP_DEVICES, help="where the model runs (default: settings)")
    p.add_argument("--screenshot", metavar="OUT.png",
                   help="open FILE, wait for the prediction and heatmap, save a screenshot of the window, exit")
    p.add_argument("--screenshot-batch", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--screenshot-timeout", type=float, default=600.0, help=argparse.SUPPRESS)
    p.add_argument("--size", default="1360x860", help=argparse.SUPPRESS)
    return p


def _make_app(argv0: str):
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtWidgets import QApplication

    QCoreApplication.setOrganizationName(ORG_NAME)
    QCoreApplication.setApplicationName(APP_NAME)
    app = QApplication.instance() or QApplication([argv0])
    app.setApplicationDisplayName(APP_NAME)
    from .appicon import ICON_NAME, app_icon  # window icon + Wayland app id = the .desktop file's name

    app.setWindowIcon(app_icon())
    app.setDesktopFileName(ICON_NAME)
    return app


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from urllib.parse import unquote, urlparse

    # a launcher passing %u/%U gives file:// URLs
    args.files = [unquote(urlparse(f).path) if f.startswith("file://") else f for f in args.files]
    args.file = args.files[0] if args.files else None
    shooting = bool(args.screenshot)
    if shooting and not os.environ.get("XRAY_SETTINGS"):
        # screenshots neither read nor change the user's settings
        os.environ["XRAY_SETTINGS"] = str(Path(tempfile.mkdtemp(prefix="xray-gui-")) / "settings.ini")
    app = _make_app(sys.argv[0] if sys.argv else "xray-gui")

    from .main_window import MainWindow
    from .settings import AppSettings

    win = MainWindow(AppSettings(), dialogs=not shooting)
    if args.device:  # this run only; the Settings menu changes the remembered device
        win.models.device = args.device
    if shooting:
        w, _, h = args.size.partition("x")
        win.resize(int(w), int(h))
    win.show()

    if shooting:
        from .screenshot import Screenshot

        shot = Screenshot(win, Path(args.screenshot), file=args.file, batch_dir=args.screenshot_batch,
                          model=args.model, timeout_s=args.screenshot_timeout)
        shot.start()
        app.exec()
        return shot.exit_code

    win.start_model(args.model)
    if args.files:
        win.open_paths(args.files)
    return app.exec()
