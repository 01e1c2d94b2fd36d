"""The fast (int8) mode (``training.inference.engine_fast``): it runs only when asked, on a CPU
with VNNI / AMX / AVX-512 BF16 (simulated here), for a model file that records it; elsewhere the
classifier stays fp32 and says why; a record whose validation missed runs with a warning.  The agreement check
that decides "passed" is tested on constructed rows, the int8 engine end to end on a real
graph (the tiny model-v2 file, calibrated on real films), and the shipped files' records
are recomputed from their stored figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.common.resources import default_model_path, v1_model_path
from training.imaging.loading import load_image
from training.inference import engine_fast
from training.inference.classifier import Classifier
from training.model.modelfile import read_info, rewrite_info

pytest.importorskip("onnxruntime")

AVX2_ONLY = {"sse4_2", "avx", "avx2", "fma"}
VNNI = AVX2_ONLY | {"avx512f", "avx512_vnni"}


def test_cpu_support_names_the_instructions_or_says_why_not():
    assert engine_fast.fast_cpu_support(AVX2_ONLY) == (
        False, "this CPU has none of AMX, AVX-512 VNNI, AVX-VNNI or AVX-512 BF16")
    assert engine_fast.fast_cpu_support(VNNI) == (True, "AVX-512 VNNI")
    assert engine_fast.fast_cpu_support({"amx_int8", "amx_bf16", "avx512_bf16"}) == (True, "AMX, AVX-512 BF16")


def _rows(labels, cats, ps):
    return [{"status": "ok", "label": lab, "category": c, "p_covid": str(p)} for lab, c, p in zip(labels, cats, ps)]


def test_agreement_check_fails_on_one_flip_in_a_hundred_and_on_a_shifted_p():
    rng = np.random.default_rng(0)
    labels = ["COVID"] * 50 + ["Normal"] * 50
    p = np.r_[rng.uniform(0.7, 0.99, 50), rng.uniform(0.01, 0.3, 50)]
    cats = ["COVID-19" if v > 0.5 else "Normal" for v in p]
    fp32 = _rows(labels, cats, p)
    same = engine_fast.set_agreement(fp32, _rows(labels, cats, p + 0.005))
    assert same["verdict_agreement"] == 1.0 and same["dp_within_limit"] == 1.0
    assert engine_fast.set_passes(same) == []
    flipped = list(cats)
    flipped[0] = "Indeterminate"
    one = engine_fast.set_agreement(fp32, _rows(labels, flipped, p))
    assert one["verdicts_agree"] == 99 and any("verdict agreement" in m for m in engine_fast.set_passes(one))
    shifted = p.copy()
    shifted[:2] += 0.03  # 2 % of films moved by more than 0.02
    two = engine_fast.set_agreement(fp32, _rows(labels, cats, np.clip(shifted, 0, 1)))
    assert any("|dP(COVID)|" in m for m in engine_fast.set_passes(two))
    record = engine_fast.validation_record({"a": same, "b": one})
    assert record["passed"] is False and list(record["missed"]) == ["b"]
    assert engine_fast.validation_record({"a": same})["passed"] is True


def test_ece_may_not_get_worse_where_fp32_already_misses_it():
    fig = {"verdict_agreement": 1.0, "dp_within_limit": 1.0, "ece_fp32": 0.10, "ece_fast": 0.105}
    assert engine_fast.set_passes(fig) == []
    assert engine_fast.set_passes({**fig, "ece_fast": 0.12})  # > fp32 + 0.01
    assert engine_fast.set_passes({**fig, "ece_fp32": 0.02, "ece_fast": 0.049}) == []
    assert engine_fast.set_passes({**fig, "ece_fp32": 0.02, "ece_fast": 0.051})


def test_record_problems_and_warnings():
    assert "no validated" in engine_fast.fast_mode_problem({})
    rec = {"format": engine_fast.FAST_FORMAT, "ranges": {"data": {"x": {}}},
           "validation": {"passed": False, "missed": {"external_dev": ["verdict agreement 0.964 < 0.995"]}}}
    assert engine_fast.fast_mode_problem(rec) == ""
    assert "another version" in engine_fast.fast_mode_problem({**rec, "format": "older"})
    assert "external_dev: verdict agreement 0.964" in engine_fast.validation_warning(rec)
    assert engine_fast.validation_warning({**rec, "validation": {"passed": True}}) == ""


@pytest.fixture(scope="module")
def films(cxr1000) -> list[Path]:
    return sorted((cxr1000 / "COVID").glob("*.png"))[:4] + sorted((cxr1000 / "Normal").glob("*.png"))[:4]


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory, tiny_v2_model, films) -> Path:
    """A copy of the tiny v2 file whose record holds ranges calibrated on real films and a
    validation marked passed (the mechanism under test; real figures are the shipped files')."""
    from training.inference.engine_onnx import build_cached
    from training.model.audit import model_stamp

    folder = tmp_path_factory.mktemp("int8")
    path = folder / "tiny_v2_fast.safetensors"
    path.write_bytes(tiny_v2_model.read_bytes())
    clf = Classifier.from_file(path, device="cpu", gate=None, mixed_precision=False)
    batch = np.stack([clf.model_input(load_image(f).pixels)[0] for f in films])
    fp32, _ = build_cached(clf.model, model_stamp(clf.loaded).sha256, clf.input_size, folder)
    ranges = engine_fast.calibrate(fp32, [batch[:4], batch[4:]], folder / "int8.onnx")
    info, _ = read_info(path)
    info.fast_mode = {"format": engine_fast.FAST_FORMAT, "ranges": ranges,
                      "validation": engine_fast.validation_record({"test": {
                          "n": 8, "verdicts_agree": 8, "verdict_agreement": 1.0, "dp_within_limit": 1.0,
                          "dp_max": 0.0, "dp_median": 0.0, "ece_fp32": 0.0, "ece_fast": 0.0}})}
    rewrite_info(path, info)
    return path


def _fast(path: Path, monkeypatch, flags) -> Classifier:
    monkeypatch.setattr(engine_fast, "cpu_flags", lambda: set(flags))
    clf = Classifier.from_file(path, device="cpu", gate=None, mixed_precision=False, precision="fast")
    clf.fast_engine()
    return clf


def test_without_vnni_the_fast_mode_falls_back_to_fp32_and_says_so(int8_model, monkeypatch):
    clf = _fast(int8_model, monkeypatch, AVX2_ONLY)
    assert clf.active_engine == "onnx"
    assert "fp32" in clf.engine_note and "none of AMX, AVX-512 VNNI" in clf.engine_note, clf.engine_note


def test_with_vnni_the_validated_file_runs_int8_close_to_fp32(int8_model, films, monkeypatch):
    fast = _fast(int8_model, monkeypatch, VNNI)
    assert fast.active_engine == "onnx-int8", fast.engine_note
    assert "int8" in fast.engine_note
    ref = Classifier.from_file(int8_model, device="cpu", gate=None, mixed_precision=False)
    a = [p.p_covid for p in ref.classify_paths(films)]
    b = [p.p_covid for p in fast.classify_paths(films)]
    assert ref.active_engine == "onnx" and np.isfinite(b).all()
    assert a != b  # another graph ran
    assert float(np.max(np.abs(np.subtract(a, b)))) < 0.05


def test_a_file_whose_validation_missed_runs_fast_only_with_a_warning(int8_model, tmp_path, monkeypatch):
    path = tmp_path / "failed.safetensors"
    path.write_bytes(int8_model.read_bytes())
    info, _ = read_info(path)
    sets = {"test": {**info.fast_mode["validation"]["sets"]["test"], "verdict_agreement": 0.9}}
    info.fast_mode["validation"] = engine_fast.validation_record(sets)
    rewrite_info(path, info)
    clf = _fast(path, monkeypatch, VNNI)
    assert clf.active_engine == "onnx-int8"
    assert "WARNING" in clf.engine_note and "test: verdict agreement 0.900" in clf.engine_note, clf.engine_note
    assert "WARNING" not in _fast(int8_model, monkeypatch, VNNI).engine_note


def test_a_file_without_a_record_stays_fp32(tiny_v2_model, monkeypatch):
    clf = _fast(tiny_v2_model, monkeypatch, VNNI)
    assert clf.active_engine == "onnx" and "records no validated fast mode" in clf.engine_note, clf.engine_note


def test_a_rewritten_record_keeps_the_weights(int8_model, tiny_v2_model):
    from training.model.modelfile import read_verified_tensors, weights_digest

    assert weights_digest(read_verified_tensors(int8_model)) == weights_digest(read_verified_tensors(tiny_v2_model))
    assert read_info(int8_model)[0].fast_mode["format"] == engine_fast.FAST_FORMAT


@pytest.mark.parametrize("which", ["default", "v1"])
def test_shipped_records_match_their_figures(which):
    """The shipped files' fast-mode records: every evaluation set measured, and "passed" is what the
    criteria give for the stored figures (a hand-edited verdict would not match)."""
    path = v1_model_path() if which == "v1" else default_model_path()
    if path is None:
        pytest.skip("model not installed")
    rec = read_info(path)[0].fast_mode
    assert rec, f"{path.name} records no fast mode"
    v = rec["validation"]
    assert set(v["sets"]) == {"new_test", "kaggle_test", "paper_test", "external_dev"}
    assert v["passed"] == engine_fast.validation_record(v["sets"])["passed"]
    assert engine_fast.range_names(rec["ranges"])


def test_committed_validations_are_the_files_and_the_docs():
    """results/fast_mode/*.json (the validation runs) are what the model files record and what
    docs/INFERENCE.md's table prints."""
    import json

    from training.release.fast_mode import render_table

    repo = Path(__file__).resolve().parents[1]
    recs = {}
    for p in sorted((repo / "results" / "fast_mode").glob("*.json")):
        rec = json.loads(p.read_text())
        recs[rec["model"]] = rec
        model = repo / "resources" / "models" / rec["model"]
        if model.is_file():
            stored = read_info(model)[0].fast_mode
            assert stored["validation"] == rec["validation"] and stored["recipe"] == rec["recipe"], rec["model"]
    assert recs, "no committed fast-mode validation"
    doc = (repo / "docs" / "INFERENCE.md").read_text(encoding="utf-8")
    for line in render_table(recs).splitlines():
        assert line in doc, line
