"""The model the app ships with: it loads, carries its metadata, and classifies
held-out real images (the paper reproduction's test images, never used to
train or choose it) well above chance, with a Grad-CAM of the image's size."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from training.common.resources import default_model_path, model_card_path

REPO = Path(__file__).resolve().parents[1]
SPLIT = REPO / "results" / "shipped" / "split.csv"


@pytest.fixture(scope="module")
def shipped():
    path = default_model_path()
    if path is None:
        pytest.skip("no shipped model in resources/models/")
    from training.inference.classifier import Classifier

    return Classifier.from_file(path, device="cpu")


def test_shipped_model_metadata(shipped):
    info = shipped.info
    assert info.arch == "resnet50_lstm" and info.lesion_head  # v2: the paper's ResNet50-LSTM + a lesion map
    assert info.band and info.band[0] <= info.threshold <= info.band[1] and info.calibration.get("temperature")
    assert info.class_names == ["Normal", "COVID", "Pneumonia"] and info.positive_class == "COVID"
    assert 0.0 < info.threshold < 1.0
    assert info.metrics["n"] > 0 and 0.0 <= info.metrics["accuracy"] <= 1.0
    assert model_card_path() is not None and "Not a medical device" in model_card_path().read_text()


def test_shipped_model_on_held_out_paper_test_images(shipped, cxr1000):
    rows = [r for r in csv.DictReader(SPLIT.open()) if r["split"] == "paper_test"]
    assert len(rows) == 100
    picked = [r for r in rows if r["label"] == "COVID"][:15] + [r for r in rows if r["label"] == "Normal"][:15]
    paths = [cxr1000 / r["file"] for r in picked]
    preds = list(shipped.classify_paths(paths))
    assert all(p.status == "ok" for p in preds)
    truth = np.array([r["label"] == "COVID" for r in picked])
    p = np.array([pr.p_covid for pr in preds])
    from training.model.metrics import roc_auc

    assert roc_auc(truth.astype(int), p) >= 0.8, "COVID films must rank above Normal films"
    assert p[truth].mean() > p[~truth].mean() + 0.2
    for pr in preds:  # three calibrated probabilities that sum to one, a lesion map, lung involvement
        assert sum(pr.probs.values()) == pytest.approx(1.0, abs=1e-4) and pr.has_lesion_map
        assert pr.lung_involvement is not None and 0.0 <= pr.lung_involvement <= 1.0


def test_shipped_model_gradcam_on_a_real_dicom(shipped, dicom_dir):
    from training.imaging.loading import load_image
    from training.inference.explain import gradcam

    img = load_image(dicom_dir / "cxr01_rsna_normal-2_jpegbaseline.dcm")
    heat = gradcam(shipped, img.pixels)
    assert heat.shape == img.pixels.shape and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() <= 1.0
