"""Shared fixtures: paths to the real data in ../shared/data (never copied into
the repo) and tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("XRAY_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
CXR1000 = DATA / "covid-cxr-1000"
CXR_EXTRA = DATA / "covid-cxr-extra-3000"
DICOM_DIR = DATA / "dicom-samples"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _engine_cache(tmp_path_factory):
    """The ONNX engines the tests export go to a temporary folder, never the user's cache."""
    if "XRAY_ENGINE_CACHE" not in os.environ:
        os.environ["XRAY_ENGINE_CACHE"] = str(tmp_path_factory.mktemp("engine-cache"))
    yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def cxr1000() -> Path:
    if not CXR1000.is_dir():
        pytest.skip(f"{CXR1000} not found")
    return CXR1000


@pytest.fixture(scope="session")
def dicom_dir() -> Path:
    if not DICOM_DIR.is_dir():
        pytest.skip(f"{DICOM_DIR} not found")
    return DICOM_DIR


@pytest.fixture(autouse=True)
def _decode_workers_reopened():
    """A test that runs ``xray-classify``'s Ctrl-C path shuts the decode-worker
    pool for the process (right for the CLI, which exits); re-open it so later
    tests in the same session can decode compressed DICOMs."""
    yield
    from training.imaging import decode_guard

    if decode_guard._closed:
        decode_guard.reset_for_tests()



def pytest_sessionfinish(session, exitstatus):
    """Delete the windows tests left behind while Python is still whole.

    Left alone, PySide deletes parentless widgets while it destroys the
    QApplication at interpreter exit; one such widget (the verdict box of a
    prediction panel built on its own) made the suite pass and then die with a
    segmentation fault (exit 139).  ``test_gui_layout`` checks the panels
    leave none; the widgets tests closed but did not delete go here too."""
    import sys

    widgets = sys.modules.get("PySide6.QtWidgets")
    app = widgets.QApplication.instance() if widgets else None
    if app is None:
        return
    from PySide6.QtCore import QCoreApplication, QEvent

    for w in [w for w in app.topLevelWidgets() if w.parent() is None]:
        w.close()
        w.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    app.processEvents()


def write_tiny_v2_model(path: Path, input_size: int = 64, seed: int = 0) -> Path:
    """A small untrained model-v2 file: ResNet50-LSTM, three classes (Normal, COVID, Pneumonia), a lesion
    decoder, the v1 lung view; calibrated-looking metadata (threshold 0.3, band 0.2-0.45)."""
    import torch

    from training.model.lung_input import InputSpec
    from training.model.modelfile import ModelInfo, save_model
    from training.model.networks import build_model

    torch.manual_seed(seed)
    model = build_model("resnet50_lstm", "scratch", classes=3, lesion=True, dropout=0.2)
    info = ModelInfo(arch="resnet50_lstm", name="Tiny v2 (untrained)", version="2",
                     class_names=["Normal", "COVID", "Pneumonia"], input_size=input_size,
                     preprocessing=InputSpec("lungs", "clahe").to_metadata(), threshold=0.3, band=[0.2, 0.45],
                     lesion_head=True, calibration={"method": "temperature (softmax)", "temperature": 1.0},
                     dropout=0.2)
    return save_model(model, info, path, half=True)


@pytest.fixture(scope="session")
def tiny_v2_model(tmp_path_factory) -> Path:
    """Path of :func:`write_tiny_v2_model`'s file (one per test session)."""
    return write_tiny_v2_model(tmp_path_factory.mktemp("v2-model") / "tiny_v2.safetensors")
