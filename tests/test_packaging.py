"""Packaging: the freedesktop entry, the icons, the PyInstaller spec's resource
paths, the launcher installer (fast), and the whole bundle (slow: builds it with
packaging/build.sh and runs its --screenshot smoke check without the venv)."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RES = REPO / "resources"
DESKTOP = RES / "xray-assistant.desktop"
SPEC = REPO / "packaging" / "xray-assistant.spec"
ICON_SIZES = (16, 32, 48, 64, 128, 256)
MIME_TYPES = {"image/png", "image/jpeg", "image/tiff", "image/bmp", "application/dicom"}


def _desktop_entry() -> dict[str, str]:
    cp = configparser.ConfigParser(interpolation=None, strict=True)
    cp.optionxform = str  # keys are case-sensitive
    cp.read_string(DESKTOP.read_text(encoding="utf-8"))
    assert cp.sections()[0] == "Desktop Entry"
    return dict(cp["Desktop Entry"])


def test_desktop_entry_keys():
    e = _desktop_entry()
    for key in ("Type", "Name", "GenericName", "Comment", "Exec", "Icon", "Terminal", "Categories", "MimeType"):
        assert e.get(key), f"{key} missing"
    assert e["Type"] == "Application"
    exe, *args = e["Exec"].split()
    assert exe == "xray-assistant" and args == ["%F"]
    assert e["Terminal"] == "false"
    assert {"Graphics", "MedicalSoftware", "Science"} <= set(filter(None, e["Categories"].split(";")))
    assert e["Categories"].endswith(";") and e["MimeType"].endswith(";")
    assert MIME_TYPES <= set(filter(None, e["MimeType"].split(";")))
    icon = e["Icon"]
    assert "/" not in icon and not icon.endswith((".png", ".svg")), "Icon= is a theme name"
    assert (RES / "icons" / f"{icon}.svg").is_file()
    for size in ICON_SIZES:
        assert (RES / "icons" / f"{icon}-{size}.png").is_file()
    from xray_gui.appicon import ICON_NAME  # the window icon / Wayland app id uses the same name

    assert ICON_NAME == icon == DESKTOP.stem


@pytest.mark.skipif(not shutil.which("desktop-file-validate"), reason="desktop-file-validate not installed")
def test_desktop_entry_validates():
    r = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "error" not in (r.stdout + r.stderr).lower()


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize("size", ICON_SIZES)
def test_icon_png_has_its_declared_size(size):
    assert _png_size(RES / "icons" / f"xray-assistant-{size}.png") == (size, size)


def test_windows_and_macos_icons_exist():
    ico = (RES / "icons" / "xray-assistant.ico").read_bytes()
    assert ico[:4] == b"\x00\x00\x01\x00" and struct.unpack("<H", ico[4:6])[0] >= 6  # ICO with >= 6 sizes
    assert (RES / "icons" / "xray-assistant.icns").read_bytes()[:4] == b"icns"


def test_spec_names_resources_that_exist():
    text = SPEC.read_text(encoding="utf-8")
    paths = set(re.findall(r'"(resources/[^"]+)"', text))
    assert "resources/xray-assistant.desktop" in paths
    for size in ICON_SIZES:
        assert f"resources/icons/xray-assistant-{size}.png" in paths
    assert "resources/icons/xray-assistant.svg" in paths
    models = {p for p in paths if p.startswith("resources/models")}
    from training.common.resources import DEFAULT_MODEL_NAME

    assert "resources/models" in models, "the spec bundles resources/models/*"
    assert f"resources/models/{DEFAULT_MODEL_NAME}" in models, "the spec knows the default model's name"
    for p in sorted(paths - models):  # the model may be absent (not trained yet); everything else must exist
        assert (REPO / p).exists(), f"the spec names {p}, which does not exist"
    # DICOM decoders are found through entry points: their metadata must be bundled
    for dist in ("pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg"):
        assert f'"{dist}"' in text
    assert "copy_metadata" in text and "console=False" in text
    assert re.search(r'APP\s*=\s*"xray-assistant"', text)


def test_spec_entry_script_and_build_script_exist():
    text = SPEC.read_text(encoding="utf-8")
    for script in re.findall(r'"packaging" / "([^"]+)"', text):
        assert (REPO / "packaging" / script).is_file()
    for sh in ("build.sh", "install-desktop-entry.sh"):
        p = REPO / "packaging" / sh
        assert p.is_file() and os.access(p, os.X_OK), f"{p} is not executable"


@pytest.mark.skipif(not shutil.which("bash"), reason="needs bash")
def test_install_desktop_entry_installs_and_removes(tmp_path):
    exe_dir = tmp_path / "my apps"  # a space: Exec= must be quoted
    exe_dir.mkdir()
    exe = exe_dir / "xray-assistant"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    data = tmp_path / "share"
    env = {**os.environ, "XDG_DATA_HOME": str(data)}
    script = REPO / "packaging" / "install-desktop-entry.sh"
    r = subprocess.run(["bash", str(script), "--exec", str(exe)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    installed = data / "applications" / "xray-assistant.desktop"
    text = installed.read_text()
    assert f'Exec="{exe}" %F' in text.splitlines()
    assert f"TryExec={exe}" in text.splitlines()
    assert "MimeType=image/png;image/jpeg;image/tiff;image/bmp;application/dicom;" in text.splitlines()
    for size in ICON_SIZES:
        assert _png_size(data / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "xray-assistant.png") == (size, size)
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / "xray-assistant.svg").is_file()
    if shutil.which("desktop-file-validate"):
        v = subprocess.run(["desktop-file-validate", str(installed)], capture_output=True, text=True)
        assert v.returncode == 0, v.stdout + v.stderr
    r = subprocess.run(["bash", str(script), "--uninstall"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not installed.exists()
    assert not list((data / "icons").rglob("xray-assistant.*"))


def test_app_icon_loads_every_size(qapp):
    from xray_gui.appicon import app_icon

    icon = app_icon()
    assert not icon.isNull()
    assert {s.width() for s in icon.availableSizes()} >= set(ICON_SIZES)


# ---------------------------------------------------------------- slow: the real bundle

BUNDLE = REPO / "dist" / "xray-assistant"
DICOM = Path(os.environ.get("XRAY_SHARED", REPO.parent / "shared")) / "data" / "dicom-samples"


def _bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No venv, no PYTHONPATH: only what a desktop session would have."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "QT_QPA_PLATFORM": "offscreen",
           "XRAY_LOG_DIR": str(tmp_path / "logs")}
    env.update(extra)
    return env


@pytest.mark.slow
def test_bundle_builds_and_classifies_without_the_venv(tmp_path):
    if not (DICOM / "cxr01_rsna_normal-2_jpegbaseline.dcm").is_file():
        pytest.skip(f"DICOM samples not found in {DICOM}")
    if os.environ.get("XRAY_REUSE_BUNDLE") != "1" or not (BUNDLE / "xray-assistant").is_file():
        r = subprocess.run(["bash", str(REPO / "packaging" / "build.sh")], cwd=REPO, capture_output=True,
                           text=True, timeout=3 * 3600)
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    exe = BUNDLE / "xray-assistant"
    assert exe.is_file() and os.access(exe, os.X_OK)
    internal = BUNDLE / "_internal"
    # what the spec promises is inside
    assert (internal / "resources" / "xray-assistant.desktop").is_file()
    assert (internal / "resources" / "icons" / "xray-assistant-256.png").is_file()
    for dist in ("pydicom", "pylibjpeg", "pylibjpeg_libjpeg", "pylibjpeg_openjpeg"):
        assert list(internal.glob(f"{dist}-*.dist-info/METADATA")), f"{dist} metadata not bundled"
    for dist in ("pylibjpeg_libjpeg", "pylibjpeg_openjpeg"):  # the decoders' entry points
        assert list(internal.glob(f"{dist}-*.dist-info/entry_points.txt")), dist
    plugins = internal / "PySide6" / "Qt" / "plugins"
    for plugin in ("platforms/libqxcb.so", "platforms/libqoffscreen.so", "imageformats/libqjpeg.so"):
        assert (plugins / plugin).is_file(), plugin
    assert not (internal / "torch" / "include").exists() and not (internal / "triton").exists()

    (tmp_path / "home").mkdir()
    model = tmp_path / "demo.safetensors"
    subprocess.run([sys.executable, "-c", (
        "import sys, torch; torch.manual_seed(0)\n"
        "from training.model.networks import build_model\n"
        "from training.model.modelfile import ModelInfo, save_model\n"
        "save_model(build_model('resnet50_lstm'), ModelInfo(arch='resnet50_lstm', input_size=224, "
        "name='Demo (untrained)'), sys.argv[1])\n"), str(model)], cwd=REPO, check=True, timeout=600)

    for name in ("cxr01_rsna_normal-2_jpegbaseline.dcm", "cxr13_wg04_RG1_J2KI_mono1.dcm"):
        out = tmp_path / f"{name}.png"
        t0 = time.monotonic()
        r = subprocess.run([str(exe), "--screenshot", str(out), str(DICOM / name), "--model", str(model),
                            "--device", "cpu"], env=_bare_env(tmp_path), capture_output=True, text=True,
                           timeout=900)
        assert r.returncode == 0, f"{name}: rc={r.returncode}\n{r.stderr[-4000:]}"
        assert _png_size(out) == (1360, 860)
        print(f"bundle screenshot of {name}: {time.monotonic() - t0:.1f} s")

    # a start-up failure in the bundle leaves a log and says where it is
    r = subprocess.run([str(exe)], env=_bare_env(tmp_path, QT_QPA_PLATFORM="nosuchplatform"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    logs = list((tmp_path / "logs").glob("startup-*.log"))
    assert len(logs) == 1 and "no Qt platform plugin" in logs[0].read_text()
    assert str(logs[0]) in r.stderr
