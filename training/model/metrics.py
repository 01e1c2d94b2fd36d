"""Binary classification metrics with 95 % confidence intervals.

COVID is the positive class.  Accuracy, precision and recall are proportions:
their CIs are Wilson score intervals.  F1 and ROC AUC have no closed form: their
CIs come from a seeded percentile bootstrap (2,000 resamples).  With 100 test
images, one image is one percentage point, so the intervals matter.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def confusion(y_true, y_pred) -> dict[str, int]:
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    return {
        "tp": int(((y_true == 1) & (y_pred == 1)).sum()),
        "fn": int(((y_true == 1) & (y_pred == 0)).sum()),
        "fp": int(((y_true == 0) & (y_pred == 1)).sum()),
        "tn": int(((y_true == 0) & (y_pred == 0)).sum()),
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def point_metrics(cm: dict[str, int]) -> dict[str, float]:
    tp, fn, fp, tn = cm["tp"], cm["fn"], cm["fp"], cm["tn"]
    n = tp + fn + fp + tn
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {"accuracy": _ratio(tp + tn, n), "precision": precision, "recall": recall,
            "specificity": _ratio(tn, tn + fp), "f1": f1}


def roc_auc(y_true, p) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied scores counted half)."""
    y_true = np.asarray(y_true).astype(int)
    p = np.asarray(p, dtype=np.float64)
    pos, neg = p[y_true == 1], p[y_true == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allv))
    i = 0
    while i < len(allv):  # average ranks of ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    r_pos = r[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def roc_curve(y_true, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate, thresholds), thresholds descending."""
    y_true = np.asarray(y_true).astype(int)
    p = np.asarray(p, dtype=np.float64)
    thr = np.unique(p)[::-1]
    P, N = max(1, (y_true == 1).sum()), max(1, (y_true == 0).sum())
    tpr = np.array([((p >= t) & (y_true == 1)).sum() / P for t in thr])
    fpr = np.array([((p >= t) & (y_true == 0)).sum() / N for t in thr])
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr]), thr


def calibration(y_true, p, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error (equal-width bins) and the reliability table."""
    y_true = np.asarray(y_true).astype(float)
    p = np.asarray(p, dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        if not m.any():
            table.append({"bin": b, "lo": edges[b], "hi": edges[b + 1], "n": 0, "mean_p": None, "frac_pos": None})
            continue
        mp, fp = float(p[m].mean()), float(y_true[m].mean())
        ece += m.sum() / len(p) * abs(mp - fp)
        table.append({"bin": b, "lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()),
                      "mean_p": mp, "frac_pos": fp})
    return {"ece": float(ece), "bins": table}


def threshold_for_sensitivity(y_true, p, target: float = 0.95) -> float:
    """The highest threshold whose sensitivity (recall of COVID) is >= target."""
    y_true = np.asarray(y_true).astype(int)
    p = np.asarray(p, dtype=np.float64)
    pos = np.sort(p[y_true == 1])
    if len(pos) == 0:
        return 0.5
    k = int(math.floor((1 - target) * len(pos) + 1e-9))  # positives we may miss
    t = float(pos[k])
    return float(min(max(t, 1e-6), 1 - 1e-6))


def evaluate(y_true, p, threshold: float = 0.5, *, bootstrap: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Every figure the report needs, for one set of predictions."""
    y_true = np.asarray(y_true).astype(int)
    p = np.asarray(p, dtype=np.float64)
    pred = (p >= threshold).astype(int)
    cm = confusion(y_true, pred)
    m = point_metrics(cm)
    tp, fn, fp, tn = cm["tp"], cm["fn"], cm["fp"], cm["tn"]
    ci = {
        "accuracy": wilson(tp + tn, len(y_true)),
        "precision": wilson(tp, tp + fp),
        "recall": wilson(tp, tp + fn),
        "specificity": wilson(tn, tn + fp),
    }
    auc = roc_auc(y_true, p)
    rng = np.random.default_rng(seed)
    f1s, aucs = [], []
    n = len(y_true)
    for _ in range(bootstrap if n else 0):
        s = rng.integers(0, n, n)
        yt, ps = y_true[s], p[s]
        f1s.append(point_metrics(confusion(yt, (ps >= threshold).astype(int)))["f1"])
        if 0 < yt.sum() < n:
            aucs.append(roc_auc(yt, ps))
    ci["f1"] = tuple(np.percentile(f1s, [2.5, 97.5]).tolist()) if f1s else (float("nan"),) * 2
    ci["roc_auc"] = tuple(np.percentile(aucs, [2.5, 97.5]).tolist()) if aucs else (float("nan"),) * 2
    cal = calibration(y_true, p)
    return {"n": int(n), "threshold": float(threshold), "confusion": cm, **m, "roc_auc": auc,
            "ci95": {k: [float(v[0]), float(v[1])] for k, v in ci.items()},
            "ece": cal["ece"], "reliability": cal["bins"]}


def macro_f1(y: np.ndarray, pred: np.ndarray, classes=(0, 1, 2)) -> float:
    """Mean of the per-class F1 of ``pred`` against ``y`` (0 for a class never predicted right)."""
    f1s = []
    for c in classes:
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s))
