"""Prediction and explanation on real images with tiny, briefly trained models
(input size 64, a few Adam steps on 32 real PNGs)."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from training.common.errors import XrayError
from training.imaging.loading import load_image
from training.imaging.resize import preprocess_batch
from training.inference.classifier import Classifier
from training.inference.explain import gradcam, overlay_rgb, save_overlay_png, smoothgrad
from training.inference.result import CSV_COLUMNS, Prediction
from training.model.modelfile import ModelInfo, load_model, loaded_from_module, save_model
from training.model.networks import build_model

SIZE = 64
GOOD_DICOM = "cxr07_nih_udacity_test1_nofinding.dcm"
CT_DICOM = "cxr11_nih_udacity_test5_modality-CT.dcm"


def _pngs(cxr1000: Path, per_class: int) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for label, cls in ((0, "Normal"), (1, "COVID")):
        for p in sorted((cxr1000 / cls).glob("*.png"))[:per_class]:
            paths.append(p)
            labels.append(label)
    return paths, labels


@pytest.fixture(scope="module")
def train_set(cxr1000):
    paths, labels = _pngs(cxr1000, 16)
    x = torch.from_numpy(preprocess_batch([load_image(p).pixels for p in paths], SIZE))
    return x, torch.tensor(labels, dtype=torch.float32), paths


def _train(arch: str, x: torch.Tensor, y: torch.Tensor, steps: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(arch, "scratch", input_size=SIZE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randperm(len(x), generator=g)[:8]
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)  # a trained model as loaded from a file: no gradient buffers
    return model.eval()


def _classifier(arch, train_set, steps, **kw):
    x, y, _ = train_set
    model = _train(arch, x, y, steps=steps)
    return Classifier(loaded_from_module(model, ModelInfo(arch=arch, input_size=SIZE)), device="cpu", **kw)


@pytest.fixture(scope="module")
def hybrid(train_set):
    return _classifier("resnet50_lstm", train_set, 8, batch_size=4)


@pytest.fixture(scope="module")
def resnet(train_set):
    return _classifier("resnet50", train_set, 8, batch_size=4)


@pytest.fixture(scope="module")
def lstm(train_set):
    return _classifier("lstm", train_set, 30)


@pytest.fixture(scope="module")
def image(cxr1000):
    return load_image(sorted((cxr1000 / "COVID").glob("*.png"))[40])


def _check_heatmap(heat: np.ndarray, shape: tuple[int, int]) -> None:
    assert heat.shape == shape
    assert heat.dtype == np.float32
    assert np.isfinite(heat).all()
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    assert heat.std() > 0.01, heat.std()


@pytest.fixture(scope="module")
def more_images(cxr1000):
    return [load_image(p) for p in sorted((cxr1000 / "COVID").glob("*.png"))[41:47]]


@pytest.mark.parametrize("which", ["hybrid", "resnet"])
def test_gradcam_at_image_resolution(request, which, image, more_images):
    clf = request.getfixturevalue(which)
    assert image.pixels.shape == (299, 299)
    # a model trained 8 steps may see no COVID evidence at all in these films (every location's weighted
    # activation sum negative: an all-zero map, as pytorch-grad-cam gives too); which way it goes depends on the
    # last bits of the training run (threads, BLAS). Then the evidence against COVID must show as a real map
    # once the head's sign is flipped (the same model with the opposite logit).
    films = [image] + more_images
    heats = [gradcam(clf, im.pixels) for im in films]
    for heat in heats:
        assert heat.shape == (299, 299) and heat.dtype == np.float32 and np.isfinite(heat).all()
        assert heat.min() >= 0.0 and heat.max() <= 1.0
    if max(h.std() for h in heats) <= 0.01:
        flipped = copy.deepcopy(clf.model)
        last = flipped.fc if which == "resnet" else flipped.head.fc
        with torch.no_grad():
            last.weight.neg_()
            last.bias.neg_()
        other = Classifier(loaded_from_module(flipped, clf.info), device="cpu")
        heats = [gradcam(other, im.pixels) for im in films]
    _check_heatmap(max(heats, key=lambda h: h.std()), (299, 299))
    # the model is left as it was: eval mode, trainable weights, no gradient buffers
    assert not clf.model.training
    assert all(p.requires_grad for p in clf.model.parameters())
    assert all(p.grad is None for p in clf.model.parameters())


def test_gradcam_on_non_square_image_and_inside_inference_mode(hybrid, image):
    pixels = image.pixels[:, 20:270]  # 299 x 250
    with torch.inference_mode():
        heat = gradcam(hybrid, pixels)
    _check_heatmap(heat, (299, 250))


def test_lstm_saliency(lstm, image):
    assert lstm.model.cam_layer is None
    heat = gradcam(lstm, image.pixels)  # dispatches to SmoothGrad
    _check_heatmap(heat, (299, 299))
    again = smoothgrad(lstm, image.pixels)
    assert np.array_equal(heat, again)  # seeded noise: deterministic


def test_overlay(tmp_path, image):
    heat = np.tile(np.linspace(0, 1, 299, dtype=np.float32), (299, 1))
    rgb = overlay_rgb(image.pixels, heat, alpha=0.4)
    assert rgb.shape == (299, 299, 3) and rgb.dtype == np.uint8
    assert np.array_equal(overlay_rgb(image.pixels, heat, alpha=0.0)[..., 0],
                          np.rint(image.pixels * 255).astype(np.uint8))
    # jet on request: cold (blue) on the left, hot (red) on the right
    full = overlay_rgb(image.pixels, heat, alpha=1.0, cmap="jet", floor=0.0)
    assert full[150, 0, 2] > full[150, 0, 0] and full[150, -1, 0] > full[150, -1, 2]
    # the default (training.common.heat_style): the left half (below 0.5 of the maximum) stays the grey image,
    # the right end is inferno's pale yellow
    default = overlay_rgb(image.pixels, heat, alpha=1.0)
    grey = np.rint(image.pixels * 255).astype(np.uint8)
    assert np.array_equal(default[:, :140, 0], grey[:, :140]) and np.array_equal(default[:, :140, 2], grey[:, :140])
    assert default[150, -1, 0] > 240 and default[150, -1, 1] > 200 and default[150, -1, 2] < 200
    out = tmp_path / "sub" / "overlay.png"
    save_overlay_png(out, image.pixels, heat, 0.4)
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (299, 299) and im.mode == "RGB"
        assert np.array_equal(np.asarray(im), rgb)
    assert not list(out.parent.glob(".*.tmp"))


def test_predict_arrays_and_image(hybrid, train_set, image):
    x, _, paths = train_set
    pixels = [load_image(p).pixels for p in paths[:6]]
    probs = hybrid.predict_arrays(pixels)
    assert probs.shape == (6,) and probs.dtype == np.float32
    assert ((probs >= 0) & (probs <= 1)).all()
    with torch.inference_mode():  # same memory format as the Classifier (kernels differ in the last digits)
        direct = torch.sigmoid(hybrid.model(x[:6].contiguous(memory_format=torch.channels_last))).numpy()
    np.testing.assert_allclose(probs, direct, atol=5e-4)  # batches of 4 vs 6: other kernels, last digits
    pred = hybrid.predict_image(image)
    assert isinstance(pred, Prediction) and pred.status == "ok" and pred.ok
    assert Path(pred.path) == Path(image.meta.path)
    assert pred.threshold == 0.5
    assert pred.label == ("COVID" if pred.p_covid >= 0.5 else "Normal")
    assert pred.meta is image.meta
    assert set(pred.as_row()) == set(CSV_COLUMNS)


def test_threshold_and_labels(hybrid, image):
    p = hybrid.predict_image(image).p_covid
    old = hybrid.threshold
    try:
        hybrid.threshold = max(1e-6, p - 1e-3)
        assert hybrid.predict_image(image).label == "COVID"
        hybrid.threshold = min(1 - 1e-6, p + 1e-3)
        pred = hybrid.predict_image(image)
        assert pred.label == "Normal" and pred.threshold == hybrid.threshold
        for bad in (0, 1, -0.2, 1.5, float("nan"), "x"):
            with pytest.raises(XrayError):
                hybrid.threshold = bad
    finally:
        hybrid.threshold = old


def test_from_file_uses_file_threshold(tmp_path, hybrid):
    info = ModelInfo(arch="resnet50_lstm", input_size=SIZE, threshold=0.3, class_names=["Normal", "COVID"])
    path = save_model(hybrid.model, info, tmp_path / "m.safetensors")
    clf = Classifier.from_file(path, device="cpu")
    assert clf.threshold == 0.3 and clf.info.arch == "resnet50_lstm" and clf.device.type == "cpu"


def test_classify_paths_mixed_inputs(hybrid, cxr1000, dicom_dir, tmp_path):
    pngs, _ = _pngs(cxr1000, 2)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # PNG signature, no image
    text = tmp_path / "notes.png"
    text.write_text("not an image at all\n")
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.png"
    paths = [pngs[0], broken, dicom_dir / GOOD_DICOM, missing, pngs[1], text, dicom_dir / CT_DICOM, empty,
             pngs[2], pngs[3]]
    preds = list(hybrid.classify_paths([str(p) for p in paths]))
    assert [Path(p.path) for p in preds] == paths
    want = ["ok", "refused", "ok", "refused", "ok", "refused", "refused", "refused", "ok", "ok"]
    assert [p.status for p in preds] == want
    for pred in preds:
        if pred.ok:
            assert 0.0 <= pred.p_covid <= 1.0 and pred.label in ("COVID", "Normal") and not pred.reason
        else:
            assert pred.p_covid is None and pred.label is None
            assert pred.reason and "\n" not in pred.reason
    assert preds[3].code == "unreadable" and preds[6].code == "modality" and preds[7].code == "empty"
    assert preds[2].meta.kind == "dicom"
    # batching does not change the numbers
    direct = hybrid.predict_arrays([load_image(p).pixels for p in (pngs[0], dicom_dir / GOOD_DICOM)])
    np.testing.assert_allclose([preds[0].p_covid, preds[2].p_covid], direct, atol=1e-5)
    # "classify anyway": the CT-tagged file goes through with a warning
    anyway = list(hybrid.classify_paths([dicom_dir / CT_DICOM], check_header=False))
    assert anyway[0].status == "ok" and anyway[0].warnings


def test_classify_paths_cancel_stops_early(hybrid, cxr1000):
    pngs, _ = _pngs(cxr1000, 6)  # 12 files, batch size 4
    stop = threading.Event()
    got = []
    for pred in hybrid.classify_paths(pngs, cancel=stop):
        got.append(pred)
        stop.set()  # cancel after the first result: the running batch finishes, no more start
    assert 1 <= len(got) <= hybrid.batch_size < len(pngs)
    calls = []
    got = list(hybrid.classify_paths(pngs, cancel=lambda: calls.append(1) or len(calls) > 2))
    assert len(got) == 2 * hybrid.batch_size


def test_load_model_then_classify_on_saved_file(tmp_path, resnet, cxr1000):
    info = ModelInfo(arch="resnet50", input_size=SIZE)
    path = save_model(resnet.model, info, tmp_path / "r.safetensors", half=True)
    clf = Classifier(load_model(path), device="cpu", batch_size=3)
    pngs, _ = _pngs(cxr1000, 2)
    preds = list(clf.classify_paths(pngs))
    ref = resnet.predict_arrays([load_image(p).pixels for p in pngs])
    np.testing.assert_allclose([p.p_covid for p in preds], ref, atol=1e-2)  # fp16-rounded weights


def test_classify_paths_can_keep_a_preview_so_thumbnails_need_no_second_decode(resnet, cxr1000, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"")
    good = sorted((cxr1000 / "COVID").glob("*.png"))[0]
    preds = list(resnet.classify_paths([good, bad], preview=64))
    assert preds[0].ok and preds[0].preview is not None
    assert max(preds[0].preview.shape) <= 128 and preds[0].preview.dtype == np.float32
    assert preds[1].preview is None and preds[1].status == "refused"
    assert list(resnet.classify_paths([good]))[0].preview is None  # off by default
