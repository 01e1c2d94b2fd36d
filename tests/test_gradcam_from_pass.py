"""Grad-CAM from the classification pass (``training.inference.explain.cams_from_features``):
the engine returns layer4's activations with the logits and only the head's
gradient is computed in torch.  Known answer: the ``grad-cam`` package's
``GradCAM`` (full forward + backward of the PyTorch model, the reference) on
real films, for the shipped model v1 (ResNet50, binary: the single logit), the
shipped default (model v2 when installed) and the tiny v2 model (ResNet50-LSTM,
three classes + lesion decoder: the COVID logit),
on both engines, to <= 1e-4 per pixel; and no second backbone pass."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

from training.common.resources import default_model_path, v1_model_path
from training.imaging.loading import load_image
from training.inference import explain
from training.inference.classifier import Classifier

pytest.importorskip("onnxruntime")
TOL = 1e-4  # per pixel, maps in [0, 1]


@pytest.fixture(scope="module")
def films(cxr1000) -> list[Path]:
    return sorted((cxr1000 / "COVID").glob("*.png"))[:2] + sorted((cxr1000 / "Normal").glob("*.png"))[:2]


def _model_file(which: str, tiny_v2_model: Path) -> Path:
    if which == "tiny_v2":
        return tiny_v2_model
    # v1: ResNet50, two classes; default: the shipped default (model v2: three classes, lesion map)
    path = v1_model_path() if which == "shipped_v1" else default_model_path()
    if path is None or (which == "default" and path == v1_model_path()):
        pytest.skip(f"{which} model not installed")
    return path


def _clf(path: Path, engine: str, gate=None) -> Classifier:
    return Classifier.from_file(path, device="cpu", gate=gate, mixed_precision=False, engine=engine)


class _TwoDim(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).reshape(x.shape[0], -1)


def reference_gradcam(clf: Classifier, batch: torch.Tensor) -> np.ndarray:
    """pytorch-grad-cam's GradCAM on ``cam_layer`` with the package's own targets, gradients on (never under
    no_grad or inference mode), fp32, weights frozen for the pass so no ``.grad`` is left on the model."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget, ClassifierOutputTarget

    model = clf.model
    target = ClassifierOutputTarget(clf.covid_index) if clf.multiclass else BinaryClassifierOutputTarget(1)
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad():  # also when called inside predict_full
            assert torch.is_grad_enabled()
            with GradCAM(model=_TwoDim(model), target_layers=[model.cam_layer]) as cam:
                cam.compute_input_gradient = True  # the input carries the graph (weights frozen)
                maps = cam(input_tensor=batch.clone().contiguous(memory_format=torch.channels_last),
                           targets=[target] * batch.shape[0])
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
    return np.asarray(maps, dtype=np.float32)


@contextlib.contextmanager
def backbone_calls(model):
    """Count forward passes of the PyTorch backbone's first stage."""
    calls = [0]
    handle = model.backbone.layer1.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        handle.remove()


@pytest.mark.parametrize("engine", ["onnx", "torch"])
@pytest.mark.parametrize("which", ["shipped_v1", "default", "tiny_v2"])
def test_one_pass_cam_matches_pytorch_grad_cam(which, engine, tiny_v2_model, films):
    clf = _clf(_model_file(which, tiny_v2_model), engine)
    x = torch.from_numpy(np.stack([clf.model_input(load_image(p).pixels)[0] for p in films]))
    ref = reference_gradcam(clf, x)
    assert ref.shape == (len(films), clf.input_size, clf.input_size)
    assert sum(float(r.std()) > 0.05 for r in ref) >= len(ref) // 2  # real maps (an untrained model may give a zero one)
    plain = clf.predict_full(x)
    with backbone_calls(clf.model) as calls:
        probs, lesions, cams = clf.predict_full(x, with_cam=True)
    assert clf.active_engine == engine, clf.engine_note
    assert calls[0] == (0 if engine == "onnx" else 1)  # one pass (ONNX Runtime: none on the PyTorch backbone)
    assert cams is not None and cams.shape == ref.shape and cams.dtype == np.float32
    diff = np.abs(cams - ref).max()
    assert diff <= TOL, diff
    np.testing.assert_allclose(probs, plain[0], rtol=0, atol=1e-6)  # the same classification
    assert (lesions is None) == (plain[1] is None) == (not clf.has_lesion_map)
    assert np.abs(explain.gradcam_maps(clf, x) - ref).max() <= TOL
    assert clf.model.training is False and all(p.grad is None for p in clf.model.parameters())
    if which == "tiny_v2":  # the pass also works from inside inference mode, and for one image
        with torch.inference_mode():
            one = explain.gradcam_maps(clf, x[:1])
        assert np.abs(one[0] - ref[0]).max() <= TOL


def test_a_session_error_falls_back_and_the_cam_still_comes(tiny_v2_model, films):
    clf = _clf(tiny_v2_model, "onnx")
    x = torch.from_numpy(np.stack([clf.model_input(load_image(p).pixels)[0] for p in films[:2]]))
    clf.predict_full(x[:1])
    assert clf.active_engine == "onnx" and clf.fast_engine().has_features, clf.engine_note

    class Broken:
        def run(self, *_a, **_k):
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : simulated")

    clf.fast_engine().session = Broken()
    probs, _, cams = clf.predict_full(x, with_cam=True)
    assert clf.active_engine == "torch" and "failed on a batch" in clf.engine_note
    assert np.abs(cams - reference_gradcam(clf, x)).max() <= TOL


def test_classify_paths_lung_shares_come_from_the_classification_pass(tiny_v2_model, films, monkeypatch):
    from training.inference.classifier import load_gate

    gate = load_gate("default")
    if gate is None:
        pytest.skip("no lung segmenter installed")
    clf = _clf(tiny_v2_model, "onnx", gate=gate)
    plain = list(clf.classify_paths(films))
    with backbone_calls(clf.model) as calls:
        explained = list(clf.classify_paths(films, explain=True))
    assert clf.active_engine == "onnx", clf.engine_note
    assert calls[0] == 0  # no Grad-CAM pass through the PyTorch backbone
    assert all(p.ok for p in explained)
    assert sum(p.heat_in_lungs is not None for p in explained) >= 2  # None: an all-zero map (untrained model)
    assert [p.p_covid for p in explained] == pytest.approx([p.p_covid for p in plain], abs=1e-6)

    def two_passes(classifier, x):  # the former way: classify, then the package's Grad-CAM
        logits, lesion = classifier.outputs(x)
        return logits, lesion, reference_gradcam(classifier, torch.from_numpy(np.asarray(x)))

    monkeypatch.setattr(explain, "pass_with_cams", two_passes)
    before = list(clf.classify_paths(films, explain=True))
    for new, old in zip(explained, before):
        assert (new.heat_in_lungs is None) == (old.heat_in_lungs is None)
        if new.heat_in_lungs is not None:
            assert abs(new.heat_in_lungs - old.heat_in_lungs) <= 1e-4


def test_an_explanation_failure_never_fails_the_classification(tiny_v2_model, films, monkeypatch):
    from training.inference.classifier import load_gate

    clf = _clf(tiny_v2_model, "torch", gate=load_gate("default"))

    def broken(*_a, **_k):
        raise RuntimeError("head exploded")

    monkeypatch.setattr(explain, "cams_from_features", broken)
    x = torch.from_numpy(np.stack([clf.model_input(load_image(p).pixels)[0] for p in films[:2]]))
    probs, _, cams = clf.predict_full(x, with_cam=True)
    assert cams is None and np.all(np.isfinite(probs))
    if clf.gate is not None:
        preds = list(clf.classify_paths(films[:2], explain=True))
        assert all(p.ok and p.heat_in_lungs is None for p in preds)


def test_kept_heatmaps_are_the_explanation_the_secondary_capture_shows(films):
    """``classify_paths(keep_heatmaps=True)`` (the DICOM node): each result keeps its pass's map, and
    placed on the image it is ``explain.gradcam`` of the same pixels - no second Grad-CAM pass."""
    from training.inference.classifier import load_gate

    path = default_model_path()
    gate = load_gate("default")
    if path is None or gate is None:
        pytest.skip("shipped model or lung segmenter not installed")
    clf = _clf(path, "auto", gate=gate)
    preds = list(clf.classify_paths(films, keep_heatmaps=True))
    assert all(p.ok and p.heat_input is not None for p in preds)
    assert all(p.heat_input.shape == (clf.input_size, clf.input_size) for p in preds)
    for p in preds:
        pixels = p.model_frame(load_image(p.path).pixels)
        with backbone_calls(clf.model) as calls:
            kept = explain.heatmap_of(clf, p, pixels)
        assert calls[0] == 0 and kept.shape == pixels.shape  # placed, not computed again
        assert np.abs(kept - explain.gradcam(clf, pixels, p.lung_mask)).max() <= TOL, p.path.name
    assert all(p.heat_input is None for p in clf.classify_paths(films[:1]))  # not kept unless asked


def test_the_app_places_the_kept_map_at_its_colour_layer_size(films):
    """The app asks ``heatmap_of`` for the colour layer's grid (a 2k film's map at 1024 px): the
    same map as the full-size one, area-averaged, and the same share inside the lungs."""
    import torch.nn.functional as F

    from training.inference.classifier import load_gate, lung_share

    path = default_model_path()
    gate = load_gate("default")
    if path is None or gate is None:
        pytest.skip("shipped model or lung segmenter not installed")
    clf = _clf(path, "auto", gate=gate)
    (p,) = list(clf.classify_paths(films[:1], keep_heatmaps=True))
    pixels = p.model_frame(load_image(p.path).pixels)
    big = F.interpolate(torch.from_numpy(pixels)[None, None], size=(2048, 1792), mode="bilinear")[0, 0].numpy()
    full = explain.heatmap_of(clf, p, big)
    grid = explain.colour_layer_size(big.shape)
    assert grid == (1024, 896)
    small = explain.heatmap_of(clf, p, big, grid)
    assert small.shape == grid and small.dtype == np.float32 and 0.99 <= small.max() <= 1.0
    pooled = F.interpolate(torch.from_numpy(full)[None, None], size=grid, mode="area")[0, 0].numpy()
    assert np.abs(small - pooled).max() <= 0.02
    assert abs(lung_share(p, small) - lung_share(p, full)) <= 0.01
