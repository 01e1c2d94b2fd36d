"""What a model file's test figures say, for people deciding whether to use it.

Torch-free (the app's model-switch dialog and About box run it on the GUI
thread).  One place that knows:

* at which decision threshold a model's stored test metrics were computed
  (the trainer stores them at 0.5; a calibrated release at its own
  threshold), and how to get them at the threshold actually in use: from the
  run folder's test predictions when the file sits in one
  (``<run>/models/<arch>.safetensors`` + ``<run>/<arch>/predictions.json``),
  else from the run's ``metrics.json`` evaluations, else the file's metadata;
* how many test images they rest on, and when that is too few to say much;
* whether P(COVID) is a calibrated probability.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.common.formatting import DASH, ci_text
from training.common.formatting import sentence_join as join_sentences

SMALL_TEST_PER_CLASS = 50  # fewer test images than this in a class: the figures say little
_SAME = 1e-9


@dataclass
class MetricsSummary:
    """Test figures of one model at one threshold (``metrics`` in the core's
    ``evaluate`` layout: values, ``ci95``, ``confusion``)."""

    metrics: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None  # the threshold the figures were computed at
    threshold_in_use: float | None = None
    source: str = ""  # where the figures come from, in words
    calibration: str = ""

    @property
    def has_metrics(self) -> bool:
        return bool(self.metrics) and self.metrics.get("accuracy") is not None

    @property
    def class_counts(self) -> tuple[int, int] | None:
        """(COVID, Normal) test images, from the confusion matrix."""
        cm = self.metrics.get("confusion") or {}
        if not all(k in cm for k in ("tp", "fn", "fp", "tn")):
            return None
        return int(cm["tp"]) + int(cm["fn"]), int(cm["tn"]) + int(cm["fp"])

    @property
    def n(self) -> int | None:
        n = self.metrics.get("n")
        if n is None and self.class_counts is not None:
            n = sum(self.class_counts)
        return None if n is None else int(n)

    @property
    def at_threshold_in_use(self) -> bool:
        return (self.threshold is not None and self.threshold_in_use is not None
                and abs(self.threshold - self.threshold_in_use) <= _SAME)

    @property
    def small(self) -> bool:
        """Too few test images (per class) for the figures to mean much."""
        counts = self.class_counts
        if counts is not None:
            return min(counts) < SMALL_TEST_PER_CLASS
        n = self.n
        return n is None or n < 2 * SMALL_TEST_PER_CLASS

    def size_text(self) -> str:
        counts = self.class_counts
        if self.n is None:
            return DASH
        if counts is None:
            return f"{self.n}"
        return f"{self.n} ({counts[0]} COVID, {counts[1]} Normal)"

    def threshold_text(self) -> str:
        if self.threshold is None:
            return DASH
        if self.threshold_in_use is None or self.at_threshold_in_use:
            return f"{self.threshold:.3f}"
        return f"{self.threshold:.3f} (not the {self.threshold_in_use:.3f} in use)"

    def warning(self) -> str:
        """A plain caution about these figures, or ''."""
        if not self.has_metrics:
            return "There are no test figures for this model: nothing says how well it works."
        parts = []
        if self.small:
            counts = self.class_counts
            per = f" ({counts[0]} COVID, {counts[1]} Normal)" if counts is not None else ""
            parts.append(f"These figures rest on {self.n} test images{per} and say little: with fewer than "
                         f"{SMALL_TEST_PER_CLASS} per class the confidence intervals are very wide")
        if self.threshold is not None and self.threshold_in_use is not None and not self.at_threshold_in_use:
            parts.append(f"The figures are at threshold {self.threshold:.3f}, not at the {self.threshold_in_use:.3f} "
                         "in use; the test predictions needed to recompute them are not available")
        return " ".join(join_sentences([p]) for p in parts)

    def rows(self) -> list[tuple[str, str]]:
        """(label, text) rows for a table: size, threshold, the four figures with 95 % CIs, calibration."""
        m = self.metrics
        return [("Test images", self.size_text()),
                ("Figures at threshold", self.threshold_text()),
                ("Accuracy", ci_text(m, "accuracy")),
                ("Sensitivity (COVID found)", ci_text(m, "recall")),
                ("Specificity (Normal found)", ci_text(m, "specificity")),
                ("ROC AUC", ci_text(m, "roc_auc")),
                ("Calibration", self.calibration or DASH)]


def calibration_text(info) -> str:
    cal = getattr(info, "calibration", None) or {}
    if str(cal.get("method", "")).startswith("temperature"):
        where = cal.get("fitted_on")
        return (f"calibrated probability (temperature scaling, T = {float(cal.get('temperature', 1.0)):.3f}"
                + (f", fitted on the {where}" if where else "") + ")")
    if cal:
        return f"calibrated ({cal.get('method', 'unknown method')})"
    return "not calibrated: P(COVID) is the model's score, not a probability"


def _with_specificity(m: dict[str, Any]) -> dict[str, Any]:
    m = dict(m)
    cm = m.get("confusion") or {}
    if m.get("specificity") is None and "tn" in cm and "fp" in cm:
        neg = int(cm["tn"]) + int(cm["fp"])
        m["specificity"] = cm["tn"] / neg if neg else float("nan")
    return m


def _metadata_threshold(info) -> float:
    """The threshold the file's own metrics were computed at."""
    m = info.metrics or {}
    if isinstance(m.get("threshold"), (int, float)):
        return float(m["threshold"])
    if "stored threshold" in str(m.get("evaluated_on", "")):
        return float(info.threshold)
    return 0.5  # the trainer stores the test split at 0.5 (run results: evaluations.test.at_0.5)


def _run_files(info, path) -> tuple[Path, Path] | None:
    """(metrics.json, predictions.json) of the run folder the model file sits in, if it does."""
    if path is None:
        return None
    p = Path(path)
    if p.parent.name != "models" or p.stem != info.arch:
        return None
    run = p.parent.parent / info.arch
    return run / "metrics.json", run / "predictions.json"


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def summarize(info, path=None, threshold: float | None = None) -> MetricsSummary:
    """The test figures of model ``info`` (file ``path``) at ``threshold``
    (default: the file's threshold), from the best source available."""
    thr = float(info.threshold if threshold is None else threshold)
    out = MetricsSummary(threshold_in_use=thr, calibration=calibration_text(info))
    meta = _with_specificity(info.metrics or {}) if info.metrics else {}
    auc_ci = (meta.get("ci95") or {}).get("roc_auc")
    files = _run_files(info, path)
    if files is not None:
        metrics_json, predictions_json = (_read_json(f) if f.is_file() else None for f in files)
        preds = (predictions_json or {}).get("test") if isinstance(predictions_json, dict) else None
        # the run's predictions are the uncalibrated P: usable only for a file without calibration
        if preds and not (info.calibration or {}) and len(preds.get("label", [])) == len(preds.get("p_covid", [])):
            from training.model.metrics import evaluate

            m = evaluate(preds["label"], preds["p_covid"], thr, bootstrap=0)
            if auc_ci:  # AUC does not depend on the threshold; its bootstrap CI is in the file
                m["ci95"]["roc_auc"] = list(auc_ci)
            out.metrics, out.threshold = m, thr
            out.source = "this run's test predictions, at the threshold in use"
            return out
        evals = ((metrics_json or {}).get("evaluations") or {}).get("test") if isinstance(metrics_json, dict) else None
        if evals:
            for ev in evals.values():
                if isinstance(ev, dict) and abs(float(ev.get("threshold", -1)) - thr) <= _SAME:
                    out.metrics, out.threshold = _with_specificity(ev), thr
                    out.source = "this run's test results"
                    return out
    if meta:
        out.metrics, out.threshold = meta, _metadata_threshold(info)
        out.source = "the model file"
    return out


__all__ = ["MetricsSummary", "SMALL_TEST_PER_CLASS", "summarize", "calibration_text", "join_sentences"]
