"""``training.inference.head_grad.HeadGradient``: the heads after Grad-CAM's layer in NumPy give the
logits and ``d logit[t] / dA`` of torch autograd on ``model._head`` (random heads of both architectures,
binary and three-class, and the shipped model v2), and the module never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training.inference.head_grad import HeadGradient
from training.model.networks import _trunk_features, build_model

REPO = Path(__file__).resolve().parents[1]
SHIPPED_V2 = REPO / "resources" / "models" / "covid_cxr_v2.safetensors"


def torch_reference(model: torch.nn.Module, a: torch.Tensor, target: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(N, K)`` and ``d logits[:, t] / dA`` by torch autograd on ``model._head`` in eval mode."""
    model.eval()
    x = a.detach().float().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model._head(x).reshape(x.shape[0], -1)
        (grads,) = torch.autograd.grad(logits[:, 0 if target is None else target].sum(), x)
    return logits.detach().numpy(), grads.numpy()


def assert_matches(head: HeadGradient, model: torch.nn.Module, a: torch.Tensor, target: int | None) -> None:
    ref_logits, ref_grads = torch_reference(model, a, target)
    logits, grads = head.gradient(a.numpy(), target)
    assert logits.dtype == np.float32 and grads.dtype == np.float32
    assert logits.shape == ref_logits.shape and grads.shape == ref_grads.shape == tuple(a.shape)
    assert np.abs(logits - ref_logits).max() <= 1e-5 * max(1.0, float(np.abs(ref_logits).max()))
    assert np.abs(grads - ref_grads).max() <= 1e-5 * max(1.0, float(np.abs(ref_grads).max()))
    assert np.abs(grads - ref_grads).max() <= 1e-4 * float(np.abs(ref_grads).max())  # gradients are ~1e-4
    assert np.abs(head.logits(a.numpy()) - ref_logits).max() <= 1e-5 * max(1.0, float(np.abs(ref_logits).max()))


def random_features(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(shape, generator=g))


@pytest.mark.parametrize("arch", ["resnet50", "resnet50_lstm"])
@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("size", [6, 7])
def test_random_heads_match_torch_autograd(arch, classes, size):
    torch.manual_seed(1234 + classes)
    model = build_model(arch, "scratch", classes=classes, lesion=False).eval()
    head = HeadGradient.from_state_dict(arch, model.state_dict())
    assert head is not None
    a = random_features((3, 2048, size, size), seed=size)
    for target in ([None, 0] if classes == 2 else [0, 1, 2]):
        assert_matches(head, model, a, target)
    assert head.logits(a.numpy()).shape == (3, 1 if classes == 2 else 3)


def test_lstm_gradient_is_not_trivial():
    """Large activations saturate gates: the comparison must still hold, and every time step gets a gradient."""
    torch.manual_seed(7)
    model = build_model("resnet50_lstm", "scratch", classes=3).eval()
    head = HeadGradient.from_state_dict("resnet50_lstm", model.state_dict())
    a = random_features((2, 2048, 6, 6), seed=3) * 4.0
    assert_matches(head, model, a, 2)
    _, grads = head.gradient(a.numpy(), 2)
    assert (np.abs(grads).reshape(2, 2048, -1).max(axis=1) > 0).all()


@pytest.mark.parametrize("classes", [2, 3])
def test_column_sequence_order_matches_torch_autograd(classes):
    """A model that reads its map column after column (``sequence_order`` "column"): a map that is not
    square catches a transposed sequence or gradient; raster and column give different logits."""
    torch.manual_seed(21 + classes)
    model = build_model("resnet50_lstm", "scratch", classes=classes, sequence="column").eval()
    head = HeadGradient.from_state_dict("resnet50_lstm", model.state_dict(), "column")
    a = random_features((2, 2048, 5, 7), seed=9)
    for target in ([None] if classes == 2 else [0, 1, 2]):
        assert_matches(head, model, a, target)
    raster = HeadGradient.from_state_dict("resnet50_lstm", model.state_dict(), "raster")
    assert np.abs(raster.logits(a.numpy()) - head.logits(a.numpy())).max() > 1e-4
    with pytest.raises(ValueError):
        HeadGradient("resnet50_lstm", model.state_dict(), "spiral")


def test_numpy_state_dict_and_unrelated_keys_are_fine():
    torch.manual_seed(3)
    model = build_model("resnet50_lstm", "scratch", classes=2).eval()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    state["lesion.lateral.0.weight"] = np.zeros((1,), np.float32)
    head = HeadGradient("resnet50_lstm", state)
    a = random_features((3, 2048, 6, 6), seed=5)
    assert_matches(head, model, a, None)


def test_head_keys_and_unsupported_architectures():
    assert HeadGradient.head_keys("resnet50") == ("fc.",)
    assert HeadGradient.head_keys("resnet50_lstm") == ("head.",)
    assert HeadGradient.from_state_dict("lstm", {}) is None
    assert HeadGradient.from_state_dict("vit", {}) is None


def test_target_outside_the_logits_is_refused():
    torch.manual_seed(0)
    model = build_model("resnet50", "scratch", classes=3).eval()
    head = HeadGradient.from_state_dict("resnet50", model.state_dict())
    with pytest.raises(IndexError):
        head.gradient(np.zeros((1, 2048, 7, 7), np.float32), 3)


@pytest.mark.skipif(not SHIPPED_V2.is_file(), reason="model v2 not installed")
def test_shipped_model_v2_matches_torch_autograd():
    from training.model.modelfile import load_model

    loaded = load_model(SHIPPED_V2)
    model = loaded.model.eval()
    head = HeadGradient.from_state_dict(loaded.info.arch, model.state_dict())
    assert head is not None
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        a = _trunk_features(model.backbone, torch.rand((2, 3, 224, 224), generator=g))
    assert tuple(a.shape) == (2, 2048, 7, 7)
    k = head.logits(a.numpy()).shape[1]
    for target in ([None] if k == 1 else range(k)):
        assert_matches(head, model, a, target)


def test_importing_the_module_does_not_import_torch():
    code = "import sys, training.inference.head_grad; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
