"""The core package ``training`` never imports Qt: every module imports and a
prediction + explanation runs with PySide6 & co. made unimportable."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(r"""
    import importlib, importlib.abc, pkgutil, sys

    BLOCKED = ("PySide6", "PySide2", "shiboken6", "shiboken2", "superqt", "qtpy", "PyQt5", "PyQt6")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"Qt is blocked in this test: {name}")
            return None

    sys.meta_path.insert(0, Blocker())

    import training
    names = [m.name for m in pkgutil.walk_packages(training.__path__, "training.")]
    for name in names:
        importlib.import_module(name)

    import numpy as np, torch
    from training.inference.explain import gradcam, overlay_rgb
    from training.model.modelfile import ModelInfo, loaded_from_module
    from training.model.networks import build_model
    from training.inference.classifier import Classifier

    torch.manual_seed(0)
    model = build_model("resnet50", "scratch", input_size=64)
    clf = Classifier(loaded_from_module(model, ModelInfo(arch="resnet50", input_size=64)), device="cpu")
    yy, xx = np.mgrid[0:96, 0:80]
    img = (0.5 + 0.4 * np.sin(xx / 7.0) * np.cos(yy / 9.0)).astype(np.float32)
    p = clf.predict_arrays([img, img[::-1].copy()])
    assert p.shape == (2,) and ((p >= 0) & (p <= 1)).all(), p
    pred = clf.predict_image(type("Img", (), {"pixels": img, "meta": None, "warnings": []})())
    assert pred.status == "ok"
    heat = gradcam(clf, img)
    assert heat.shape == img.shape
    assert overlay_rgb(img, heat).shape == (96, 80, 3)

    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("OK", len(names), "modules:", ", ".join(names))
""")


def test_training_package_is_qt_free():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK")
    for expected in ("training.inference.classifier", "training.inference.explain", "training.cli.classify", "training.imaging.loading"):
        assert expected in proc.stdout
