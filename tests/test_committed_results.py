"""The committed training results are what they claim to be: the paper
reproduction ran the paper's recipe, its reported metrics follow from the
committed per-image predictions, its chosen epochs follow the documented rule,
and the shipped model kept the reproduction's 100 test images out of training."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "results"
PAPER = RESULTS / "paper"
ARCHS = ("resnet50", "lstm", "resnet50_lstm")

pytestmark = pytest.mark.skipif(not (PAPER / "report.json").exists(), reason="no committed reproduction")


@pytest.fixture(scope="module")
def report():
    return json.loads((PAPER / "report.json").read_text(encoding="utf-8"))


def test_reproduction_used_the_papers_recipe(report):
    cfg = report["config"]
    assert cfg["recipe"] == "paper"
    assert (cfg["input_size"], cfg["batch_size"], cfg["lr"], cfg["epochs"]) == (224, 32, 0.001, 15)
    assert cfg["augment"] is False and cfg["lr_schedule"] == "constant" and cfg["weight_decay"] == 0.0
    assert cfg["init"] == "scratch"
    assert sorted(report["models"]) == sorted(ARCHS)
    for arch in ARCHS:
        assert report["models"][arch]["epochs_run"] == 15


@pytest.mark.parametrize("arch", ARCHS)
def test_reported_test_metrics_follow_from_the_predictions(report, arch):
    pred = json.loads((PAPER / arch / "predictions.json").read_text(encoding="utf-8"))["test"]
    counts = Counter((y, p >= 0.5) for y, p in zip(pred["label"], pred["p_covid"]))
    tp, fn, fp, tn = counts[(1, True)], counts[(1, False)], counts[(0, True)], counts[(0, False)]
    ev = report["models"][arch]["evaluations"]["test"]["at_0.5"]
    assert ev["confusion"] == {"tp": tp, "fn": fn, "fp": fp, "tn": tn}
    assert ev["n"] == 100
    assert ev["accuracy"] == pytest.approx((tp + tn) / 100)
    assert ev["precision"] == pytest.approx(tp / (tp + fp))
    assert ev["recall"] == pytest.approx(tp / (tp + fn))

    # the predictions are for exactly the split's test images, with their labels
    split = {(r["dataset"] + "/" + r["file"]): r for r in csv.DictReader(open(PAPER / "split.csv", encoding="utf-8"))}
    test_files = {f for f, r in split.items() if r["split"] == "test"}
    assert set(pred["file"]) == test_files
    for f, y in zip(pred["file"], pred["label"]):
        assert y == (1 if split[f]["label"] == "COVID" else 0)


@pytest.mark.parametrize("arch", ARCHS)
def test_chosen_epoch_is_best_validation_accuracy_ties_lower_loss(report, arch):
    rows = list(csv.DictReader(open(PAPER / arch / "history.csv", encoding="utf-8")))
    assert len(rows) == 15
    best = max(rows, key=lambda r: (float(r["val_acc"]), -float(r["val_loss"])))
    assert report["models"][arch]["best_epoch"] == int(best["epoch"])


def test_shipped_model_never_trained_on_the_reproductions_test_images():
    paper_test = {
        (r["dataset"], r["file"]) for r in csv.DictReader(open(PAPER / "split.csv", encoding="utf-8")) if r["split"] == "test"
    }
    shipped = list(csv.DictReader(open(RESULTS / "shipped" / "split.csv", encoding="utf-8")))
    held_out = {(r["dataset"], r["file"]) for r in shipped if r["split"] == "paper_test"}
    used = {(r["dataset"], r["file"]) for r in shipped if r["split"] in ("train", "val")}
    assert held_out == paper_test and len(held_out) == 100
    assert not (used & paper_test)
