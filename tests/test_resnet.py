"""Our ResNet50 (``training.model.resnet``, no torchvision import) is torchvision's: the same
state-dict names and shapes, the same random initialisation for a seed, the same outputs."""

from __future__ import annotations

import subprocess
import sys

import torch

from training.model.resnet import resnet50

torchvision = __import__("pytest").importorskip("torchvision")


def test_same_names_shapes_and_initialisation_as_torchvision():
    torch.manual_seed(123)
    ours = resnet50().state_dict()
    torch.manual_seed(123)
    theirs = torchvision.models.resnet50(weights=None).state_dict()
    assert list(ours) == list(theirs)
    for k in theirs:
        assert ours[k].shape == theirs[k].shape, k
        assert torch.equal(ours[k], theirs[k]), k  # the same random numbers, drawn in the same order


def test_same_outputs_with_the_same_weights():
    torch.manual_seed(0)
    theirs = torchvision.models.resnet50(weights=None)
    # non-trivial BatchNorm statistics, so a misplaced normalisation would show
    for m in theirs.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    ours = resnet50()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        a, b = ours.eval()(x), theirs.eval()(x)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    # and in training mode (BatchNorm on batch statistics), with gradients
    ours.train(), theirs.train()
    ga = torch.autograd.grad(ours(x).sum(), ours.conv1.weight)[0]
    gb = torch.autograd.grad(theirs(x).sum(), theirs.conv1.weight)[0]
    assert torch.allclose(ga, gb, atol=1e-4, rtol=1e-4)


def test_a_run_after_the_first_never_imports_torchvision(tmp_path, cxr1000):
    """After the first run (which exports the ONNX graphs; ``torch.onnx`` itself imports torchvision),
    loading the shipped model with its gate and classifying a film imports neither torchvision nor MONAI."""
    import os

    film = sorted((cxr1000 / "COVID").glob("*.png"))[0]
    code = ("import sys; from training.inference.classifier import Classifier; "
            "from training.common.resources import default_model_path; "
            "c = Classifier.from_file(default_model_path()); "
            f"r = list(c.classify_paths([{str(film)!r}], explain=True)); "
            "print(r[0].status, 'torchvision' in sys.modules, 'monai' in sys.modules)")
    env = {**os.environ, "XRAY_ENGINE_CACHE": str(tmp_path / "engines")}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
            for _ in range(2)]
    for out in runs:
        assert out.returncode == 0, out.stderr[-2000:]
    assert runs[1].stdout.strip().splitlines()[-1] == "ok False False"
