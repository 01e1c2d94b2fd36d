"""Screenshots of the windows the radiologist's review changed (issue 13), with
the shipped model, for docs/screenshots:

* ``fullscreen_<size>.png``  - View > Full Screen Image (F11) on a 2k DICOM
* ``switch_<size>.png``      - File > Open Model… asks first (the interim model as the candidate)
* ``about_<size>.png``       - Help > About: the model's figures as tables
* ``settings_<size>.png``    - Settings: device, precision and the heatmap's colour map, level, Normal results

    QT_QPA_PLATFORM=offscreen python tools/gui_window_shots.py [OUT_DIR] [--sizes 1024x700 1600x1000]

Dialogs are grabbed while open (a timer grabs, then closes them); nothing is
clicked on the user's behalf except the menu action that opens each one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("XRAY_SHARED", REPO.parent / "shared")) / "data"
DICOM = SHARED / "dicom-samples" / "cxr15_dx_966fixed_j2kr_mono1.dcm"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/gui_window_shots.py")
    ap.add_argument("out", nargs="?", type=Path, default=REPO / "docs" / "screenshots")
    ap.add_argument("--sizes", nargs="+", default=["1024x700", "1600x1000"])
    a = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["XRAY_SETTINGS"] = str(Path(tempfile.mkdtemp(prefix="xray-shots-")) / "settings.ini")
    a.out.mkdir(parents=True, exist_ok=True)

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication, QDialog

    from training.common.resources import default_model_path, resources_dir
    from xray_gui.app import _make_app
    from xray_gui.main_window import MainWindow
    from xray_gui.settings import AppSettings

    app = _make_app("shots")
    interim = resources_dir() / "models" / "covid_resnet50_lstm_interim.safetensors"

    def wait(signal, ms=120_000) -> None:
        loop = QEventLoop()
        signal.connect(loop.quit)
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def settle(ms=400) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def grab_dialog(open_it, path: Path) -> None:
        """Run ``open_it`` (which execs a dialog); grab the dialog once shown, then close it."""
        def grab():
            dlg = next((w for w in QApplication.topLevelWidgets() if isinstance(w, QDialog) and w.isVisible()), None)
            if dlg is None:
                QTimer.singleShot(200, grab)
                return
            dlg.grab().save(str(path))
            print(path, flush=True)
            dlg.reject()
        QTimer.singleShot(700, grab)
        open_it()

    for size in a.sizes:
        w, _, h = size.partition("x")
        win = MainWindow(AppSettings(), dialogs=True)
        win.resize(int(w), int(h))
        win.show()
        win.start_model(None)
        if win.models.classifier is None:
            wait(win.models.changed)
        win.open_image(DICOM)
        wait(win.images.heatmapShown)
        settle()
        win.layout_actions["full_screen"].trigger()
        win.resize(int(w), int(h))  # the offscreen "screen" has its own size; keep the shot's
        settle(800)
        p = a.out / f"fullscreen_{size}.png"
        win.grab().save(str(p))
        print(p, flush=True)
        win.layout_actions["full_screen"].trigger()
        win.resize(int(w), int(h))
        settle()
        if interim.is_file():
            from xray_gui.model_switch import switch_model

            grab_dialog(lambda: switch_model(win, interim), a.out / f"switch_{size}.png")
        grab_dialog(win.show_about, a.out / f"about_{size}.png")
        grab_dialog(win.show_settings, a.out / f"settings_{size}.png")
        win.close()
        app.processEvents()
    print("model:", default_model_path())
    return 0


if __name__ == "__main__":
    sys.exit(main())
