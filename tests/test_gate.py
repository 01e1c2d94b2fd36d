"""The lung segmenter and the chest-radiograph gate, on real images."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.common.errors import ModelFileError
from training.common.resources import default_model_path
from training.gate.gate import ChestGate
from training.gate.notes import ATTENTION_OUTSIDE_NOTE, INVERTED_NOTE, REFUSAL_PREFIX, heatmap_in_lungs
from training.gate.segmenter import default_segmenter_path, read_segmenter_info
from training.gate.segmenter_net import load_segmenter_module
from training.imaging.loading import load_image
from training.inference.classifier import Classifier
from training.inference.result import GATE_CODE, Prediction

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "lung_segmenter"
NOT_CXR = [
    "photo_natural__horses.jpg",  # colour photo
    "ct_slice__ieee8023-16689_1_2.png",  # CT slice saved as PNG
    "xray_hand__1.png",  # another body part
    "lateral_chest_xray__ieee8023-covid-19-pneumonia-14-L.png",  # lateral film
    "document_text__document_report.png",
    "synthetic_noise__noise_gauss_grey.png",
]


@pytest.fixture(scope="module")
def gate() -> ChestGate:
    path = default_segmenter_path()
    assert path is not None, "the lung segmenter must ship in resources/models"
    return ChestGate.from_file(path)


@pytest.fixture(scope="module")
def chest_files(data_dir) -> list[Path]:
    ext = sorted((data_dir / "external-dev" / "Normal").glob("*"))[:4]
    ext += sorted((data_dir / "external-dev" / "COVID").glob("*"))[:4]
    kaggle = sorted((data_dir / "covid-cxr-1000" / "Normal").glob("*.png"))[:3]
    kaggle += sorted((data_dir / "covid-cxr-extra-3000" / "COVID").glob("*.png"))[:3]
    return ext + kaggle + [data_dir / "dicom-samples" / "cxr07_nih_udacity_test1_nofinding.dcm",
                           data_dir / "dicom-samples" / "cxr13_wg04_RG1_J2KI_mono1.dcm"]


def test_segmenter_dice_on_held_out_pairs(data_dir):
    """The shipped segmenter on its own held-out test pairs (split committed with its run)."""
    import torch

    from training.gate.segmenter import LungSegmenter
    from training.train.segmenter_trainer import dice_per_image

    with open(RESULTS / "split.csv", newline="") as fh:
        test = [r["file"] for r in csv.DictReader(fh) if r["split"] == "test"][:12]
    assert len(test) == 12
    seg = LungSegmenter.from_file(default_segmenter_path())
    root = data_dir / "cxr-lung-masks-600"
    imgs = [np.asarray(Image.open(root / f).convert("L"), dtype=np.float32) / 255 for f in test]
    truth = torch.from_numpy(np.stack([np.asarray(Image.open(root / f.replace("images/", "masks/"))) >= 128
                                       for f in test]))[:, None]
    pred = torch.from_numpy(np.stack([s.mask for s in seg.segment_batch(imgs)]))[:, None]
    dice = dice_per_image(pred, truth)
    assert dice.mean() >= 0.93, dice
    assert dice.min() >= 0.80, dice


def test_segmenter_file_carries_metrics_and_gate():
    info = read_segmenter_info(default_segmenter_path())
    assert info.metrics["dice_mean"] >= 0.95
    assert info.gate["ranges"] and info.gate["novelty_refuse"] > info.gate["novelty_warn"] > 0
    assert all(g["fit_images"] >= 100 for g in info.gate["novelty"].values())


def test_tampered_segmenter_is_refused(tmp_path):
    src = default_segmenter_path()
    bad = tmp_path / "lungs.safetensors"
    data = bytearray(src.read_bytes())
    data[-100] ^= 0xFF  # a weight byte (the header is at the start)
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        load_segmenter_module(bad)


@pytest.mark.parametrize("name", NOT_CXR)
def test_non_chest_inputs_are_refused_with_a_reason(gate, data_dir, name):
    img = load_image(data_dir / "not-cxr-dev" / name, check_header=False)
    res, _ = gate.check(img.pixels, img.meta.colour)
    assert res.decision == "refused", res.scores
    assert res.refusal_text().startswith(REFUSAL_PREFIX) and res.reasons


def test_real_chest_xrays_are_accepted(gate, chest_files):
    for f in chest_files:
        img = load_image(f, check_header=False)
        res, _ = gate.check(img.pixels, img.meta.colour)
        assert res.decision != "refused", (f.name, res.reasons, res.scores)
        assert not res.inverted, f.name


def test_inverted_chest_xray_is_detected_and_corrected(gate, chest_files):
    for f in chest_files[:6]:
        img = load_image(f, check_header=False)
        res, fixed = gate.check(1.0 - img.pixels, 0.0)
        assert res.inverted, f.name
        assert res.decision != "refused", (f.name, res.reasons)
        np.testing.assert_allclose(fixed, img.pixels, atol=1e-6)
        assert INVERTED_NOTE in res.warning_texts()


def test_heatmap_share_inside_lungs():
    mask = np.zeros((10, 10), bool)
    mask[:, :5] = True
    heat = np.zeros((10, 10), np.float32)
    heat[:, :5] = 1.0
    heat[:, 5:] = 3.0
    assert heatmap_in_lungs(heat, mask) == pytest.approx(0.25)
    assert heatmap_in_lungs(np.zeros((4, 4)), np.ones((4, 4), bool)) is None
    p = Prediction(path=None, status="ok", label="COVID", p_covid=0.9)
    p.set_heat_share(0.25)
    assert ATTENTION_OUTSIDE_NOTE in p.warnings and p.as_row()["heatmap_in_lungs"] == "0.250"


@pytest.fixture(scope="module")
def shipped() -> Classifier:
    return Classifier.from_file(default_model_path(), device="cpu")


def test_classifier_refuses_photo_and_classifies_anyway(shipped, data_dir):
    assert shipped.gate is not None  # the shipped gate runs by default
    img = load_image(data_dir / "not-cxr-dev" / "photo_natural__horses.jpg")
    pred = shipped.predict_image(img)
    assert pred.status == "refused" and pred.code == GATE_CODE and pred.p_covid is None
    assert pred.reason.startswith(REFUSAL_PREFIX)
    forced = shipped.predict_image(img, enforce_gate=False)
    assert forced.ok and not forced.valid and not forced.verdict
    assert forced.as_row()["label"].startswith("not valid")


def test_inverted_png_classified_like_the_original(shipped, chest_files, tmp_path):
    src = chest_files[0]
    arr = np.asarray(Image.open(src).convert("L"))
    inv = tmp_path / "inverted.png"
    Image.fromarray(255 - arr).save(inv)
    a = shipped.predict_image(load_image(src))
    b = shipped.predict_image(load_image(inv))
    assert b.inverted and not a.inverted and INVERTED_NOTE in b.warnings
    assert b.p_covid == pytest.approx(a.p_covid, abs=1e-4)


def test_cli_csv_has_gate_columns(shipped, data_dir, tmp_path, chest_files):
    from training.cli.classify import main

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(data_dir / "not-cxr-dev" / "photo_natural__horses.jpg", folder / "holiday.jpg")
    shutil.copy(chest_files[0], folder / ("chest" + chest_files[0].suffix))
    out = tmp_path / "r.csv"
    assert main([str(folder), "--csv", str(out), "--no-progress", "--device", "cpu"]) == 0
    rows = {Path(r["path"]).stem: r for r in csv.DictReader(open(out, newline=""))}
    assert rows["holiday"]["status"] == "refused" and rows["holiday"]["reason"].startswith(REFUSAL_PREFIX)
    assert rows["holiday"]["suitability"] == "refused" and rows["holiday"]["label"] == ""
    assert rows["chest"]["status"] == "ok" and rows["chest"]["suitability"] in ("suitable", "warning")
    assert 0.0 <= float(rows["chest"]["heatmap_in_lungs"]) <= 1.0


def test_segmenter_engines_match_monai_eager_for_any_batch(chest_files, tmp_path, monkeypatch):
    """The CPU segmenter runs from its cached ONNX Runtime graph (built and checked on the first
    load, then the PyTorch network is never built), or as a frozen TorchScript graph
    (``engine="torch"``): both give the numbers of MONAI's eager BasicUNet, for one image or several."""
    import torch

    from training.gate import segmenter_net as segmod
    from training.gate.segmenter import LungSegmenter, to_seg_input
    from training.gate.segmenter_net import SegmentAndPool, load_segmenter_module

    monkeypatch.setenv("XRAY_ENGINE_CACHE", str(tmp_path / "engines"))
    net, _ = load_segmenter_module(default_segmenter_path())
    built = []
    real_build = segmod.build_segmenter
    monkeypatch.setattr(segmod, "build_segmenter", lambda *a, **k: built.append(1) or real_build(*a, **k))
    first = LungSegmenter.from_file(default_segmenter_path())
    assert first.engine_name == "onnx" and len(built) == 1 and list((tmp_path / "engines").glob("*.onnx"))
    onnx = LungSegmenter.from_file(default_segmenter_path())
    assert onnx.engine_name == "onnx" and onnx.net is None and len(built) == 1  # cached: no network built
    frozen = LungSegmenter.from_file(default_segmenter_path(), engine="torch")
    assert frozen.engine_name == "torch" and frozen.net is not None
    ims = [load_image(f).pixels for f in chest_files[:3]]
    with torch.inference_mode():
        x = torch.from_numpy(np.concatenate([to_seg_input(im) for im in ims]))
        logits = net(x)
        _, feats = SegmentAndPool(net)(x)
    for seg, tol in ((frozen, 1e-5), (onnx, 1e-4)):
        for batch in (ims[:1], ims):
            out = seg.segment_batch(batch)
            for i, o in enumerate(out):
                np.testing.assert_allclose(o.prob, torch.sigmoid(logits[i, 0]).numpy(), atol=tol)
                np.testing.assert_allclose(o.features, feats[i].numpy(), atol=tol)


def test_orientation_graphs_match_the_networks(chest_files, tmp_path, monkeypatch):
    """The orientation check's cached graphs give the PyTorch networks' probabilities."""
    from training.gate.orientation import OrientationDetector, default_orientation_path

    monkeypatch.setenv("XRAY_ENGINE_CACHE", str(tmp_path / "engines"))
    onnx = OrientationDetector.from_file(default_orientation_path())
    torch_det = OrientationDetector.from_file(default_orientation_path(), engine="torch")
    assert (onnx.engine_name, torch_det.engine_name) == ("onnx", "torch")
    assert OrientationDetector.from_file(default_orientation_path()).engine_name == "onnx"
    ims = [load_image(f).pixels for f in chest_files[:3]]
    (p8a, pma), (p8b, pmb) = onnx.probabilities(ims), torch_det.probabilities(ims)
    np.testing.assert_allclose(p8a, p8b, atol=1e-5)
    np.testing.assert_allclose(pma, pmb, atol=1e-5)
    assert [r.rotation_deg for r in onnx.detect_batch(ims)] == [r.rotation_deg for r in torch_det.detect_batch(ims)]


def test_model_card_section_comes_from_the_segmenter_file_and_benchmark():
    import json

    from training.release.model_card import render_segmenter

    bench = json.loads((RESULTS / "gate_bench.json").read_text())
    text = render_segmenter(default_segmenter_path(), bench)
    info = read_segmenter_info(default_segmenter_path())
    assert f"{info.metrics['dice_mean']:.4f}" in text and "not-cxr-dev" in text
    assert "Lung segmenter and chest-radiograph gate" in (REPO / "resources" / "models" / "MODEL_CARD.md").read_text()


def test_a_second_source_gets_its_own_novelty_model(monkeypatch):
    """``calibrate(more_sources=...)``: a film need only look like one source of chest films
    (a Gaussian per source, the smallest scaled distance counts); pooling the sources into one
    Gaussian instead would accept what lies between them."""
    from training.gate.gate import NOVELTY_REASONS, SHAPE_FEATURES, calibrate

    rng = np.random.default_rng(0)
    dims = {"outline": len(SHAPE_FEATURES), "features": 6, "appearance": 5, "grey_levels": 4}

    def vectors(n, centre):
        return {k: rng.normal(centre, 1.0, size=(n, d)) for k, d in dims.items()}

    measures = [{k: float(v) for k, v in zip(SHAPE_FEATURES, rng.normal(0.5, 0.05, len(SHAPE_FEATURES)))}
                for _ in range(300)]
    a_fit, a_val, b_fit, b_val = vectors(400, 0.0), vectors(300, 0.0), vectors(400, 6.0), vectors(300, 6.0)
    one = calibrate(a_fit, measures, a_val)
    two = calibrate(a_fit, measures, a_val, source="A", more_sources=[("B", b_fit, b_val)])
    assert all(len(two["novelty"][k]["components"]) == 1 for k in NOVELTY_REASONS)
    assert two["novelty"]["outline"]["components"][0]["source"] == "B"
    assert two["validation_images"] == 600 and two["ranges"] == one["ranges"]  # outline ranges: the first source's

    import training.gate.gate as gate_module  # the gate's own scoring, on vectors instead of a segmentation

    monkeypatch.setattr(gate_module, "measure", lambda seg, colour=0.0: {})
    monkeypatch.setattr(gate_module, "novelty_vectors", lambda seg, f: seg)

    def score(thresholds, centre):
        return ChestGate(None, thresholds).measure({k: np.full(d, centre) for k, d in dims.items()})["novelty"]

    assert score(one, 6.0) > one["novelty_refuse"]  # a B film is novel to a gate that knows only A
    assert score(two, 6.0) < two["novelty_warn"]  # ... and familiar once B has its own model
    assert score(two, 3.0) > two["novelty_refuse"]  # between the two sources: still refused
    assert score(two, 0.0) < two["novelty_warn"]


def test_shipped_gate_knows_both_sources_of_training_films():
    info = read_segmenter_info(default_segmenter_path())
    for name, g in info.gate["novelty"].items():
        assert [c["source"] for c in g.get("components", [])] == ["cxr-infection-3class"], name
