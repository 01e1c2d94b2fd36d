"""The paper's three models ("scenarios"), as plain ``torch.nn`` modules.

Every model takes ``(N, 3, S, S)`` float32 in [0, 1] (see ``preprocess``) and
returns one **logit** per image, shape ``(N,)``; ``sigmoid(logit)`` is
P(COVID).  The paper's "sigmoid output + binary cross-entropy" is trained as
``BCEWithLogitsLoss``, the numerically stable form of the same thing.

* ``resnet50`` - torchvision's ResNet50 (``training.model.resnet``: the same network
  without the torchvision import; stages 1-5, global average pool) with a
  single sigmoid unit instead of the 1000-way classifier.
* ``lstm`` - the LSTM head alone on the image: the S rows of the (grey) image
  are S time steps of S features (the paper does not say how an image becomes
  a sequence; rows as time steps is the usual reading, e.g. Keras' MNIST-LSTM).
* ``resnet50_lstm`` - the ResNet50 feature map (2048 x 7 x 7 at 224 input) is
  read in raster order as a 49-step sequence of 2048-vectors and fed to three
  stacked LSTMs of 32, 16 and 8 units (only the last step of the last LSTM is
  kept, Keras' ``return_sequences=False``), then Dropout, then Dense(1).

Backbone initialisation (``init``): ``"scratch"`` (random), ``"imagenet"``
(torchvision's ``ResNet50_Weights.IMAGENET1K_V2``; needs the internet or the
torch hub cache), or a path to a local weights file: a torchvision ResNet50
``.pth`` state dict (loaded with ``weights_only=True``) or a ``.safetensors``
file - including one of our own model files, whose ``backbone.*`` weights are
taken (the two-stage recipe: train ResNet50, then start ResNet50-LSTM from it).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.common.constants import ARCH_LABELS, ARCHITECTURES  # noqa: E402,F401  (torch-free home of the names)
from training.common.errors import XrayError
from training.common.formatting import exception_text
from training.model.resnet import ResNet50, resnet50

LSTM_UNITS = (32, 16, 8)
DEFAULT_DROPOUT = 0.5
# how a new StackedLSTMHead's LSTMs start: "torch" (PyTorch's uniform(+-1/sqrt(units)) for every weight) or
# "keras" (Keras' LSTM defaults: Glorot-uniform input kernel, orthogonal recurrent kernel, zero biases with
# the forget gate's at 1); see keras_lstm_init_
LSTM_INITS = ("torch", "keras")
# how ResNet50-LSTM reads its (h, w) feature map as a sequence: "raster" row after row (the paper's reshape),
# "column" column after column (top to bottom, left to right); model files record it (``sequence_order``)
SEQUENCE_ORDERS = ("raster", "column")


class StackedLSTMHead(nn.Module):
    """LSTM(32) -> LSTM(16) -> LSTM(8) -> Dropout -> Dense(outputs) on ``(N, T, F)``.

    ``outputs`` 1: one logit per image, shape ``(N,)`` (the paper's binary
    models); more: ``(N, outputs)`` class logits (model v2's three classes)."""

    def __init__(self, in_features: int, units=LSTM_UNITS, dropout: float = DEFAULT_DROPOUT, outputs: int = 1):
        super().__init__()
        layers = []
        prev = in_features
        for u in units:
            layers.append(nn.LSTM(prev, u, batch_first=True))
            prev = u
        self.lstms = nn.ModuleList(layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(prev, outputs)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        h = seq
        for lstm in self.lstms:
            h, _ = lstm(h)
        last = h[:, -1, :]
        return _squeeze_binary(self.fc(self.dropout(last)))


def keras_lstm_init_(head: StackedLSTMHead) -> StackedLSTMHead:
    """Give ``head``'s LSTMs Keras' default initialisation (in place).

    PyTorch draws every LSTM weight from uniform(+-1/sqrt(units)): for 2048 ReLU features that puts most
    gate pre-activations of the first LSTM far into saturation (measured on ResNet50 features: std ~6.6,
    half the input and forget gates beyond +-4).  Keras (the paper's framework by its defaults) draws the
    input kernel Glorot-uniform (limit sqrt(6 / (inputs + 4 units))), the recurrent kernel orthogonal, and
    sets the biases to zero with the forget gate's at 1 (``unit_forget_bias``)."""
    with torch.no_grad():
        for lstm in head.lstms:
            hid = lstm.hidden_size
            w_ih = lstm.weight_ih_l0
            limit = (6.0 / (w_ih.shape[1] + w_ih.shape[0])) ** 0.5
            w_ih.uniform_(-limit, limit)
            nn.init.orthogonal_(lstm.weight_hh_l0)
            lstm.bias_ih_l0.zero_()
            lstm.bias_hh_l0.zero_()
            lstm.bias_ih_l0[hid:2 * hid] = 1.0  # torch's gate order (i, f, g, o): f is the second
    return head


def _squeeze_binary(logits: torch.Tensor) -> torch.Tensor:
    """``(N, 1)`` -> ``(N,)`` (binary models); ``(N, C)`` stays."""
    return logits.squeeze(-1) if logits.shape[-1] == 1 else logits


class LesionDecoder(nn.Module):
    """A small FPN on ResNet50's stages 2-4 -> one lesion logit map at 1/8 of the input.

    Lateral 1x1 convolutions bring layer2 (512 ch, 1/8), layer3 (1024, 1/16)
    and layer4 (2048, 1/32) to ``width`` channels, a top-down pathway adds the
    upsampled coarser map to each finer one (Lin et al. 2017), and two 3x3
    convolutions with BatchNorm + ReLU and a 1x1 convolution give the logit of
    "infected lung" per cell (sigmoid = lesion probability)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in (512, 1024, 2048))
        self.smooth = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, 1, 1))

    def forward(self, c2: torch.Tensor, c3: torch.Tensor, c4: torch.Tensor) -> torch.Tensor:
        p = self.lateral[2](c4)
        p = self.lateral[1](c3) + F.interpolate(p, size=c3.shape[-2:], mode="nearest")
        p = self.lateral[0](c2) + F.interpolate(p, size=c2.shape[-2:], mode="nearest")
        return self.smooth(p)


def _resnet50_trunk() -> ResNet50:
    net = resnet50()  # torchvision's network without importing torchvision (training.model.resnet)
    net.fc = nn.Identity()
    return net


def _trunk_features(net: ResNet50, x: torch.Tensor) -> torch.Tensor:
    return _trunk_stages(net, x)[-1]


def _trunk_stages(net: ResNet50, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The outputs of stages 3, 4 and 5 (layer2, layer3, layer4)."""
    x = net.conv1(x)
    x = net.bn1(x)
    x = net.relu(x)
    x = net.maxpool(x)
    x = net.layer1(x)
    c2 = net.layer2(x)
    c3 = net.layer3(c2)
    return c2, c3, net.layer4(c3)


class _LesionMixin:
    """Classifiers on the ResNet50 trunk that may carry a :class:`LesionDecoder`.

    ``forward(x)`` returns only the class logits (Grad-CAM, ONNX and the
    binary tools see an ordinary classifier); ``forward_with_lesion(x)``
    returns ``(logits, lesion_logits)`` from the same pass, the lesion map
    ``(N, 1, S/8, S/8)`` (``None`` for a model without the decoder)."""

    lesion: "LesionDecoder | None"

    def _head(self, f: torch.Tensor) -> torch.Tensor:  # pragma: no cover - defined by each class
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._head(_trunk_features(self.backbone, x))

    def forward_with_lesion(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.lesion is None:
            return self.forward(x), None
        c2, c3, c4 = _trunk_stages(self.backbone, x)
        return self._head(c4), self.lesion(c2, c3, c4)


class ResNet50Classifier(_LesionMixin, nn.Module):
    arch = "resnet50"

    def __init__(self, dropout: float = DEFAULT_DROPOUT, outputs: int = 1, lesion: bool = False):
        super().__init__()
        self.backbone = _resnet50_trunk()
        self.fc = nn.Linear(2048, outputs)
        self.lesion = LesionDecoder() if lesion else None

    @property
    def cam_layer(self) -> nn.Module:
        return self.backbone.layer4[-1]

    def _head(self, f: torch.Tensor) -> torch.Tensor:
        pooled = torch.flatten(self.backbone.avgpool(f), 1)
        return _squeeze_binary(self.fc(pooled))


class LSTMClassifier(nn.Module):
    arch = "lstm"

    def __init__(self, dropout: float = DEFAULT_DROPOUT, input_size: int = 224):
        super().__init__()
        self.input_size = input_size
        self.head = StackedLSTMHead(input_size, dropout=dropout)

    cam_layer = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = x.mean(dim=1)  # (N, S, S): rows are time steps
        # fp32 even under autocast: oneDNN has no bf16 LSTM on CPUs without native bf16 (AVX2)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.head(grey.float())


class ResNet50LSTMClassifier(_LesionMixin, nn.Module):
    arch = "resnet50_lstm"

    def __init__(self, dropout: float = DEFAULT_DROPOUT, outputs: int = 1, lesion: bool = False,
                 sequence: str = "raster"):
        super().__init__()
        if sequence not in SEQUENCE_ORDERS:
            raise XrayError(f"Unknown sequence order '{sequence}'. Known: {', '.join(SEQUENCE_ORDERS)}.", code="arch")
        self.sequence = sequence
        self.backbone = _resnet50_trunk()
        self.head = StackedLSTMHead(2048, dropout=dropout, outputs=outputs)
        self.lesion = LesionDecoder() if lesion else None

    @property
    def cam_layer(self) -> nn.Module:
        return self.backbone.layer4[-1]

    def _head(self, f: torch.Tensor) -> torch.Tensor:
        # f: (N, 2048, h, w)
        if self.sequence == "column":
            f = f.transpose(2, 3)
        seq = f.flatten(2).transpose(1, 2)  # (N, h*w, 2048), raster order (column order: of the transpose)
        # the LSTM runs in fp32 even under autocast (cuDNN/oneDNN bf16 LSTMs are
        # not universally available and the head is tiny)
        with torch.autocast(device_type=seq.device.type, enabled=False):
            return self.head(seq.float())


def build_model(arch: str, init: str = "scratch", *, dropout: float = DEFAULT_DROPOUT,
                input_size: int = 224, classes: int = 2, lesion: bool = False,
                sequence: str = "raster") -> nn.Module:
    """Build one of ``ARCHITECTURES`` with backbone initialisation ``init``.

    ``classes`` 2: one logit per image (sigmoid = P(positive)); 3 or more: one
    logit per class (softmax).  ``lesion``: add the :class:`LesionDecoder`
    (ResNet50 trunks only)."""
    outputs = 1 if int(classes) <= 2 else int(classes)
    if arch == "lstm" and (outputs != 1 or lesion):
        raise XrayError("The LSTM-only model has two classes and no lesion map.", code="arch")
    if arch == "resnet50":
        model: nn.Module = ResNet50Classifier(dropout, outputs=outputs, lesion=lesion)
    elif arch == "lstm":
        model = LSTMClassifier(dropout, input_size=input_size)
    elif arch == "resnet50_lstm":
        model = ResNet50LSTMClassifier(dropout, outputs=outputs, lesion=lesion, sequence=sequence)
    else:
        raise XrayError(f"Unknown model architecture '{arch}'. Known: {', '.join(ARCHITECTURES)}.", code="arch")
    init = init or "scratch"
    if arch != "lstm" and init != "scratch":
        load_backbone(model.backbone, init)
    return model


def imagenet_state_dict() -> dict:
    """torchvision's ImageNet ResNet50 weights (IMAGENET1K_V2), from the torch hub
    cache or downloaded (only when the user chose ``imagenet``)."""
    try:
        import torchvision  # only here: the import costs ~1.6 s of start-up (training.model.resnet)

        weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
        return weights.get_state_dict(progress=False)
    except Exception as exc:  # URLError, OSError, hash mismatch ...
        raise XrayError(
            "ImageNet weights could not be obtained (this computer seems to be offline and they "
            "are not in the torch cache). Choose 'scratch' or a local weights file "
            f"(torchvision resnet50 .pth or .safetensors). Detail: {exception_text(exc)}",
            code="weights",
        ) from exc


def read_weights_file(path: str | os.PathLike) -> dict:
    """Tensors from a local ``.pth``/``.pt`` (``weights_only=True``: never runs
    code) or ``.safetensors`` file."""
    p = Path(path)
    if not p.is_file():
        raise XrayError(f"Weights file not found: {p}", code="weights")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(p))
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise XrayError(f"Cannot read weights file {p.name}: {exception_text(exc)}", code="weights") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise XrayError(f"{p.name} does not hold a state dict of tensors.", code="weights")
    return obj


def load_backbone(trunk: nn.Module, init: str) -> None:
    """Fill a ResNet50 trunk from ``init`` ('imagenet' or a file path)."""
    sd = imagenet_state_dict() if init == "imagenet" else read_weights_file(init)
    # accept torchvision keys, our own 'backbone.' keys, and DDP 'module.' prefixes
    cleaned = {}
    for k, v in sd.items():
        for prefix in ("module.", "backbone."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        if k.startswith("fc."):
            continue
        cleaned[k] = v
    own = trunk.state_dict()
    missing = [k for k in own if k not in cleaned]
    if missing:
        raise XrayError(
            f"The weights file does not contain a ResNet50 backbone ({len(missing)} tensors missing, "
            f"e.g. '{missing[0]}').", code="weights")
    bad = [k for k in own if tuple(cleaned[k].shape) != tuple(own[k].shape)]
    if bad:
        raise XrayError(f"The weights file's tensor '{bad[0]}' has the wrong shape for ResNet50.", code="weights")
    trunk.load_state_dict({k: cleaned[k].float() for k in own}, strict=True)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
