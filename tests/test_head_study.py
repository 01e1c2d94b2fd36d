"""``training.release.head_study``: the validation figures and the paired bootstrap of the LSTM head study."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.release.head_study import FIGURES, figures, render, study


def _films(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(0.0, 1.0, (n, 3))
    logits[np.arange(n), y] += 2.0  # an informative model
    return logits, y


def test_figures_of_a_perfect_and_a_known_model():
    y = np.array([0, 1, 2, 1, 0, 2])
    perfect = np.eye(3)[y] * 20.0
    dice = np.array([np.nan, 0.5, np.nan, 0.7, np.nan, np.nan])
    f = figures(perfect, y, dice)
    assert f["accuracy"] == 1.0 and f["macro_f1"] == 1.0
    assert f["auc_covid_normal"] == 1.0 and f["auc_covid_pneumonia"] == 1.0
    assert f["loss"] == pytest.approx(0.0, abs=1e-6) and f["lesion_dice"] == pytest.approx(0.6)
    flat = np.zeros((6, 3))
    assert figures(flat, y, dice)["loss"] == pytest.approx(np.log(3.0))


def test_paired_difference_of_a_model_with_itself_is_exactly_zero_and_a_worse_model_is_found():
    logits, y = _films()
    dice = np.full(len(y), np.nan)
    noisy = logits + np.random.default_rng(1).normal(0.0, 3.0, logits.shape)  # much less informative
    result = study({"ref": (logits, dice), "same": (logits.copy(), dice), "worse": (noisy, dice)}, y, "ref",
                   bootstrap=200)
    same = result["same"]["minus_reference"]
    assert all(same[f]["difference"] == 0.0 and same[f]["ci95"] == [0.0, 0.0] for f in FIGURES if f != "lesion_dice")
    worse = result["worse"]["minus_reference"]
    assert worse["macro_f1"]["ci95"][1] < 0 and worse["auc_covid_normal"]["ci95"][1] < 0
    assert worse["loss"]["ci95"][0] > 0
    lo, hi = result["ref"]["ci95"]["macro_f1"]
    assert lo <= result["ref"]["macro_f1"] <= hi
    table = render(result, "ref")
    assert table.count("\n|") == 4 and "paired bootstrap" in table


def test_gate_saturation_of_torch_and_keras_initialised_heads():
    import torch

    from training.model.networks import build_model, keras_lstm_init_
    from training.release.head_study import gate_saturation

    torch.manual_seed(0)
    model = build_model("resnet50_lstm", "scratch", classes=3).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    torch_init = gate_saturation(model, images)
    keras = gate_saturation(keras_lstm_init_(model.head) and model, images)
    assert torch_init["films"] == keras["films"] == 3
    assert keras["pre_activation_std"] < torch_init["pre_activation_std"]
    assert 0.0 <= keras["input_forget_beyond_4"] <= torch_init["input_forget_beyond_4"] <= 1.0
    assert gate_saturation(build_model("resnet50", "scratch", classes=3).eval(), images) == {}


STUDY = Path(__file__).resolve().parents[1] / "results" / "v2" / "lstm_head_study"
STUDIES = sorted(STUDY.glob("*.json")) if STUDY.is_dir() else []


@pytest.mark.parametrize("study_file", STUDIES, ids=[p.stem for p in STUDIES])
def test_committed_study_figures_follow_from_the_committed_per_film_outputs(study_file):
    import json

    committed = json.loads(study_file.read_text())
    with np.load(study_file.with_suffix(".npz"), allow_pickle=False) as z:
        y = z["labels"].astype(int)
        assert len(z["films"]) == len(y) >= 700 and set(np.unique(y)) == {0, 1, 2}
        for name, row in committed["models"].items():
            again = figures(z[f"{name}:logits"], y, z[f"{name}:dice"])
            for f in FIGURES:
                assert again[f] == pytest.approx(row[f], abs=1e-9, nan_ok=True), (name, f)
    assert committed["reference"] in committed["models"]
