"""Fatal start-up errors (xray_gui.fatal): a log file in the user's data folder,
a line on stderr naming it, a message box when someone can see it, and a log
even when Qt itself cannot start (qFatal)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def logs(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "logs"
    monkeypatch.setenv("XRAY_LOG_DIR", str(d))
    return d


def test_log_dir_follows_xdg_data_home(monkeypatch, tmp_path):
    from xray_gui import fatal

    monkeypatch.delenv("XRAY_LOG_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    if sys.platform.startswith("linux"):
        assert fatal.log_dir() == tmp_path / "xray-assistant" / "logs"


def test_an_exception_is_logged_and_named_on_stderr(logs, capsys):
    from xray_gui import fatal

    def start() -> int:
        raise RuntimeError("cannot read the settings file")

    assert fatal.guarded(start, ["--screenshot", "x.png"]) == 1
    (log,) = logs.glob("startup-*.log")
    text = log.read_text()
    assert "RuntimeError: cannot read the settings file" in text and "Traceback" in text
    assert "argv:" in text and "python:" in text
    err = capsys.readouterr().err
    assert "cannot read the settings file" in err and str(log) in err


def test_system_exit_passes_through(logs):
    from xray_gui import fatal

    with pytest.raises(SystemExit):
        fatal.guarded(lambda: sys.exit(2), [])
    assert not logs.exists()


def test_message_box_names_the_log(logs, monkeypatch, qapp):
    from PySide6.QtWidgets import QMessageBox

    from xray_gui import fatal

    shown: list[str] = []
    monkeypatch.setattr(fatal, "NO_DIALOG_PLATFORMS", ())  # the tests run offscreen
    monkeypatch.setattr(QMessageBox, "exec", lambda self: shown.append(self.text()) or 0)

    def start() -> int:
        raise ValueError("bad model path")

    assert fatal.guarded(start, []) == 1
    (log,) = logs.glob("startup-*.log")
    assert len(shown) == 1
    assert "could not start" in shown[0] and "ValueError: bad model path" in shown[0] and str(log) in shown[0]


def test_no_message_box_offscreen_or_for_screenshots(logs, monkeypatch, qapp):
    from PySide6.QtWidgets import QMessageBox

    from xray_gui import fatal

    monkeypatch.setattr(QMessageBox, "exec", lambda self: pytest.fail("a box was shown"))
    assert fatal.guarded(lambda: 1 / 0, []) == 1  # QT_QPA_PLATFORM=offscreen (conftest)
    monkeypatch.setattr(fatal, "NO_DIALOG_PLATFORMS", ())
    assert fatal.guarded(lambda: 1 / 0, ["--screenshot", "out.png"]) == 1
    assert len(list(logs.glob("startup-*.log"))) == 2


def test_main_reports_an_error_in_app_start(logs, monkeypatch, capsys):
    import xray_gui.app
    from xray_gui.__main__ import main

    def broken(argv):
        raise OSError("resources folder missing")

    monkeypatch.setattr(xray_gui.app, "run", broken)
    assert main(["--screenshot", "out.png"]) == 1
    assert "resources folder missing" in capsys.readouterr().err
    assert len(list(logs.glob("startup-*.log"))) == 1


def test_qt_that_cannot_start_still_leaves_a_log(tmp_path):
    """No usable platform plugin: Qt aborts in QApplication(); the log is written first."""
    env = {**os.environ, "QT_QPA_PLATFORM": "nosuchplatform", "XRAY_LOG_DIR": str(tmp_path / "logs"),
           "XRAY_SETTINGS": str(tmp_path / "settings.ini")}
    r = subprocess.run([sys.executable, "-m", "xray_gui"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0
    (log,) = (tmp_path / "logs").glob("startup-*.log")
    text = log.read_text()
    assert "Qt could not start" in text and "no Qt platform plugin could be initialized" in text
    assert "nosuchplatform" in text
    assert str(log) in r.stderr
