"""The three architectures and the model file format: shapes, round trips,
refusal of damaged / foreign / malicious files, backbone initialisation."""

from __future__ import annotations

import json
import pickle
import socket
import struct
from pathlib import Path

import pytest
import torch

from training.common.errors import ModelFileError, XrayError
from training.model.modelfile import ModelInfo, load_model, read_info, save_model
from training.model.networks import ARCHITECTURES, build_model, read_weights_file

torch.manual_seed(0)


def _tiny(arch: str, size: int = 64):
    torch.manual_seed(0)
    return build_model(arch, "scratch", input_size=size).eval()


@pytest.fixture(scope="module")
def saved_resnet(tmp_path_factory):
    model = _tiny("resnet50")
    path = tmp_path_factory.mktemp("models") / "r50.safetensors"
    save_model(model, ModelInfo(arch="resnet50", input_size=64, name="tiny"), path)
    return model, path


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_forward_shape_at_64(arch):
    model = _tiny(arch)
    with torch.inference_mode():
        out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2,)
    assert torch.isfinite(out).all()
    assert (model.cam_layer is None) == (arch == "lstm")


def test_resnet50_lstm_reads_49_step_sequence_at_224():
    model = _tiny("resnet50_lstm", 224)
    seen = {}

    def hook(module, inputs, output):
        seen["shape"] = tuple(inputs[0].shape)  # returns None: the output is left alone

    model.head.lstms[0].register_forward_hook(hook)
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 224, 224))
    assert out.shape == (1,)
    assert seen["shape"] == (1, 49, 2048)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_save_load_round_trip_identical(tmp_path, arch):
    model = _tiny(arch)
    info = ModelInfo(arch=arch, input_size=64, threshold=0.4, name="t", class_names=["Normal", "COVID"])
    path = save_model(model, info, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert loaded.info.arch == arch and loaded.info.threshold == 0.4 and loaded.info.input_size == 64
    assert not loaded.model.training
    x = torch.rand(3, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded.model(x))
    info2, header = read_info(path)
    assert info2.name == "t" and "weights_sha256" in header


def test_column_sequence_order_round_trip_and_bad_order_refused(tmp_path):
    """The sequence order travels in the file: a column-order model loads as one (same outputs), a file
    naming an unknown order is refused in words."""
    torch.manual_seed(0)
    model = build_model("resnet50_lstm", "scratch", input_size=64, sequence="column").eval()
    path = save_model(model, ModelInfo(arch="resnet50_lstm", input_size=64, sequence_order="column"),
                      tmp_path / "col.safetensors")
    loaded = load_model(path)
    assert loaded.info.sequence_order == "column" and loaded.model.sequence == "column"
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded.model(x))
        model.sequence = "raster"  # the same weights read in the other order give other outputs
        x2 = torch.rand(2, 3, 96, 64)
        assert not torch.allclose(model(x2), loaded.model(x2), atol=1e-6)
    bad = save_model(model, ModelInfo(arch="resnet50_lstm", input_size=64, sequence_order="spiral"),
                     tmp_path / "bad.safetensors")
    with pytest.raises(ModelFileError, match="sequence order"):
        load_model(bad)
    with pytest.raises(XrayError):
        build_model("resnet50_lstm", "scratch", sequence="spiral")


def test_half_round_trip_close(tmp_path):
    model = _tiny("resnet50_lstm")
    full = save_model(model, ModelInfo(arch="resnet50_lstm", input_size=64), tmp_path / "f.safetensors")
    half = save_model(model, ModelInfo(arch="resnet50_lstm", input_size=64), tmp_path / "h.safetensors", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half)
    assert next(loaded.model.parameters()).dtype == torch.float32
    x = torch.rand(4, 3, 64, 64)
    with torch.inference_mode():
        p0, p1 = torch.sigmoid(model(x)), torch.sigmoid(loaded.model(x))
    assert torch.allclose(p0, p1, atol=2e-3), (p0, p1)


def _data_offset(path: Path) -> int:
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    return 8 + n


def test_tampered_weights_refused_by_checksum(tmp_path, saved_resnet):
    _, src = saved_resnet
    data = bytearray(src.read_bytes())
    start = _data_offset(src)
    pos = start + (len(data) - start) // 2
    data[pos:pos + 4] = bytes(b ^ 0xFF for b in data[pos:pos + 4])
    bad = tmp_path / "tampered.safetensors"
    bad.write_bytes(bytes(data))
    read_info(bad)  # the header is intact...
    with pytest.raises(ModelFileError) as ei:
        load_model(bad)  # ...but the weights no longer match
    assert "checksum" in ei.value.reason


def test_truncated_file_refused(tmp_path, saved_resnet):
    _, src = saved_resnet
    data = src.read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError) as ei:
        load_model(bad)
    assert "truncated" in ei.value.reason or "damaged" in ei.value.reason
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        load_model(empty)
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.safetensors")


def test_foreign_safetensors_refused(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(p), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match="not a chest X-ray model"):
        load_model(p)


def test_wrong_format_and_arch_in_metadata_refused(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "fake.safetensors"
    save_file({"w": torch.zeros(1)}, str(p), metadata={"xray_model": json.dumps({"format": "other", "arch": "x"})})
    with pytest.raises(ModelFileError, match="not a chest X-ray model file"):
        read_info(p)


def test_text_file_refused(tmp_path):
    p = tmp_path / "notes.safetensors"
    p.write_text("this is not a model\n" * 10)
    with pytest.raises(ModelFileError) as ei:
        load_model(p)
    assert "not a readable model file" in ei.value.reason


def test_backbone_init_from_own_resnet50_file(saved_resnet):
    src_model, path = saved_resnet
    hybrid = build_model("resnet50_lstm", str(path), input_size=64)
    want = src_model.backbone.state_dict()
    got = hybrid.backbone.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    # and the head is still fresh (not taken from anywhere)
    assert hybrid.head.fc.weight.shape == (1, 8)


def test_backbone_init_from_torchvision_pth(tmp_path):
    import torchvision

    torch.manual_seed(1)
    tv = torchvision.models.resnet50(weights=None)
    p = tmp_path / "resnet50.pth"
    torch.save(tv.state_dict(), p)
    model = build_model("resnet50", str(p))
    assert torch.equal(model.backbone.conv1.weight, tv.conv1.weight)
    assert torch.equal(model.backbone.layer4[2].bn3.running_var, tv.layer4[2].bn3.running_var)


def test_backbone_init_from_unrelated_file_refused(tmp_path):
    p = tmp_path / "x.pth"
    torch.save({"a": torch.zeros(2)}, p)
    with pytest.raises(XrayError, match="does not contain a ResNet50 backbone"):
        build_model("resnet50", str(p))


def test_imagenet_offline_gives_clear_error(tmp_path, monkeypatch):
    real_cache = Path(torch.hub.get_dir()) / "checkpoints"
    if real_cache.is_dir() and any(real_cache.glob("resnet50-*.pth")):
        pytest.skip("ImageNet weights are in the torch hub cache; cannot test the offline path")
    # an empty hub cache and no network: the real download path, made to fail
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(*a, **k):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(XrayError) as ei:
        build_model("resnet50", "imagenet")
    assert ei.value.code == "weights"
    assert "offline" in ei.value.reason and "scratch" in ei.value.reason


class _Payload:
    """Unpickling this calls open(marker, 'w'): code execution on load."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_refused_and_not_executed(tmp_path):
    # the payload is live: plain pickle would run it
    probe = tmp_path / "probe_ran"
    pickle.loads(pickle.dumps({"w": _Payload(str(probe))})).get("w").close()
    assert probe.exists()

    for i, writer in enumerate(("torch.save", "pickle.dump")):
        marker = tmp_path / f"pwned_{i}"
        path = tmp_path / f"evil_{i}.pth"
        obj = {"conv1.weight": torch.zeros(1), "evil": _Payload(str(marker))}
        if writer == "torch.save":
            torch.save(obj, path)
        else:
            with open(path, "wb") as fh:
                pickle.dump(obj, fh)
        with pytest.raises(XrayError) as ei:
            read_weights_file(path)
        assert ei.value.code == "weights"
        assert not marker.exists(), f"{writer}: the pickle payload ran"
        with pytest.raises(XrayError):
            build_model("resnet50", str(path))
        assert not marker.exists()


def test_unknown_arch_refused():
    with pytest.raises(XrayError, match="Unknown model architecture"):
        build_model("vgg16")


# --------------------------------------------------------------------------- tampered model files (fault corpus m03-m32)


def _rewrite(src, dst, *, meta_edit=None, tensor_edit=None, rehash_weights=False):
    """Copy a model file with its metadata and/or tensors edited, keeping the stored digests
    unless ``rehash_weights`` (an editor who recomputes the weights' checksum)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from training.model.modelfile import META_KEY, weights_digest

    with safe_open(str(src), framework="pt") as fh:
        header = dict(fh.metadata())
    tensors = load_file(str(src))
    if meta_edit:
        meta = json.loads(header[META_KEY])
        meta.update(meta_edit)
        header[META_KEY] = json.dumps(meta)
    if tensor_edit:
        tensor_edit(tensors)
    if rehash_weights:
        header["weights_sha256"] = weights_digest(tensors)
    save_file(tensors, str(dst), metadata=header)
    return dst


@pytest.fixture()
def saved(tmp_path):
    return save_model(_tiny("resnet50"), ModelInfo(arch="resnet50", input_size=64, threshold=0.3),
                      tmp_path / "ok.safetensors")


@pytest.mark.parametrize("edit", [{"threshold": 0.99}, {"positive_class": "Normal"}, {"input_size": 32}])
def test_edited_metadata_is_refused(tmp_path, saved, edit):
    bad = _rewrite(saved, tmp_path / "bad.safetensors", meta_edit=edit)
    with pytest.raises(ModelFileError, match="does not match its checksum"):
        read_info(bad)


def test_rehashed_weights_and_nan_weights_are_refused(tmp_path, saved):
    def shift(t):
        t["fc.bias"] = t["fc.bias"] + 5.0

    with pytest.raises(ModelFileError, match="checksum"):
        load_model(_rewrite(saved, tmp_path / "b.safetensors", tensor_edit=shift, rehash_weights=True))

    from training.model.modelfile import metadata_digest

    def nan(t):
        t["fc.bias"] = torch.full_like(t["fc.bias"], float("nan"))

    # a forger who also recomputes the metadata digest still meets the finite-weights check
    bad = _rewrite(saved, tmp_path / "n.safetensors", tensor_edit=nan, rehash_weights=True)
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(bad), framework="pt") as fh:
        header = dict(fh.metadata())
    header["metadata_sha256"] = metadata_digest(header["xray_model"], header["weights_sha256"])
    save_file(load_file(str(bad)), str(bad), metadata=header)
    with pytest.raises(ModelFileError, match="invalid numbers"):
        load_model(bad)


@pytest.mark.parametrize("field, value", [("threshold", "abc"), ("threshold", float("nan")), ("input_size", 0),
                                          ("input_size", 20000), ("class_names", 5), ("dropout", "abc")])
def test_invalid_metadata_fields_are_refused_with_a_reason(tmp_path, field, value):
    import json

    from safetensors.torch import save_file

    from training.model.modelfile import META_KEY, metadata_digest, state_tensors, weights_digest

    tensors = state_tensors(_tiny("resnet50"))
    meta = {"format": "xray-cxr-model", "format_version": 1, **ModelInfo(arch="resnet50", input_size=64).to_dict()}
    meta[field] = value
    text = json.dumps(meta)
    wd = weights_digest(tensors)
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path), metadata={META_KEY: text, "weights_sha256": wd,
                                            "metadata_sha256": metadata_digest(text, wd)})
    with pytest.raises(ModelFileError) as e:
        read_info(path)
    assert field.replace("_", " ").split()[0] in e.value.reason.lower() or "threshold" in e.value.reason


def test_fifo_is_not_called_a_folder(tmp_path):
    import os

    os.mkfifo(tmp_path / "m.safetensors")
    with pytest.raises(ModelFileError, match="not a regular file"):
        read_info(tmp_path / "m.safetensors")


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.bfloat16, torch.float64])
def test_all_finite_reads_the_exponent_bits_right(dtype):
    from training.model.modelfile import all_finite

    base = torch.linspace(-65000, 65000, 1001).to(dtype)
    assert all_finite(base) and all_finite(torch.zeros(0, dtype=dtype))
    tiny = torch.tensor([1e-7, -1e-7, 0.0, -0.0], dtype=dtype)  # subnormals and signed zeros are finite
    assert all_finite(tiny)
    for bad in (float("nan"), float("inf"), -float("inf")):
        t = base.clone()
        t[501] = bad  # row 3, column 72 of the 7 x 143 view below: kept by its [:, ::2]
        assert not all_finite(t), (dtype, bad)
        assert not all_finite(t.view(7, 143)[:, ::2].t())  # a non-contiguous view is read right too


def test_keras_lstm_init_follows_keras_defaults_and_desaturates_the_first_lstm():
    from training.model.networks import keras_lstm_init_

    torch.manual_seed(0)
    model = build_model("resnet50_lstm", "scratch", classes=3)
    feats = torch.relu(torch.randn(4, 36, 2048)) * 2.0  # ReLU features of ResNet50's size and scale

    def pre_std(lstm):
        with torch.no_grad():
            return float((feats @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + lstm.bias_hh_l0).std())

    before = pre_std(model.head.lstms[0])
    keras_lstm_init_(model.head)
    first = model.head.lstms[0]
    assert pre_std(first) < before / 2.5
    for lstm in model.head.lstms:
        hid, w_ih, w_hh = lstm.hidden_size, lstm.weight_ih_l0, lstm.weight_hh_l0
        assert float(w_ih.abs().max()) <= (6.0 / (w_ih.shape[0] + w_ih.shape[1])) ** 0.5
        assert torch.allclose(w_hh.T @ w_hh, torch.eye(hid), atol=1e-5)  # orthogonal columns
        assert float(lstm.bias_hh_l0.abs().max()) == 0.0
        assert torch.equal(lstm.bias_ih_l0[hid:2 * hid], torch.ones(hid))
        assert float(lstm.bias_ih_l0[:hid].abs().max()) == 0.0 and float(lstm.bias_ih_l0[2 * hid:].abs().max()) == 0.0
