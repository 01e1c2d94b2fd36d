"""The GUI thread never imports torch: the window, its panels, menus, dialogs and
the wizard's pages are built and shown in a fresh process, and afterwards
``torch`` (and every core module that imports it) is still absent from
``sys.modules``.  torch loads only when a worker loads a model."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(r"""
    import sys
    from PySide6.QtWidgets import QApplication
    app = QApplication([])
    from xray_gui.app import build_parser
    from xray_gui.main_window import MainWindow
    from xray_gui.settings import AppSettings
    import xray_gui.dialogs, xray_gui.network_settings, xray_gui.query_dialog, xray_gui.report_pdf
    win = MainWindow(AppSettings(), dialogs=False)
    win.show()
    for _ in range(20):
        app.processEvents()
    from xray_gui.wizard.wizard import TrainingWizard
    wiz = TrainingWizard()
    wiz.show()
    for _ in range(20):
        app.processEvents()
    heavy = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "torchvision", "monai")))
    print("HEAVY", len(heavy), heavy[:5])
    print("WINDOW", win.isVisible(), wiz.isVisible())
""")


def test_window_and_wizard_show_without_torch(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XRAY_SETTINGS=str(tmp_path / "settings.ini"),
               XRAY_RESOURCES=str(tmp_path))  # no shipped model: nothing starts loading one
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "WINDOW True True" in out.stdout, out.stdout + out.stderr[-2000:]
    assert "HEAVY 0 []" in out.stdout, out.stdout
