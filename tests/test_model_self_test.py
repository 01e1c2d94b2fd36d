"""The model self-test on load (issue 13, item 2): Classifier.from_file runs the
model once on two different synthetic images and refuses a file whose output
is constant, not finite, or of the wrong shape."""

from __future__ import annotations

import pytest
import torch

from training.common.errors import ModelFileError
from training.inference.classifier import Classifier
from training.model.modelfile import ModelInfo, loaded_from_module, save_model
from training.model.networks import build_model

SIZE = 64


def _lstm(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("lstm", "scratch", input_size=SIZE).eval()


def _save(model, path):
    return save_model(model, ModelInfo(arch="lstm", input_size=SIZE), path)


def test_a_sound_model_passes_and_the_test_is_cheap(tmp_path):
    clf = Classifier.from_file(_save(_lstm(), tmp_path / "ok.safetensors"), device="cpu", gate=None)
    calls = []
    hook = clf.model.register_forward_hook(lambda _m, inputs, _out: calls.append(tuple(inputs[0].shape)))
    try:
        clf.self_test()
    finally:
        hook.remove()
    assert len(calls) == 1 and calls[0][0] == 2  # cheap: one forward pass of one batch of two images


def test_a_model_with_a_zeroed_last_layer_is_refused(tmp_path):
    """Checksums recomputed by whoever zeroed the weights: only running the model shows it."""
    model = _lstm()
    with torch.no_grad():
        model.head.fc.weight.zero_()
    path = _save(model, tmp_path / "zeroed.safetensors")
    with pytest.raises(ModelFileError) as info:
        Classifier.from_file(path, device="cpu", gate=None)
    assert info.value.code == "self_test"
    assert "zeroed.safetensors" in info.value.reason
    assert "same output" in info.value.reason and "cannot tell images apart" in info.value.reason


def test_a_model_whose_output_overflows_is_refused(tmp_path):
    model = _lstm()
    with torch.no_grad():  # finite weights (the loader's NaN/inf check passes), infinite logits
        model.head.fc.weight.fill_(3e38)
        model.head.fc.bias.fill_(3e38)
    path = _save(model, tmp_path / "overflow.safetensors")
    with pytest.raises(ModelFileError) as info:
        Classifier.from_file(path, device="cpu", gate=None)
    assert info.value.code == "self_test"
    assert "not a number" in info.value.reason or "same output" in info.value.reason


class _Fixed(torch.nn.Module):
    """A stand-in network with a chosen output."""

    def __init__(self, make):
        super().__init__()
        self.make = make
        self.cam_layer = None
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.make(x)


@pytest.mark.parametrize("make, words", [
    (lambda x: torch.zeros(x.shape[0], 2), "wrong shape"),
    (lambda x: torch.full((x.shape[0],), float("nan")), "not a number"),
    (lambda x: torch.full((x.shape[0],), float("inf")), "not a number"),
    (lambda x: torch.full((x.shape[0],), 0.7), "same output"),
    (lambda x: torch.full((x.shape[0],), 40.0) + x.mean(dim=(1, 2, 3)), "same output"),  # P(COVID) saturated
    (lambda x: (_ for _ in ()).throw(RuntimeError("shape mismatch")), "fails to run"),
])
def test_self_test_names_what_is_wrong(make, words):
    clf = Classifier(loaded_from_module(_Fixed(make), ModelInfo(arch="lstm", input_size=SIZE)), device="cpu")
    with pytest.raises(ModelFileError) as info:
        clf.self_test()
    assert words in info.value.reason
    assert "Traceback" not in info.value.reason


def test_an_output_that_depends_on_the_image_passes():
    clf = Classifier(loaded_from_module(_Fixed(lambda x: x.mean(dim=(1, 2, 3)) - 0.5),
                                        ModelInfo(arch="lstm", input_size=SIZE)), device="cpu")
    clf.self_test()
