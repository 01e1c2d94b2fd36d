"""A start-up after the first runs without torch: the classifier opens its cached ONNX Runtime engine (checked
against the PyTorch outputs kept in the cache record), the gate its cached graphs, the preprocessing and Grad-CAM's
head gradient are NumPy - and gives the results of the PyTorch start-up.  Anything that needs PyTorch loads it then."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from training.common.resources import default_model_path

CODE = ("import sys, json; from training.inference.classifier import Classifier; "
        "from training.common.resources import default_model_path; "
        "c = Classifier.from_file(default_model_path()); "
        "r = list(c.classify_paths({files!r}, explain=True)); "
        "print(json.dumps({{'torch': 'torch' in sys.modules, 'loaded': c._model is not None, "
        "'p': [x.p_covid for x in r], 'share': [x.heat_in_lungs for x in r], "
        "'inv': [x.lung_involvement for x in r]}}))")


def _run(files, env):
    out = subprocess.run([sys.executable, "-c", CODE.format(files=[str(f) for f in files])], capture_output=True,
                         text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def films(cxr1000):
    return sorted((cxr1000 / "COVID").glob("*.png"))[:2] + sorted((cxr1000 / "Normal").glob("*.png"))[:1]


def test_second_start_never_imports_torch_and_gives_the_same_results(tmp_path, films):
    env = {**os.environ, "XRAY_ENGINE_CACHE": str(tmp_path / "engines")}
    first, second = _run(films, env), _run(films, env)
    assert first["torch"] and first["loaded"]  # the first start exports the graphs from PyTorch
    assert not second["torch"] and not second["loaded"]
    np.testing.assert_allclose(second["p"], first["p"], atol=1e-5)
    np.testing.assert_allclose(second["share"], first["share"], atol=1e-3)
    np.testing.assert_allclose(second["inv"], first["inv"], atol=1e-3)


@pytest.mark.parametrize("which", ["v2", "v1"])
def test_cached_start_and_pytorch_start_agree_in_process(tmp_path, films, monkeypatch, which):
    """Same probabilities, lesion maps and Grad-CAM maps (the NumPy head from the file's bytes against the
    PyTorch model's): the shipped ResNet50-LSTM (three classes) and v1's ResNet50 (one logit)."""
    from training.common.resources import v1_model_path
    from training.inference.classifier import Classifier

    path = default_model_path() if which == "v2" else v1_model_path()
    if path is None:
        pytest.skip("model not installed")
    monkeypatch.setenv("XRAY_ENGINE_CACHE", str(tmp_path / "engines"))
    full = Classifier.from_file(path, device="cpu")
    a = list(full.classify_paths(films, keep_heatmaps=True))  # builds and checks the engine, keeps the reference
    cached = Classifier.from_file(path, device="cpu")
    assert full._model is not None and cached._model is None and cached.active_engine == "onnx"
    b = list(cached.classify_paths(films, keep_heatmaps=True))
    for x, y in zip(a, b):
        assert y.p_covid == pytest.approx(x.p_covid, abs=1e-6) and y.label == x.label
        if x.lesion_u8 is not None:
            assert np.abs(y.lesion_u8.astype(int) - x.lesion_u8.astype(int)).max() <= 1
        assert np.abs(y.heat_input - x.heat_input).max() < 1e-4
    assert cached._model is None  # nothing above needed PyTorch
    cached.model  # noqa: B018 - loaded on first use (SmoothGrad, the package Grad-CAM, an engine failure)
    assert cached._model is not None


def test_a_record_that_no_longer_matches_falls_back_to_pytorch(tmp_path, films, monkeypatch):
    from training.inference.classifier import Classifier

    monkeypatch.setenv("XRAY_ENGINE_CACHE", str(tmp_path / "engines"))
    want = next(iter(Classifier.from_file(default_model_path(), device="cpu").classify_paths(films[:1])))
    assert Classifier.from_file(default_model_path(), device="cpu")._model is None
    records = [p for p in (tmp_path / "engines").glob("*.json") if "reference" in p.read_text()]
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    record["reference"]["logit"] = (np.asarray(record["reference"]["logit"]) + 1.0).tolist()  # not this graph's
    records[0].write_text(json.dumps(record))
    clf = Classifier.from_file(default_model_path(), device="cpu")
    assert clf._model is not None  # started with PyTorch, which checked and kept the right reference again
    assert next(iter(clf.classify_paths(films[:1]))).p_covid == pytest.approx(want.p_covid, abs=1e-6)
    assert Classifier.from_file(default_model_path(), device="cpu")._model is None


def test_the_cpu_is_known_without_torch_only_when_certain():
    from training.common.device import cpu_without_asking_torch

    assert cpu_without_asking_torch("cpu")
    assert not cpu_without_asking_torch("cuda") and not cpu_without_asking_torch("mps")
    code = "import sys; from training.common.device import cpu_without_asking_torch as c; c('auto'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False"


GUI_CODE = """
import sys
from PySide6.QtCore import QEventLoop
from xray_gui.app import _make_app
from xray_gui.main_window import MainWindow
from xray_gui.settings import AppSettings
from training.common.resources import default_model_path
app = _make_app("test")
win = MainWindow(AppSettings(), dialogs=False)
win.show()
loop = QEventLoop()
win.models.settled.connect(loop.quit)
win.open_model(default_model_path())
loop.exec()
print("RESULT", win.models.classifier is not None, "torch" in sys.modules)
"""


def test_the_app_loads_its_model_without_torch_after_the_first_run(tmp_path, monkeypatch):
    """The window's model load (worker) starts from the cached engine too: no torch in the process."""
    from training.inference.classifier import Classifier

    monkeypatch.setenv("XRAY_ENGINE_CACHE", str(tmp_path / "engines"))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "HOME": str(tmp_path)}
    clf = Classifier.from_file(default_model_path(), device="cpu")
    clf.predict_arrays([np.random.default_rng(0).random((256, 256), dtype=np.float32)])  # builds the engine
    out = subprocess.run([sys.executable, "-c", GUI_CODE], capture_output=True, text=True, timeout=600, env=env)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
    assert lines, out.stderr[-3000:]
    assert lines[-1] == "RESULT True False"
