"""The shipped model's committed figures are its own: the external-dev
metrics in results/v1 (and the model card) follow from the committed
per-file predictions with the model file's own calibration and threshold, and
the shipped model, run now on a sample of those real films through the app's
path, gives the committed predictions again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.common.resources import resources_dir, v1_model_path
from training.model.calibration import apply_temperature
from training.model.metrics import evaluate

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "v1"
SHIPPED_RUN = "v1_resnet50_224"


@pytest.fixture(scope="module")
def committed():
    ev_path = RESULTS / "shipped_evaluation.json"
    if not ev_path.is_file():
        pytest.fail(f"{ev_path} is missing: the shipped model's evaluation must be committed")
    ev = json.loads(ev_path.read_text(encoding="utf-8"))
    ext = json.loads((RESULTS / f"external_{SHIPPED_RUN}.json").read_text(encoding="utf-8"))
    return ev, ext


@pytest.fixture(scope="module")
def shipped_info():
    from training.model.modelfile import read_info

    return read_info(v1_model_path())[0]


def test_committed_external_metrics_follow_from_the_committed_predictions(committed, shipped_info):
    ev, ext = committed
    y = np.asarray(ext["label"])
    p = apply_temperature(np.asarray(ext["p_raw"], dtype=np.float64), shipped_info.temperature)
    binary = y != 2
    m = evaluate(y[binary], p[binary], shipped_info.threshold)
    want = ev["external_dev"]
    for key in ("accuracy", "recall", "specificity", "roc_auc"):
        assert m[key] == pytest.approx(want[key], abs=1e-9), key
    assert ev["threshold"] == pytest.approx(shipped_info.threshold)
    assert ev["temperature"] == pytest.approx(shipped_info.temperature)
    assert list(ev["band"]) == pytest.approx(list(shipped_info.band))
    pn = y == 2
    assert int((p[pn] >= shipped_info.threshold).sum()) == want["pneumonia"]["called_covid"]
    card = (resources_dir() / "models" / "MODEL_CARD_v1.md").read_text(encoding="utf-8")
    assert f"{want['roc_auc']:.3f}" in card and f"{want['accuracy']:.3f}" in card


def test_shipped_model_reproduces_committed_predictions_on_real_films(committed, data_dir):
    from training.inference.classifier import Classifier

    _, ext = committed
    files = ext["file"]
    pick = [i for i, f in enumerate(files) if f.startswith("COVID/")][:5] + \
           [i for i, f in enumerate(files) if f.startswith("Normal/")][:5] + \
           [i for i, f in enumerate(files) if f.startswith("Pneumonia/")][:2]
    clf = Classifier.from_file(v1_model_path(), device="cpu", mixed_precision=False, batch_size=4)
    clf.temperature = 1.0  # committed predictions are raw scores
    preds = list(clf.classify_paths([data_dir / "external-dev" / files[i] for i in pick], enforce_gate=False))
    got = np.array([q.p_covid for q in preds])
    want = np.array([ext["p_raw"][i] for i in pick])
    assert np.abs(got - want).max() < 2e-3, np.abs(got - want).max()
