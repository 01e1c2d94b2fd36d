"""Test figures of a model for people (training.model.summary) and the one
punctuation rule for messages and warnings (training.common.formatting)."""

from __future__ import annotations

import json

import pytest

from training.common.formatting import clause, sentence, sentence_join
from training.model.summary import SMALL_TEST_PER_CLASS, summarize


def _info(**kw):
    from training.model.modelfile import ModelInfo

    return ModelInfo(arch="resnet50", **kw)


def _m(tp, fn, fp, tn, **extra):
    n = tp + fn + fp + tn
    return {"n": n, "accuracy": (tp + tn) / n, "recall": tp / (tp + fn), "roc_auc": 0.75,
            "ci95": {"accuracy": [0.1, 0.9], "recall": [0.2, 0.95], "specificity": [0.3, 0.97],
                     "roc_auc": [0.4, 0.99]},
            "confusion": {"tp": tp, "fn": fn, "fp": fp, "tn": tn}, **extra}


# ------------------------------------------------------------------ punctuation
@pytest.mark.parametrize("parts, expected", [
    (["Body part not recorded.", "AP view."], "Body part not recorded; AP view."),
    (["one", "", "two.."], "one; two."),
    (["Is it?"], "Is it?"),
    ([], ""),
])
def test_sentence_join_has_one_full_stop(parts, expected):
    out = sentence_join(parts)
    assert out == expected and ".." not in out and ".;" not in out


def test_sentence_and_clause():
    assert sentence("done..") == "done." and sentence("ok") == "ok." and sentence("") == ""
    assert clause("Not valid. ") == "Not valid"


def test_gate_texts_and_forced_warning_have_no_double_stops():
    from training.gate.gate import GateResult
    from training.gate.notes import REFUSAL_PREFIX

    g = GateResult("refused", reasons=["too little lung was found.", "it is a colour picture"],
                   warnings=["the lung outline is unclear."])
    assert g.refusal_text() == f"{REFUSAL_PREFIX}: too little lung was found; it is a colour picture."
    g2 = GateResult("warning", warnings=["the lung outline is unclear."])
    assert g2.warning_texts()[0].endswith("unclear.") and ".." not in g2.warning_texts()[0]
    from training.inference.gate_policy import apply_gate
    from training.inference.result import Prediction

    p = Prediction(path=None, status="ok", label="COVID", p_covid=0.7, threshold=0.5,
                   warnings=["AP view (often a portable film): image quality and heart size differ from PA.",
                             "Body part not recorded in the DICOM header."])
    apply_gate(p, g)
    row = p.as_row()
    assert ".;" not in row["warnings"] and ".." not in row["warnings"] and row["warnings"].endswith(".")
    assert not any(". (" in w or ".." in w for w in p.warnings)
    # a forced result: the reason is in the CSV's reason column, no verdict of its own
    assert not p.valid and row["reason"].startswith("Classified anyway") and "too little lung" in row["reason"]
    assert row["label"] not in ("COVID", "Normal") and row["result"].startswith("not valid")
    assert "not valid" in row["suitability"]


def test_header_override_warning_is_one_sentence(tmp_path):
    import numpy as np
    from synthetic import chest_phantom, make_dicom, write_dicom

    from training.imaging.loading import load_image

    ds = make_dicom((chest_phantom() * 4000).astype(np.uint16), modality="CT")
    img = load_image(write_dicom(tmp_path / "ct.dcm", ds), check_header=False)
    w = [x for x in img.warnings if "header check overridden" in x]
    assert w and all(x.endswith("(header check overridden).") and ". (" not in x for x in w)


# ------------------------------------------------------------------ summaries
def test_metadata_metrics_are_labelled_with_their_threshold():
    info = _info(threshold=0.3, metrics=_m(40, 10, 5, 45))  # trainer files: test metrics at 0.5
    s = summarize(info, None, 0.3)
    assert s.threshold == 0.5 and not s.at_threshold_in_use
    assert "not the 0.300 in use" in s.threshold_text() and "not at the 0.300 in use" in s.warning()
    rows = dict(s.rows())
    assert rows["Specificity (Normal found)"].startswith("0.900")  # from the confusion matrix
    assert rows["Accuracy"] == "0.850 (0.10-0.90)"
    assert rows["Test images"] == "100 (50 COVID, 50 Normal)"
    assert "not calibrated" in rows["Calibration"]


def test_a_release_evaluated_at_its_threshold():
    m = _m(90, 10, 10, 90, specificity=0.9, evaluated_on="own test split, calibrated P at the stored threshold")
    info = _info(threshold=0.2, metrics=m, calibration={"method": "temperature", "temperature": 0.97,
                                                        "fitted_on": "validation split (390 images)"})
    s = summarize(info, None, 0.2)
    assert s.at_threshold_in_use and s.warning() == "" and "T = 0.970" in s.calibration


def test_four_test_images_say_little():
    s = summarize(_info(metrics=_m(1, 1, 1, 1)), None, 0.5)
    assert s.small and s.warning().startswith("These figures rest on 4 test images")
    assert "say little" in s.warning()
    assert not summarize(_info(metrics=_m(SMALL_TEST_PER_CLASS, 0, 0, SMALL_TEST_PER_CLASS)), None, 0.5).small


def test_no_metrics_is_said():
    s = summarize(_info(), None, 0.5)
    assert not s.has_metrics and "no test figures" in s.warning()


def test_run_folder_predictions_give_figures_at_the_threshold_in_use(tmp_path):
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "resnet50").mkdir()
    labels = [1, 1, 1, 0, 0, 0]
    p = [0.9, 0.4, 0.2, 0.35, 0.1, 0.6]
    (run / "resnet50" / "predictions.json").write_text(json.dumps({"test": {"file": list("abcdef"), "label": labels,
                                                                            "p_covid": p}}))
    info = _info(threshold=0.3, metrics=_m(1, 2, 1, 2))
    s = summarize(info, run / "models" / "resnet50.safetensors", 0.3)
    assert s.at_threshold_in_use and s.source.startswith("this run's test predictions")
    assert s.metrics["confusion"] == {"tp": 2, "fn": 1, "fp": 2, "tn": 1}
    assert s.metrics["ci95"]["roc_auc"] == [0.4, 0.99]  # threshold-free: from the file
    # a calibrated file does not use the run's (uncalibrated) predictions
    info.calibration = {"method": "temperature", "temperature": 2.0}
    assert summarize(info, run / "models" / "resnet50.safetensors", 0.3).source == "the model file"
