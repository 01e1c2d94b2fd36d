"""``xray-gui`` / ``python -m xray_gui`` from the command line (subprocesses,
offscreen): --screenshot writes a PNG and exits 0; no model -> exit 1 with
a message on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("superqt")

REPO = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(QT_QPA_PLATFORM="offscreen", XRAY_SETTINGS=str(tmp_path / "settings.ini"),
               XRAY_RESOURCES=str(tmp_path / "no-resources"))
    return env


def _run(args, tmp_path, timeout=240):
    return subprocess.run([sys.executable, "-m", "xray_gui", *args], cwd=REPO, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    if str(Path(__file__).parent) not in sys.path:  # --import-mode=importlib
        sys.path.insert(0, str(Path(__file__).parent))
    from test_gui_app import tiny_model_file  # one tiny model file per session, shared

    return tiny_model_file(tmp_path_factory)


def test_screenshot_of_a_classified_png(tmp_path, model_file, cxr1000):
    png = sorted((cxr1000 / "COVID").glob("*.png"))[0]
    out = tmp_path / "shot.png"
    r = _run(["--screenshot", str(out), str(png), "--model", str(model_file), "--size", "1000x700"], tmp_path)
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    from PySide6.QtGui import QImage

    img = QImage(str(out))
    assert (img.width(), img.height()) == (1000, 700)
    assert not (tmp_path / "settings.ini").exists() or "model" not in (tmp_path / "settings.ini").read_text()


def test_screenshot_without_a_model_fails_with_a_message(tmp_path, cxr1000):
    out = tmp_path / "shot.png"
    r = _run(["--screenshot", str(out)], tmp_path, timeout=120)
    assert r.returncode != 0
    assert "no model" in r.stderr.lower()
    assert not out.exists()


def test_help_mentions_research_use(tmp_path):
    r = _run(["--help"], tmp_path, timeout=60)
    assert r.returncode == 0 and "research use only" in r.stdout.lower()


def test_launcher_may_pass_several_files_and_urls():
    """The .desktop entry uses %F: opening two files from the file manager must
    not make argparse exit; file:// URLs from %U launchers are accepted too."""
    from xray_gui.app import build_parser

    args = build_parser().parse_args(["a.png", "b.dcm", "--device", "cpu"])
    assert args.files == ["a.png", "b.dcm"]
    assert build_parser().parse_args([]).files == []
