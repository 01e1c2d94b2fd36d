"""ResNet50 in plain ``torch.nn``: torchvision's network, without importing torchvision.

Why: ``import torchvision`` loads all of torchvision (its ``ops`` import
``torch._dynamo``), about 1.6 s of every start-up on a 2-core CPU, for a
network of 60 lines.  This is torchvision's ``resnet50(weights=None)`` (v1.5:
the stride on the 3 x 3 convolution), module for module: the same parameter
and buffer names (a torchvision state dict loads with ``strict=True`` and the
other way round), the same initialisation in the same order (the same random
numbers for a given seed: ``fc`` is created and initialised as torchvision
does, then the caller replaces it), the same forward pass.
``tests/test_resnet.py`` checks all three against torchvision itself.
torchvision stays the source of the ImageNet weights
(``training.model.networks.imagenet_state_dict``, imported only then).
"""

from __future__ import annotations

import torch
import torch.nn as nn

LAYERS = (3, 4, 6, 3)
EXPANSION = 4


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, groups=1, bias=False, dilation=1)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class Bottleneck(nn.Module):
    """1 x 1 -> 3 x 3 (stride) -> 1 x 1 with a shortcut (``downsample`` where the shape changes)."""

    expansion = EXPANSION

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * EXPANSION)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet50(nn.Module):
    """Stem (``conv1``, ``bn1``, ``relu``, ``maxpool``), ``layer1``-``layer4``, ``avgpool``, ``fc``."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, LAYERS[0])
        self.layer2 = self._make_layer(128, LAYERS[1], stride=2)
        self.layer3 = self._make_layer(256, LAYERS[2], stride=2)
        self.layer4 = self._make_layer(512, LAYERS[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * EXPANSION, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * EXPANSION:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * EXPANSION, stride),
                                       nn.BatchNorm2d(planes * EXPANSION))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * EXPANSION
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50() -> ResNet50:
    """torchvision's ``resnet50(weights=None)``, randomly initialised."""
    return ResNet50()


__all__ = ["ResNet50", "Bottleneck", "resnet50", "LAYERS"]
