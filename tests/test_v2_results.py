"""Model v2's committed figures are its own.

* Every ablation row's ``evaluation.json`` follows from its committed per-file
  ``predictions.csv`` (``training.release.evaluate_v2.figures``), and the model card and
  the results README print those figures.
* The shipped v2 file, run now on a sample of those real films through the
  app's path, gives the committed predictions again (P per class, the verdict,
  lung involvement).
* The shipped v2 is the app's default model and is what its row says it is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.common.resources import default_model_path, model_card_path
from training.release.evaluate_v2 import SHIPPED_ROW, figures, read_rows, render_goals, render_table

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "v2"

ROWS = [d for d in sorted(RESULTS.iterdir()) if (d / "evaluation.json").is_file()] if RESULTS.is_dir() else []


def _close(a, b, path=""):
    if isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if a != a and b != b:  # both NaN
            return
        assert a == pytest.approx(b, abs=1e-9), path
    else:
        assert a == b, path


@pytest.mark.parametrize("row", ROWS, ids=[d.name for d in ROWS])
def test_committed_figures_follow_from_the_committed_predictions(row):
    ev = json.loads((row / "evaluation.json").read_text())
    rows = read_rows(row / "predictions.csv")
    _close(json.loads(json.dumps(figures(rows, ev["threshold"], ev["band"]), default=float)), ev["figures"])


def test_the_shipped_row_and_its_goals_are_in_the_card_and_the_results_readme():
    ev = json.loads((RESULTS / SHIPPED_ROW / "evaluation.json").read_text())
    card = model_card_path().read_text(encoding="utf-8")
    readme = (REPO / "results" / "README.md").read_text(encoding="utf-8")
    goals = render_goals(ev)
    assert goals in card, "the card's goals table is the one computed from the committed predictions"
    table = render_table([json.loads((d / "evaluation.json").read_text()) for d in ROWS])
    for line in table.splitlines()[2:]:
        assert line in card and line in readme, line


def test_the_default_model_is_the_evaluated_v2_file():
    from training.model.modelfile import read_info, read_verified_tensors, weights_digest

    ev = json.loads((RESULTS / SHIPPED_ROW / "evaluation.json").read_text())
    path = default_model_path()
    assert path is not None and path.name == "covid_cxr_v2.safetensors"
    assert weights_digest(read_verified_tensors(path)) == ev["weights_sha256"], "the shipped weights are the evaluated ones"
    info = read_info(path)[0]
    assert info.arch == "resnet50_lstm" and info.lesion_head
    assert info.class_names == ["Normal", "COVID", "Pneumonia"] and info.positive_class == "COVID"
    assert info.band and info.band[0] <= info.threshold <= info.band[1]
    assert info.threshold == pytest.approx(ev["threshold"])


def test_the_training_never_saw_a_test_film():
    """The new set's test split and the paper's 100 are disjoint from every film the v2 run trained on."""
    import csv

    split = list(csv.DictReader(open(RESULTS / "split.csv", newline="")))
    train = {(r["dataset"], r["file"]) for r in split if r["split"] == "train"}
    held = {(r["dataset"], r["file"]) for r in split if r["split"] in ("test", "paper_test")}
    assert train and held and not (train & held)
    new = [r for r in split if r["dataset"] == "cxr-infection-3class"]
    counts = {s: sum(1 for r in new if r["split"] == s) for s in ("train", "val", "test")}
    assert counts["test"] >= 300 and counts["val"] >= 300 and counts["train"] >= 1500, counts
    ev_rows = read_rows(RESULTS / SHIPPED_ROW / "predictions.csv")
    evaluated = {r["file"] for r in ev_rows if r["set"] in ("new_test", "paper_test")}
    assert not {f"{d}/{f}" for d, f in train} & evaluated


def test_shipped_v2_reproduces_committed_predictions_on_real_films(data_dir):
    from training.inference.classifier import Classifier

    rows = read_rows(RESULTS / SHIPPED_ROW / "predictions.csv")
    pick = []
    for s, label, k in (("new_test", "COVID", 3), ("new_test", "Pneumonia", 2), ("new_test", "Normal", 2),
                        ("external_dev", "COVID", 2), ("external_dev", "Pneumonia", 2), ("external_dev", "Normal", 2)):
        pick += [r for r in rows if r["set"] == s and r["label"] == label and r["status"] == "ok"][:k]
    clf = Classifier.from_file(default_model_path(), device="cpu", mixed_precision=False, batch_size=4)
    preds = list(clf.classify_paths([data_dir / r["file"] for r in pick], enforce_gate=False))
    for r, q in zip(pick, preds):
        assert q.ok, r["file"]
        got = np.array([q.probs["Normal"], q.p_covid, q.probs["Pneumonia"]])
        want = np.array([float(r["p_normal"]), float(r["p_covid"]), float(r["p_pneumonia"])])
        assert np.abs(got - want).max() < 2e-3, (r["file"], got, want)
        if abs(q.p_covid - clf.threshold) > 5e-3:
            assert q.label == r["predicted"], r["file"]
        if r["lung_involvement"]:
            assert q.lung_involvement == pytest.approx(float(r["lung_involvement"]), abs=0.02), r["file"]
