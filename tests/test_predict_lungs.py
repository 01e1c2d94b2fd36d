"""A lung-focused, calibrated model through every front end: the single-image
path (the app), the batch path (the app's folder mode and ``xray-classify``)
and Grad-CAM use one image -> tensor path and give the same P(COVID); the
borderline band turns a verdict into "Indeterminate - review"."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from training.imaging.loading import load_image
from training.inference.classifier import Classifier
from training.inference.explain import gradcam
from training.inference.result import CSV_COLUMNS, INDETERMINATE, Prediction
from training.model.lung_input import InputSpec
from training.model.modelfile import ModelInfo, load_model, save_model
from training.model.networks import build_model

SIZE = 64


@pytest.fixture(scope="module")
def lung_model_file(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("resnet50", "scratch").eval()
    spec = InputSpec("lungs", "clahe")
    info = ModelInfo(arch="resnet50", input_size=SIZE, threshold=0.4, band=[0.3, 0.6],
                     calibration={"method": "temperature", "temperature": 2.0},
                     preprocessing={**ModelInfo.__dataclass_fields__["preprocessing"].default_factory(),
                                    **spec.to_metadata()})
    path = tmp_path_factory.mktemp("m") / "lungs.safetensors"
    save_model(model, info, path)
    return path


@pytest.fixture(scope="module")
def films(cxr1000):
    return sorted((cxr1000 / "COVID").glob("*.png"))[:3] + sorted((cxr1000 / "Normal").glob("*.png"))[:3]


def test_lung_model_metadata_round_trip(lung_model_file):
    info = load_model(lung_model_file).info
    assert InputSpec.from_metadata(info.preprocessing) == InputSpec("lungs", "clahe")
    assert info.temperature == 2.0 and info.band == [0.3, 0.6]


def test_single_image_batch_and_arrays_agree(lung_model_file, films):
    clf = Classifier.from_file(lung_model_file, device="cpu", mixed_precision=False, batch_size=4)
    batch = list(clf.classify_paths(films))
    assert all(p.ok for p in batch)
    for path, b in zip(films, batch):
        single = clf.predict_image(load_image(path))
        assert single.p_covid == pytest.approx(b.p_covid, abs=1e-5)
        assert single.input_box is not None and not single.input_box.whole  # the lungs were cropped
        assert b.model_version == clf.version_text
    arrays = clf.predict_arrays([load_image(p).pixels for p in films])
    assert np.allclose(arrays, [b.p_covid for b in batch], atol=1e-5)


def test_temperature_is_applied_to_every_output(lung_model_file, films):
    clf = Classifier.from_file(lung_model_file, device="cpu", mixed_precision=False, gate=None)
    x = clf.model_input(load_image(films[0]).pixels)[0][None]
    with torch.inference_mode():
        logit = float(clf.model(torch.from_numpy(x))[0])
    assert clf.predict_batch(x)[0] == pytest.approx(1 / (1 + np.exp(-logit / 2.0)), abs=1e-6)


def test_gradcam_of_a_lung_model_is_zero_outside_the_lungs_box(lung_model_file, films):
    clf = Classifier.from_file(lung_model_file, device="cpu", mixed_precision=False)
    img = load_image(films[0])
    pred = clf.predict_image(img)
    heat = gradcam(clf, img.pixels, pred.lung_mask)
    assert heat.shape == img.pixels.shape
    r0, c0, r1, c1 = pred.input_box.pixels(heat.shape)
    outside = np.ones(heat.shape, bool)
    outside[r0:r1, c0:c1] = False
    if outside.any():
        assert heat[outside].max() == 0.0
    assert heat[r0:r1, c0:c1].max() > 0


@pytest.mark.parametrize("p,expected", [(0.2, "Normal"), (0.35, INDETERMINATE), (0.5, INDETERMINATE),
                                        (0.7, "COVID")])
def test_band_turns_a_verdict_into_indeterminate(p, expected):
    label = "COVID" if p >= 0.4 else "Normal"
    pred = Prediction(path=None, status="ok", label=label, p_covid=p, threshold=0.4, band=(0.3, 0.6))
    assert pred.result == expected
    assert pred.indeterminate == (expected == INDETERMINATE)
    row = pred.as_row()
    assert set(row) == set(CSV_COLUMNS)
    assert row["result"] == expected and row["label"] == label
    forced = Prediction(path=None, status="ok", label=label, p_covid=p, threshold=0.4, band=(0.3, 0.6), valid=False)
    assert not forced.indeterminate and forced.result.startswith("not valid")


def test_cli_csv_carries_the_result_column(lung_model_file, films, tmp_path):
    from training.cli.classify import main

    out = tmp_path / "r.csv"
    assert main([str(f) for f in films[:2]] + ["--model", str(lung_model_file), "--csv", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 2 and all(r["result"] in ("COVID", "Normal", INDETERMINATE) for r in rows)


def test_cli_heatmaps_reuse_the_gates_lung_mask(lung_model_file, films, tmp_path, monkeypatch):
    """``xray-classify --heatmaps`` with a lung model segments each image once: the gate's mask travels on the
    batch Prediction and serves the lung crop of Grad-CAM too."""
    from training.cli.classify import main
    from training.gate.segmenter import LungSegmenter

    clf = Classifier.from_file(lung_model_file, device="cpu", mixed_precision=False, batch_size=4)
    preds = list(clf.classify_paths(films[:2]))
    assert all(p.ok and p.lung_mask is not None and p.lung_mask.shape == (256, 256) for p in preds)

    segmented = []
    batch, single = LungSegmenter.segment_batch, LungSegmenter.segment

    def count_batch(self, images):
        segmented.extend(range(len(images)))
        return batch(self, images)

    def count_single(self, pixels):
        segmented.append(0)
        return single(self, pixels)

    monkeypatch.setattr(LungSegmenter, "segment_batch", count_batch)
    monkeypatch.setattr(LungSegmenter, "segment", count_single)
    heat = tmp_path / "heat"
    out = tmp_path / "r.csv"
    assert main([str(f) for f in films] + ["--model", str(lung_model_file), "--csv", str(out), "--no-progress",
                                           "--heatmaps", str(heat)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == len(films) and all(r["status"] == "ok" and r["heatmap"] for r in rows)
    assert len(list(heat.glob("*.png"))) == len(films)
    assert len(segmented) == len(films)  # the gate's pass only; no second segmentation for the heatmaps


def test_warm_up_builds_the_engine_before_the_first_image(tmp_path, monkeypatch):
    """The loading worker warms the classifier up (xray_gui.tasks.load_model_task):
    the fast engine is tried and the gate has run before any real image."""
    from training.common.resources import default_model_path
    from training.inference.classifier import Classifier

    monkeypatch.setenv("XRAY_ENGINE_CACHE", str(tmp_path / "engines"))
    clf = Classifier.from_file(default_model_path(), device="cpu")
    calls = []
    if clf.gate is not None:
        real = clf.gate.check
        monkeypatch.setattr(clf.gate, "check", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert not clf._fast_tried
    clf.warm_up()
    assert clf._fast_tried and clf.engine_note
    assert calls == ([1] if clf.gate is not None else [])


def test_prediction_keeps_the_lung_mask_bit_packed():
    """A batch keeps one Prediction per row: the mask is stored packed (8 KB
    for 256 x 256, not 64 KB) and reads back exactly."""
    from training.inference.result import Prediction

    rng = np.random.default_rng(3)
    mask = rng.random((256, 256)) > 0.6
    p = Prediction(path=None, status="ok")
    assert p.lung_mask is None
    p.lung_mask = mask
    assert p._lung_bits[0].nbytes == 256 * 256 // 8
    back = p.lung_mask
    assert back.dtype == bool and back.shape == (256, 256) and np.array_equal(back, mask)
    odd = rng.random((5, 7)) > 0.5  # not a multiple of 8
    p.lung_mask = odd
    assert np.array_equal(p.lung_mask, odd)
    p.lung_mask = None
    assert p.lung_mask is None
