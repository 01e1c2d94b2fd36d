"""Fatal start-up errors: never just a vanished window.

``guarded(fn, argv)`` runs the app.  An exception that escapes it is written,
with its traceback and a few facts about the machine, to a log file in the
user's data folder, a one-line message naming that file goes to stderr (when
there is one: a windowed Windows build has none), and, when a screen is
available, a QMessageBox says the same in plain words.

When Qt itself cannot start (no usable platform plugin, missing X libraries),
Qt ends the process with ``qFatal`` inside the QApplication constructor, which
Python cannot catch.  A Qt message handler installed here writes the log and
the stderr line before Qt aborts.

Log folder: ``$XRAY_LOG_DIR`` if set, else
``$XDG_DATA_HOME/xray-assistant/logs`` (``~/.local/share/xray-assistant/logs``)
on Linux, ``%LOCALAPPDATA%\\xray-assistant\\logs`` on Windows and
``~/Library/Application Support/xray-assistant/logs`` on macOS.  It does not
depend on Qt, so it works when Qt is what failed.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import traceback
from collections import deque
from pathlib import Path
from typing import Callable

APP_ID = "xray-assistant"
NO_DIALOG_PLATFORMS = ("offscreen", "minimal", "vnc")
_recent_qt_messages: deque[str] = deque(maxlen=30)  # go into the log: they often say why Qt failed


def log_dir() -> Path:
    env = os.environ.get("XRAY_LOG_DIR")
    if env:
        return Path(env)
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / APP_ID / "logs"


def _facts(argv: list[str]) -> str:
    keys = ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "DISPLAY", "XDG_SESSION_TYPE", "XRAY_RESOURCES")
    env = ", ".join(f"{k}={os.environ[k]!r}" for k in keys if k in os.environ) or "(none)"
    return (f"time: {_dt.datetime.now().isoformat(timespec='seconds')}\n"
            f"argv: {[sys.argv[0] if sys.argv else '', *argv]}\n"
            f"python: {sys.version.split()[0]} ({sys.executable})\n"
            f"frozen bundle: {bool(getattr(sys, 'frozen', False))} {getattr(sys, '_MEIPASS', '')}\n"
            f"system: {platform.platform()}\n"
            f"environment: {env}\n")


def write_log(body: str, argv: list[str]) -> Path | None:
    """Write ``startup-<timestamp>.log``; None if even that is impossible."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    text = "Chest X-ray Assistant: fatal error during start-up\n\n" + _facts(argv) + "\n" + body
    if _recent_qt_messages:
        text += "\nRecent Qt messages:\n" + "\n".join(_recent_qt_messages) + "\n"
    for folder in (log_dir(), Path(os.environ.get("TMPDIR") or "/tmp") / APP_ID):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"startup-{stamp}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def _stderr(line: str) -> None:
    stream = sys.stderr or sys.__stderr__
    if stream is None:  # windowed build on Windows: no console at all
        return
    try:
        print(line, file=stream, flush=True)
    except (OSError, ValueError):
        pass


def message_text(summary: str, log: Path | None) -> str:
    where = (f"Details were written to:\n{log}\n\nPlease include this file if you report the problem."
             if log else "The details could not be written to a log file.")
    return f"Chest X-ray Assistant could not start.\n\n{summary}\n\n{where}"


def _show_dialog(text: str, argv: list[str]) -> None:
    """A QMessageBox when Qt works and a person can see it; otherwise nothing."""
    if any(a.startswith("--screenshot") for a in argv):
        return  # automated runs: the exit code and stderr say it
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in NO_DIALOG_PLATFORMS:
        return
    try:
        from PySide6.QtWidgets import QApplication, QMessageBox

        app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else APP_ID])
        if app.platformName() in NO_DIALOG_PLATFORMS:
            return
        for w in QApplication.topLevelWidgets():  # a half-built main window must not linger behind the box
            w.hide()
        box = QMessageBox(QMessageBox.Icon.Critical, "Chest X-ray Assistant", text)
        box.exec()
    except Exception:  # noqa: BLE001 -- the log and stderr already have it
        pass


def report(exc: BaseException, argv: list[str]) -> int:
    body = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    log = write_log(body, argv)
    summary = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    _stderr(f"xray-assistant: fatal error during start-up: {summary}"
            + (f"\nxray-assistant: details written to {log}" if log else ""))
    _show_dialog(message_text(summary, log), argv)
    return 1


def _install_qt_fatal_handler(argv: list[str]) -> None:
    """Log Qt's own fatal messages (e.g. no platform plugin) before Qt aborts."""
    try:
        from PySide6.QtCore import QtMsgType, qInstallMessageHandler
    except Exception:  # noqa: BLE001 -- PySide6 missing: guarded() reports the ImportError
        return

    def handler(kind, context, message):
        category = getattr(context, "category", None)
        line = f"{category}: {message}" if category and category != "default" else str(message)
        _recent_qt_messages.append(line)
        if kind == QtMsgType.QtFatalMsg:
            log = write_log("Qt could not start (qFatal); its messages below say why.\n", argv)
            _stderr(line)
            _stderr("xray-assistant: fatal error during start-up: Qt could not start"
                    + (f"\nxray-assistant: details written to {log}" if log else ""))
        else:
            _stderr(line)

    qInstallMessageHandler(handler)


def guarded(fn: Callable[[], int], argv: list[str] | None = None) -> int:
    """Run ``fn`` (the app); report an escaping exception and return 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _install_qt_fatal_handler(argv)
    try:
        return fn()
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001 -- anything that would make the window vanish
        return report(exc, argv)
