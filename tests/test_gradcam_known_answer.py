"""Grad-CAM with a known answer: a small CNN trained here on images whose label
depends on one region only - every image has a square in the top-left and one
in the bottom-right quadrant, and only the top-left one's texture (a fine
checkerboard instead of a plain grey) means "COVID" - must put the heatmap's
mass in the top-left quadrant of positives (chance: a quarter).
The network is small so that it learns the rule in seconds; the Grad-CAM path
(``Classifier`` -> ``explain.gradcam`` -> pytorch-grad-cam on ``cam_layer``) is
the app's own."""

from __future__ import annotations

import numpy as np
import torch

from training.inference.classifier import Classifier
from training.inference.explain import gradcam
from training.model.modelfile import ModelInfo, loaded_from_module

SIZE = 64


class TinyCam(torch.nn.Module):
    """Two stride-2 convolutions (the Grad-CAM layer is the second), global pooling, one logit."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, 2, 2), torch.nn.ReLU(),
                                            torch.nn.Conv2d(8, 16, 3, 2, 1), torch.nn.ReLU())
        self.cam_layer = self.features[2]
        self.head = torch.nn.Linear(16, 1)

    def forward(self, x):
        return self.head(self.features(x).amax(dim=(2, 3)))[:, 0]


def _images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = (0.35 + 0.05 * rng.standard_normal((n, SIZE, SIZE))).astype(np.float32)
    y = np.arange(n) % 2
    checker = np.where((np.add.outer(np.arange(10), np.arange(10)) // 2) % 2 == 0, 0.95, 0.15)
    for i in range(n):
        r, c = rng.integers(SIZE // 2 + 2, SIZE - 14, 2)
        x[i, r:r + 10, c:c + 10] = 0.55  # uninformative, bottom-right
        r, c = rng.integers(2, SIZE // 2 - 12, 2)
        x[i, r:r + 10, c:c + 10] = checker if y[i] else 0.55  # the label, top-left
    return np.clip(x, 0, 1), y


def test_gradcam_mass_sits_on_the_region_that_decides_the_label():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    x_train, y_train = _images(64, rng)
    model = TinyCam()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt = torch.from_numpy(x_train)[:, None].expand(-1, 3, -1, -1).contiguous()
    yt = torch.from_numpy(y_train).float()
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(200):
        idx = torch.randperm(len(xt), generator=g)[:16]
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.binary_cross_entropy_with_logits(model(xt[idx]), yt[idx]).backward()
        opt.step()
    clf = Classifier(loaded_from_module(model, ModelInfo(arch="resnet50", input_size=SIZE)), device="cpu",
                     mixed_precision=False)
    x_test, y_test = _images(16, rng)
    p = clf.predict_arrays(list(x_test))
    assert ((p >= 0.5) == (y_test == 1)).mean() >= 0.9, p  # it learned the rule
    shares = []
    for img in x_test[y_test == 1]:
        heat = gradcam(clf, img)
        shares.append(heat[: SIZE // 2, : SIZE // 2].sum() / max(heat.sum(), 1e-9))
    assert np.median(shares) > 0.5, shares  # chance would be 0.25
