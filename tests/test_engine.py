"""The ONNX Runtime CPU engine (training/inference/engine_onnx.py) behind Classifier.predict_batch:
export + cache (reuse, rebuild when damaged or stale), agreement with PyTorch
fp32 on real images (the class logits, the lesion map and layer4's activations),
fallback to PyTorch on every kind of failure, and Grad-CAM from the engine's
pass agreeing with the PyTorch engine's."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training.common.errors import XrayError
from training.common.resources import default_model_path, v1_model_path
from training.imaging.loading import load_image
from training.inference import engine_onnx
from training.inference.classifier import Classifier
from training.inference.explain import gradcam
from training.model import graph_cache
from training.model.modelfile import ModelInfo, loaded_from_module, save_model
from training.model.networks import build_model

pytest.importorskip("onnxruntime")

TINY = 48
TOL = 1e-4  # |dP| allowed between the engines (fp32 both sides)


@pytest.fixture(scope="module")
def films(cxr1000) -> list[Path]:
    return sorted((cxr1000 / "COVID").glob("*.png"))[:3] + sorted((cxr1000 / "Normal").glob("*.png"))[:3]


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    """A small LSTM model (fast to export) whose outputs spread, with temperature 2."""
    torch.manual_seed(0)
    model = build_model("lstm", "scratch", input_size=TINY)
    with torch.no_grad():
        model.head.lstms[0].weight_ih_l0.mul_(50.0)  # spread the logits so |dP| is a sharp test
        model.head.fc.weight.mul_(40.0)
    info = ModelInfo(arch="lstm", input_size=TINY, name="tiny",
                     calibration={"method": "temperature", "temperature": 2.0})
    return save_model(model, info, tmp_path_factory.mktemp("tiny") / "tiny.safetensors")


@pytest.fixture(scope="module")
def shipped_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shipped-engines")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "engines"
    monkeypatch.setenv(engine_onnx.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def export_count(monkeypatch) -> list[int]:
    calls = [0]
    real = engine_onnx.export_onnx

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_onnx, "export_onnx", counting)
    return calls


def _shipped() -> Path:
    model_file = default_model_path() or v1_model_path()
    if model_file is None:
        pytest.skip("no shipped model installed")
    return model_file


def _clf(path, engine="auto", **kw) -> Classifier:
    return Classifier.from_file(path, device="cpu", gate=None, mixed_precision=False, engine=engine, **kw)


def _arrays(films) -> list[np.ndarray]:
    return [load_image(p).pixels for p in films]


def _classifier_graphs(folder: Path) -> list[Path]:
    """The classifier's cached graphs (not the lung segmenter's or the orientation check's small graphs,
    ``training.model.graph_cache.small_graph``, which share the folder)."""
    return [p for p in folder.glob("*.onnx") if "lung-segmenter" not in p.stem and "orientation-" not in p.stem]


def _entry(folder: Path) -> tuple[Path, Path]:
    (onnx_file,) = _classifier_graphs(folder)
    return onnx_file, onnx_file.with_suffix(".json")


def test_export_once_then_reuse_the_cache(tiny_file, cache, export_count, films):
    first = _clf(tiny_file)
    assert first.active_engine == "torch" and first.engine_note == ""  # nothing is built before classifying
    p1 = first.predict_arrays(_arrays(films))
    assert first.active_engine == "onnx", first.engine_note
    assert export_count[0] == 1
    onnx_file, record = _entry(cache)
    assert onnx_file.stem == first.loaded._audit_stamp.sha256  # keyed by the model file's SHA-256
    assert json.loads(record.read_text())["input_size"] == TINY
    stamp = onnx_file.stat().st_mtime_ns
    second = _clf(tiny_file)
    p2 = second.predict_arrays(_arrays(films))
    assert second.active_engine == "onnx" and export_count[0] == 1  # same SHA: no second export
    assert onnx_file.stat().st_mtime_ns == stamp
    assert np.array_equal(p1, p2)
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]  # atomic writes left nothing behind


@pytest.mark.parametrize("damage", ["truncated", "garbage_with_matching_record", "stale_record", "no_record"])
def test_a_damaged_or_stale_cache_entry_is_rebuilt(tiny_file, cache, export_count, films, damage):
    reference = _clf(tiny_file, engine="torch").predict_arrays(_arrays(films))
    _clf(tiny_file).predict_arrays(_arrays(films)[:1])
    onnx_file, record = _entry(cache)
    if damage == "truncated":
        onnx_file.write_bytes(onnx_file.read_bytes()[:5000])
    elif damage == "garbage_with_matching_record":  # the checksum passes, ONNX Runtime cannot open it
        onnx_file.write_bytes(b"not an onnx graph" * 100)
        facts = json.loads(record.read_text())
        facts["sha256"] = graph_cache._sha256(onnx_file)
        record.write_text(json.dumps(facts))
    elif damage == "stale_record":
        facts = json.loads(record.read_text())
        facts["format"] = -1
        record.write_text(json.dumps(facts))
    else:
        record.unlink()
    clf = _clf(tiny_file)
    probs = clf.predict_arrays(_arrays(films))
    assert export_count[0] == 2, damage
    assert clf.active_engine == "onnx", clf.engine_note
    assert np.abs(probs - reference).max() <= TOL
    assert json.loads(record.read_text())["sha256"] == graph_cache._sha256(onnx_file)


def test_tiny_model_agrees_with_pytorch_and_keeps_the_temperature(tiny_file, cache, films):
    fast, slow = _clf(tiny_file, engine="onnx"), _clf(tiny_file, engine="torch")
    x = np.stack([fast.model_input(px)[0] for px in _arrays(films)])
    p_fast, p_slow = fast.predict_batch(x), slow.predict_batch(x)
    assert fast.active_engine == "onnx" and slow.active_engine == "torch"
    assert np.abs(p_fast - p_slow).max() <= TOL
    with torch.inference_mode():
        logits = slow.model(torch.from_numpy(x)).double().numpy()
    assert np.allclose(p_fast, 1 / (1 + np.exp(-logits / 2.0)), atol=TOL)
    assert p_slow.std() > 100 * TOL  # outputs spread: the comparison is not between near-identical numbers


def test_shipped_model_agrees_with_pytorch_on_real_images(shipped_cache, monkeypatch, films):
    model_file = _shipped()
    monkeypatch.setenv(engine_onnx.CACHE_ENV, str(shipped_cache))
    fast = Classifier.from_file(model_file, device="cpu", gate=None)  # the defaults: engine and precision 'auto'
    slow = _clf(model_file, engine="torch")
    batch_fast = list(fast.classify_paths(films))
    batch_slow = list(slow.classify_paths(films))
    assert fast.active_engine == "onnx", fast.engine_note
    assert all(p.ok for p in batch_fast + batch_slow)
    d = [abs(a.p_covid - b.p_covid) for a, b in zip(batch_fast, batch_slow)]
    assert max(d) <= TOL, d
    assert [a.label for a in batch_fast] == [b.label for b in batch_slow]
    single = fast.predict_image(load_image(films[0]))  # one image: batch of 1 through the engine
    assert abs(single.p_covid - batch_slow[0].p_covid) <= TOL


def test_gradcam_from_the_onnx_pass_matches_the_pytorch_engine(shipped_cache, monkeypatch, films):
    model_file = _shipped()
    monkeypatch.setenv(engine_onnx.CACHE_ENV, str(shipped_cache))
    fast, slow = _clf(model_file), _clf(model_file, engine="torch")
    img = load_image(films[0])
    fast.predict_image(img)
    assert fast.active_engine == "onnx", fast.engine_note
    assert fast.fast_engine().has_features  # layer4's activations come with the logits
    torch_passes = [0]
    hook = fast.model.backbone.register_forward_hook(lambda *_: torch_passes.__setitem__(0, torch_passes[0] + 1))
    try:
        heat = gradcam(fast, img.pixels)
    finally:
        hook.remove()
    assert torch_passes[0] == 0  # only the head ran in torch
    assert heat.shape == img.pixels.shape and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() == pytest.approx(1.0)
    assert np.abs(heat - gradcam(slow, img.pixels)).max() < 1e-4
    assert fast.model.training is False and all(p.grad is None for p in fast.model.parameters())


def test_missing_onnxruntime_falls_back_to_pytorch(tiny_file, cache, monkeypatch, caplog, films):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # "import onnxruntime" raises ImportError
    reference = _clf(tiny_file, engine="torch").predict_arrays(_arrays(films))
    clf = _clf(tiny_file, engine="onnx")
    with caplog.at_level(logging.WARNING, logger="training.inference.classifier"):
        probs = clf.predict_arrays(_arrays(films))
    assert clf.active_engine == "torch"
    assert "ONNX Runtime is not available" in clf.engine_note
    assert any("ONNX Runtime is not available" in r.getMessage() for r in caplog.records)
    assert np.array_equal(probs, reference)
    assert not cache.exists() or not _classifier_graphs(cache)  # nothing exported that nobody could run


def test_export_failure_falls_back_to_pytorch(tiny_file, cache, monkeypatch, films):
    def broken(*_a, **_k):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(engine_onnx, "export_onnx", broken)
    clf = _clf(tiny_file)
    probs = clf.predict_arrays(_arrays(films))
    assert clf.active_engine == "torch" and "exporter exploded" in clf.engine_note
    assert np.all(np.isfinite(probs)) and len(probs) == len(films)


def test_a_session_error_mid_run_falls_back_without_failing_a_result(tiny_file, cache, films):
    reference = _clf(tiny_file, engine="torch").predict_arrays(_arrays(films))
    clf = _clf(tiny_file, engine="onnx", batch_size=2)
    clf.predict_arrays(_arrays(films)[:1])
    assert clf.active_engine == "onnx", clf.engine_note

    class Broken:
        def run(self, *_a, **_k):
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : simulated")

    clf.fast_engine().session = Broken()
    preds = list(clf.classify_paths(films))
    assert all(p.ok for p in preds), [p.reason for p in preds]
    assert clf.active_engine == "torch" and "failed on a batch" in clf.engine_note
    assert np.abs(np.array([p.p_covid for p in preds]) - reference).max() <= 1e-6


def test_disagreement_found_on_load_falls_back_and_drops_the_entry(tiny_file, cache, monkeypatch, films):
    real = engine_onnx.OnnxEngine.logits
    monkeypatch.setattr(engine_onnx.OnnxEngine, "logits", lambda self, b: real(self, b) + 0.5)
    clf = _clf(tiny_file)
    clf.predict_arrays(_arrays(films)[:2])
    assert clf.active_engine == "torch"
    assert "does not agree with PyTorch" in clf.engine_note
    assert not _classifier_graphs(cache)


def test_engine_choice(tiny_file, cache, monkeypatch):
    with pytest.raises(XrayError, match="Unknown inference engine 'tensorrt'"):
        _clf(tiny_file, engine="tensorrt")
    in_memory = Classifier(loaded_from_module(build_model("lstm", input_size=TINY), ModelInfo(arch="lstm",
                           input_size=TINY)), device="cpu", mixed_precision=False)
    in_memory.predict_batch(torch.rand(1, 3, TINY, TINY))
    assert in_memory.active_engine == "torch" and "not from a file" in in_memory.engine_note
    forced = Classifier(in_memory.loaded, device="cpu", mixed_precision=False, engine="onnx")
    forced.predict_batch(torch.rand(1, 3, TINY, TINY))
    assert forced.active_engine == "onnx", forced.engine_note  # keyed by the weights' digest
    low = _clf(tiny_file, engine="onnx")
    low.mixed_precision = True
    low.predict_batch(torch.rand(1, 3, TINY, TINY))
    assert low.active_engine == "torch" and "mixed precision" in low.engine_note


def test_the_features_output_is_checked_against_pytorch(tiny_v2_model, cache, monkeypatch, films):
    clf = _clf(tiny_v2_model, engine="onnx")
    x = np.stack([clf.model_input(px)[0] for px in _arrays(films[:2])])
    clf.predict_batch(x)
    engine = clf.fast_engine()
    assert clf.active_engine == "onnx" and engine.has_features, clf.engine_note
    assert engine.output_names == ["logit", "lesion", "features"]
    assert json.loads(_entry(cache)[1].read_text())["format"] == engine_onnx.FORMAT >= 3
    logits, lesion, feats = engine.outputs_with_features(x)
    assert tuple(feats.shape) == (2, 2048, clf.input_size // 32, clf.input_size // 32)
    with torch.inference_mode():
        ref_logits, ref_lesion = clf.model.forward_with_lesion(torch.from_numpy(x))
    assert np.allclose(logits, ref_logits.numpy(), atol=1e-4) and np.allclose(lesion, ref_lesion.numpy(), atol=1e-4)
    # a graph whose activations drift (a wrong node exported) is refused on load, whatever the logits say
    real = engine_onnx.OnnxEngine.outputs_with_features

    def drifting(self, batch):
        lo, le, fe = real(self, batch)
        return lo, le, fe + 1e-2 * np.abs(fe).max()

    monkeypatch.setattr(engine_onnx.OnnxEngine, "outputs_with_features", drifting)
    again = _clf(tiny_v2_model, engine="onnx")
    again.predict_batch(x)
    assert again.active_engine == "torch"
    assert "does not agree with PyTorch" in again.engine_note and "|dA|" in again.engine_note
    assert not _classifier_graphs(cache)


def test_cache_folder_follows_the_platform_rules(monkeypatch, tmp_path):
    monkeypatch.setenv(engine_onnx.CACHE_ENV, str(tmp_path / "explicit"))
    assert engine_onnx.engine_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv(engine_onnx.CACHE_ENV)
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert engine_onnx.engine_cache_dir() == tmp_path / "xdg" / "xray-cxr" / "engines"


def test_an_unusable_cache_folder_falls_back_to_pytorch(tiny_file, tmp_path, monkeypatch, films):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv(engine_onnx.CACHE_ENV, str(blocker / "engines"))
    reference = _clf(tiny_file, engine="torch").predict_arrays(_arrays(films))
    clf = _clf(tiny_file)
    assert np.array_equal(clf.predict_arrays(_arrays(films)), reference)
    assert clf.active_engine == "torch" and "not writable" in clf.engine_note


def test_first_call_from_inside_inference_mode_still_builds_the_engine(tiny_file, cache):
    clf = _clf(tiny_file)
    x = torch.rand(3, 3, TINY, TINY, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():  # the export traces a copy of the model: it must leave inference mode itself
        probs = clf.predict_batch(x)
    assert clf.active_engine == "onnx", clf.engine_note
    assert np.abs(probs - _clf(tiny_file, engine="torch").predict_batch(x)).max() <= TOL
