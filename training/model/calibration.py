"""Calibrated P(COVID), the operating point and the borderline band.

All three are fitted on the **validation** split only, and stored in the model
file (``ModelInfo.calibration``, ``threshold``, ``band``), so the app, the CLI
and the PDF report apply exactly the same numbers:

* **Temperature scaling** (Guo et al. 2017): ``P = sigmoid(logit / T)`` with
  the one number ``T`` that minimises the validation log-loss.  It changes no
  ranking (AUC, sensitivity at a fixed rank) - only what P means.
* **Threshold**: the highest calibrated P whose validation sensitivity is at
  least ``target_sensitivity`` (0.95).
* **Borderline band** ``[lo, hi]``: below ``lo`` at least ``band_sensitivity``
  (0.98) of the validation COVID films lie above, so "Normal" there misses few;
  above ``hi`` at most ``1 - band_specificity`` (5 %) of validation Normals
  lie, so "COVID" there is rarely a false alarm.  In between the app says
  "Indeterminate - review".  The band always contains the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.model.metrics import threshold_for_sensitivity

EPS = 1e-6
TARGET_SENSITIVITY = 0.95
BAND_SENSITIVITY = 0.98
BAND_SPECIFICITY = 0.95


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def apply_temperature(p, temperature: float) -> np.ndarray:
    """Uncalibrated P -> calibrated P (``temperature`` 1 = unchanged)."""
    return sigmoid(logit(p) / float(temperature))


def fit_temperature(p_val, y_val) -> float:
    """The temperature that minimises the validation log-loss (bounded 0.05-20)."""
    z = logit(p_val)
    y = np.asarray(y_val, dtype=np.float64)

    def nll(log_t: float) -> float:
        q = np.clip(sigmoid(z / math.exp(log_t)), EPS, 1 - EPS)
        return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())

    from scipy.optimize import minimize_scalar  # fitting only: the app's start-up uses sigmoid/softmax alone

    res = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(res.x))


def threshold_for_specificity(y_true, p, target: float = BAND_SPECIFICITY) -> float:
    """The lowest threshold whose specificity (Normals below it) is >= target."""
    y_true = np.asarray(y_true).astype(int)
    neg = np.sort(np.asarray(p, dtype=np.float64)[y_true == 0])
    if len(neg) == 0:
        return 0.5
    k = int(math.ceil(target * len(neg) - 1e-9))  # Normals that must lie below
    t = float(np.nextafter(neg[k - 1], 1.0)) if k >= 1 else float(neg[0])
    return float(min(max(t, EPS), 1 - EPS))


@dataclass
class Calibration:
    temperature: float
    threshold: float
    band: tuple[float, float]
    n_val: int
    target_sensitivity: float = TARGET_SENSITIVITY
    band_sensitivity: float = BAND_SENSITIVITY
    band_specificity: float = BAND_SPECIFICITY

    def to_metadata(self) -> dict[str, Any]:
        return {"method": "temperature", "temperature": self.temperature, "fitted_on": f"validation split "
                f"({self.n_val} images)", "threshold_rule": f"sensitivity >= {self.target_sensitivity:.2f} on "
                "validation", "band_rule": f"below: sensitivity >= {self.band_sensitivity:.2f}; above: "
                f"specificity >= {self.band_specificity:.2f} (validation)"}


def fit(p_val, y_val, *, target_sensitivity: float = TARGET_SENSITIVITY, band_sensitivity: float = BAND_SENSITIVITY,
        band_specificity: float = BAND_SPECIFICITY) -> Calibration:
    """Temperature, threshold and band from uncalibrated validation P(COVID)."""
    y = np.asarray(y_val).astype(int)
    t = fit_temperature(p_val, y)
    q = apply_temperature(p_val, t)
    thr = threshold_for_sensitivity(y, q, target_sensitivity)
    lo = min(threshold_for_sensitivity(y, q, band_sensitivity), thr)
    hi = max(threshold_for_specificity(y, q, band_specificity), thr)
    return Calibration(t, float(thr), (float(lo), float(hi)), int(len(y)), target_sensitivity, band_sensitivity,
                       band_specificity)


def softmax(z, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_softmax_temperature(logits, y) -> float:
    """The one temperature of ``softmax(logits / T)`` that minimises the validation log-loss (0.05-20)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y).astype(int)

    def nll(log_t: float) -> float:
        q = np.clip(softmax(z, math.exp(log_t))[np.arange(len(y)), y], EPS, 1.0)
        return float(-np.log(q).mean())

    from scipy.optimize import minimize_scalar  # fitting only: the app's start-up uses sigmoid/softmax alone

    res = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(res.x))


def pneumonia_share(probs) -> np.ndarray:
    """P(Pneumonia) / (P(Pneumonia) + P(Normal)) for (N, 3) probabilities [Normal, COVID, Pneumonia]."""
    p = np.asarray(probs, dtype=np.float64)
    return p[:, 2] / np.maximum(p[:, 2] + p[:, 0], 1e-12)


def fit_pneumonia_threshold(probs, y) -> float:
    """The pneumonia-vs-Normal cut on :func:`pneumonia_share` with the highest balanced accuracy
    (Youden's J) among the validation films that are Normal or pneumonia."""
    y = np.asarray(y).astype(int)
    keep = y != 1
    r, t = pneumonia_share(np.asarray(probs)[keep]), (y[keep] == 2)
    if t.all() or not t.any():
        return 0.5
    best, best_j = 0.5, -1.0
    for c in np.unique(np.clip(r, EPS, 1 - EPS)):
        j = float((r[t] >= c).mean() + (r[~t] < c).mean())
        if j > best_j:
            best, best_j = float(c), j
    return float(min(max(best, EPS), 1 - EPS))


@dataclass
class ClassCalibration(Calibration):
    """Calibration of a three-class model: temperature on the softmax; the
    threshold and band on P(COVID) (COVID against the rest); the
    pneumonia-vs-Normal cut for films below the COVID threshold."""

    pneumonia_threshold: float = 0.5

    def to_metadata(self) -> dict[str, Any]:
        d = super().to_metadata()
        d.update({"method": "temperature (softmax)", "classes": 3,
                  "threshold_rule": d["threshold_rule"] + " (COVID against Normal and pneumonia)",
                  "pneumonia_rule": "P(Pneumonia) / (P(Pneumonia) + P(Normal)) at or above the cut with the "
                                    "highest balanced accuracy on validation Normal and pneumonia films"})
        return d


def fit_classes(logits, y, classes: int = 3) -> "Calibration":
    """Calibration from validation logits: binary (``(N,)`` logits) or three classes (``(N, 3)``)."""
    y = np.asarray(y).astype(int)
    if classes <= 2:
        return fit(sigmoid(logits), y)
    t = fit_softmax_temperature(logits, y)
    probs = softmax(logits, t)
    q = probs[:, 1]
    pos = (y == 1).astype(int)
    thr = threshold_for_sensitivity(pos, q, TARGET_SENSITIVITY)
    lo = min(threshold_for_sensitivity(pos, q, BAND_SENSITIVITY), thr)
    hi = max(threshold_for_specificity(pos, q, BAND_SPECIFICITY), thr)
    return ClassCalibration(t, float(thr), (float(lo), float(hi)), int(len(y)),
                            pneumonia_threshold=fit_pneumonia_threshold(probs, y))


def in_band(p, band) -> np.ndarray:
    """True where calibrated P lies in the borderline band (no band: all False)."""
    p = np.asarray(p, dtype=np.float64)
    if not band:
        return np.zeros(p.shape, dtype=bool)
    lo, hi = band
    return (p >= lo) & (p <= hi)


__all__ = ["Calibration", "ClassCalibration", "fit", "fit_classes", "softmax", "pneumonia_share", "fit_temperature", "apply_temperature", "threshold_for_specificity", "in_band",
           "logit", "sigmoid"]
