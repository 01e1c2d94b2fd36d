"""The chest-radiograph gate: is this a frontal chest X-ray the model may judge?

Runs on every decoded image (PNG, JPEG, BMP, TIFF, DICOM; app, batch and
``xray-classify``) after loading and before classification, and answers:

* ``suitable``;
* ``warning``: suitable, but unusual for this model ("unusual image for this
  model: <reason>");
* ``refused``: "This does not look like a frontal chest radiograph: <reason>".

It also checks **polarity**: an image whose lungs are brighter than the
mediastinum between them is inverted (MONOCHROME1 handled wrongly, a window
that inverts, a film saved inverted); it is inverted back for display and
classification and the result says so.

Signals (all measured from the lung segmenter, :mod:`training.gate.segmenter`):

* colour content of the file (a radiograph has none);
* the lung mask: area, two lungs side by side (two large components, one on
  each side of the midline, of similar size and height), position, extent,
  how sure the segmenter is at the lung borders;
* three novelty distances from the chest films the models were trained on
  (Mahalanobis, mean and shrunk covariance fitted on training images): of the
  outline features above taken together, of the segmenter's bottleneck
  activations (its own feature space), and of the picture's coarse appearance
  (16 x 16, standardised).  Each is scaled by its 99th percentile on
  validation chest X-rays; the largest is the novelty score.

Thresholds are *not* hand-set: :func:`calibrate` derives each accepted range
and the novelty limits from quantiles of real chest X-rays of the validation
data (one-class: no non-chest image is used to fit anything) (see
``bench/calibrate_gate.py`` and docs/GATE.md) and stores them in the
segmenter's model file (``SegmenterInfo.gate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from training.common.formatting import sentence_join
from training.gate.notes import (
    ATTENTION_OUTSIDE_NOTE,
    ATTENTION_OUTSIDE_THRESHOLD,
    INVERTED_NOTE,
    MIRRORED_NOTE,
    REFUSAL_PREFIX,
    REFUSED,
    SUITABLE,
    WARNING,
    WARNING_PREFIX,
    heatmap_in_lungs,
    rotated_note,
)
from training.gate.segmenter import LungSegmenter, Segmentation

if TYPE_CHECKING:  # pragma: no cover
    from training.gate.orientation import OrientationDetector

GATE_VERSION = 1

# hard accepted ranges (validation quantiles); (plain-language reason when too low, too high)
FEATURE_REASONS: dict[str, tuple[str, str]] = {
    "lung_area": ("too little lung was found", "the lung area is implausibly large"),
    "lr_ratio": ("two lungs side by side were not found", "two lungs side by side were not found"),
    "lung_top": ("the lungs are not where a frontal chest film has them",
                 "the lungs are not where a frontal chest film has them"),
    "lung_bottom": ("the lungs are not where a frontal chest film has them",
                    "the lungs are not where a frontal chest film has them"),
    "centre_x": ("the lungs are off to one side", "the lungs are off to one side"),
    "midline_gap": ("no mediastinum was found between the lungs", "the lungs are too far apart"),
    "height_ratio": ("the two lungs differ too much in height", "the two lungs differ too much in height"),
    "extent": ("the lung outline has an implausible shape", "the lung outline has an implausible shape"),
    "uncertain": ("the lung outline is unclear", "the lung outline is unclear"),
    "colour": ("", "it is a colour picture"),
}
RANGE_FEATURES = tuple(FEATURE_REASONS)
SHAPE_FEATURES = tuple(k for k in RANGE_FEATURES if k != "colour")
# the joint novelty checks: a Mahalanobis distance each, fitted on training chest X-rays
NOVELTY_REASONS = {
    "outline": "the lung outline is unlike that of a frontal chest film",
    "features": "the image is unlike the chest X-rays the models were trained on",
    "appearance": "the picture does not look like a chest radiograph",
    "grey_levels": "its grey levels and edges are unlike those of a radiograph",
}
APPEARANCE_SIZE = 16


@dataclass
class GateResult:
    decision: str
    reasons: list[str] = field(default_factory=list)  # why refused (plain language)
    warnings: list[str] = field(default_factory=list)  # why unusual
    inverted: bool = False
    scores: dict[str, float] = field(default_factory=dict)
    segmentation: Segmentation | None = None
    rotation: int = 0  # counter-clockwise quarter turns that made the film upright (it was stored rotated)
    mirrored: bool = False  # the film looks mirrored left-right: flagged, never flipped

    @property
    def refused(self) -> bool:
        return self.decision == REFUSED

    def refusal_text(self) -> str:
        """One line: the prefix and the first two reasons (all are in ``reasons``)."""
        return f"{REFUSAL_PREFIX}: {sentence_join(self.reasons[:2])}" if self.reasons else ""

    def warning_texts(self) -> list[str]:
        out = [rotated_note(self.rotation)] if self.rotation % 4 else []
        out += [INVERTED_NOTE] if self.inverted else []
        if self.mirrored and not self.refused:
            out.append(MIRRORED_NOTE)
        if self.decision == WARNING:
            out.append(f"{WARNING_PREFIX}: {sentence_join(self.warnings)}")
        return out


# --------------------------------------------------------------------------- measurements


def _components(mask: np.ndarray) -> list[dict[str, float]]:
    from training.imaging.components import parts

    s = mask.shape[0]
    out = [{"area": p.pixels / mask.size, "cx": p.cx / s, "cy": p.cy / s, "top": p.top / s, "bottom": p.bottom / s,
            "left": p.left / s, "right": p.right / s} for p in parts(mask)]
    return sorted(out, key=lambda c: -c["area"])


def polarity_score(seg: Segmentation) -> float:
    """Mean grey of the mediastinum strip between the lungs minus mean grey of
    the lungs (segmenter input, [0, 1]).  Positive on a correctly displayed
    radiograph (bright mediastinum, dark lungs); negative when inverted."""
    m, img = seg.mask, seg.image
    if m.sum() < 0.01 * m.size:
        return 0.0
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    r0, r1 = rows[0], rows[-1] + 1
    mid = (cols[0] + cols[-1]) / 2.0
    half = max(2, int(0.06 * m.shape[1]))
    c0, c1 = int(mid) - half, int(mid) + half
    strip = img[r0:r1, c0:c1][~m[r0:r1, c0:c1]]
    if strip.size < 20:
        return 0.0
    return float(strip.mean() - img[m].mean())


def measure(seg: Segmentation, colour: float = 0.0) -> dict[str, float]:
    """The gate's features for one segmentation (see the module docstring)."""
    p, m = seg.prob, seg.mask
    comps = [c for c in _components(m) if c["area"] >= 0.005]
    area = float(m.mean())
    f: dict[str, float] = {"colour": float(colour), "lung_area": area}
    if len(comps) >= 2:
        a, b = comps[0], comps[1]
        left, right = (a, b) if a["cx"] < b["cx"] else (b, a)
        side = left["cx"] < 0.5 < right["cx"]
        f["lr_ratio"] = (min(a["area"], b["area"]) / max(a["area"], b["area"])) if side else 0.0
        f["midline_gap"] = right["left"] - left["right"]
        ha, hb = a["bottom"] - a["top"], b["bottom"] - b["top"]
        f["height_ratio"] = min(ha, hb) / max(ha, hb, 1e-6)
    else:
        f["lr_ratio"] = 0.0
        f["midline_gap"] = -1.0
        f["height_ratio"] = 0.0
    if comps:
        f["lung_top"] = min(c["top"] for c in comps[:2])
        f["lung_bottom"] = max(c["bottom"] for c in comps[:2])
        f["centre_x"] = float(np.mean([c["cx"] for c in comps[:2]]))
        box = sum((c["bottom"] - c["top"]) * (c["right"] - c["left"]) for c in comps[:2])
        f["extent"] = sum(c["area"] for c in comps[:2]) / max(box, 1e-6)
    else:
        f.update(lung_top=-1.0, lung_bottom=-1.0, centre_x=-1.0, extent=0.0)
    f["uncertain"] = float(((p > 0.1) & (p < 0.9)).sum() / max(int(m.sum()), 1))
    f["polarity"] = polarity_score(seg)
    return f


def appearance(seg: Segmentation) -> np.ndarray:
    """The segmenter's input shrunk to 16 x 16 (area mean) and standardised per
    image: the coarse look of the whole picture (lungs dark, mediastinum bright,
    shoulders, diaphragm...)."""
    n = APPEARANCE_SIZE
    img = np.asarray(seg.image, dtype=np.float64)
    s = img.shape[0] // n
    t = img[:n * s, :n * s].reshape(n, s, n, s).mean(axis=(1, 3)).ravel()
    return (t - t.mean()) / (t.std() + 1e-6)


def grey_levels(seg: Segmentation) -> np.ndarray:
    """Histogram of grey levels (16 bins) and of edge strength (8 bins, log
    scale) of the segmenter's input after a 1-99 % percentile stretch (so
    window and exposure do not matter): flat areas, text, photos and
    cross-sections differ from a radiograph here."""
    img = np.asarray(seg.image, dtype=np.float64)
    lo, hi = np.percentile(img, [1.0, 99.0])
    img = np.clip((img - lo) / max(hi - lo, 1e-3), 0.0, 1.0)  # contrast-stretched: a washed-out film is still a film
    h = np.histogram(img, bins=16, range=(0.0, 1.0))[0] / img.size
    gy, gx = np.gradient(img)
    mag = np.log10(np.hypot(gx, gy) + 1e-4)
    e = np.histogram(mag, bins=8, range=(-4.0, 0.0))[0] / img.size
    return np.sqrt(np.concatenate([h, e]))  # square root: rare bins count


def novelty_vectors(seg: Segmentation, f: dict[str, float]) -> dict[str, np.ndarray]:
    return {"outline": np.array([f[k] for k in SHAPE_FEATURES], dtype=np.float64),
            "features": np.asarray(seg.features, dtype=np.float64),
            "appearance": appearance(seg),
            "grey_levels": grey_levels(seg)}


def mahalanobis(x: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> float:
    d = np.asarray(x, dtype=np.float64) - mean
    return float(np.sqrt(max(d @ precision @ d, 0.0)))


# --------------------------------------------------------------------------- calibration


def fit_gaussian(x: np.ndarray, shrinkage: float) -> dict[str, Any]:
    """Mean and shrunk inverse covariance (for a Mahalanobis distance)."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    cov = np.cov(x, rowvar=False)
    d = cov.shape[0]
    cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / d * np.eye(d)
    return {"mean": mean.tolist(), "precision": np.linalg.inv(cov).tolist(), "shrinkage": shrinkage}


SHRINKAGE = {"outline": 0.1, "features": 0.1, "appearance": 0.5, "grey_levels": 0.1}


def calibrate(fit_vectors: dict[str, np.ndarray], val_measures: Sequence[dict[str, float]],
              val_vectors: dict[str, np.ndarray], *, range_q: float = 0.002, margin: float = 0.25,
              novelty_scale_q: float = 0.99, refuse_q: float = 0.995, warn_q: float = 0.985,
              source: str = "", more_sources: Sequence[tuple[str, dict, dict]] = ()) -> dict[str, Any]:
    """Thresholds from data (see docs/GATE.md):

    * ``fit_vectors`` (training chest X-rays): mean + shrunk covariance of
      each novelty vector (outline features, segmenter features, appearance,
      grey levels);
    * ``val_measures`` / ``val_vectors`` (validation chest X-rays): each
      distance is divided by its ``novelty_scale_q`` quantile; the novelty
      score (the largest of the four) is refused above its ``refuse_q``
      quantile and warned above its ``warn_q`` quantile; each outline feature
      has a hard accepted range: the ``[range_q, 1 - range_q]`` quantile
      interval widened by ``margin`` times its width.
    * ``more_sources``: ``(name, fit vectors, validation vectors)`` of other
      sources of chest films (processed differently, e.g. another hospital
      group's contrast curve): each adds its own Gaussian per novelty vector,
      scaled on its own validation films; a film's distance is the smallest
      over the sources (a film need only look like one source), and its
      validation films join the novelty quantiles.  The outline ranges stay
      those of ``val_measures`` (lung shapes do not depend on the source's
      processing)."""
    sources = [(source or "main", fit_vectors, val_vectors), *more_sources]
    novelty: dict[str, Any] = {}
    scaled = []
    for name in NOVELTY_REASONS:
        comps = [{**fit_gaussian(fit[name], SHRINKAGE[name]), "fit_images": int(len(fit[name])), "source": label}
                 for label, fit, _ in sources]
        arrays = [(np.asarray(g["mean"]), np.asarray(g["precision"])) for g in comps]
        # dist[s][c]: source s's validation films against component c, each distance computed once
        dist = [[np.array([mahalanobis(v, mean, prec) for v in val[name]]) for mean, prec in arrays]
                for _, _, val in sources]
        for c, g in enumerate(comps):  # each component is scaled on its own source's validation films
            g["scale"] = float(np.quantile(dist[c][c], novelty_scale_q))
        scaled.append(np.concatenate([np.min([d / g["scale"] for d, g in zip(row, comps)], axis=0) for row in dist]))
        novelty[name] = {**comps[0], "components": comps[1:]} if len(comps) > 1 else comps[0]
    score = np.max(np.stack(scaled), axis=0)
    ranges: dict[str, list[float]] = {}
    for name in SHAPE_FEATURES:
        v = np.array([m[name] for m in val_measures], dtype=np.float64)
        lo, hi = np.quantile(v, [range_q, 1 - range_q])
        ranges[name] = [float(lo - margin * (hi - lo)), float(hi + margin * (hi - lo))]
    return {"version": GATE_VERSION, "ranges": ranges, "novelty": novelty,
            "novelty_refuse": float(np.quantile(score, refuse_q)), "novelty_warn": float(np.quantile(score, warn_q)),
            "polarity_margin": 0.0,
            "quantiles": {"range": range_q, "margin": margin, "scale": novelty_scale_q, "refuse": refuse_q,
                          "warn": warn_q},
            "calibration": source, "validation_images": len(score)}


# --------------------------------------------------------------------------- the gate


def _novelty(res: GateResult) -> float:
    """How unlike the training chest films a gate result is (its novelty score; outline only if none)."""
    return float(res.scores.get("novelty", len(res.reasons)))


def _finite(x: float) -> float:
    return float(x) if np.isfinite(x) else (1e30 if x > 0 else -1e30)


class ChestGate:
    """Applies calibrated thresholds (``SegmenterInfo.gate``) to images."""

    def __init__(self, segmenter: LungSegmenter, thresholds: dict[str, Any] | None = None,
                 orientation: "OrientationDetector | None" = None):
        self.segmenter = segmenter
        self.orientation = orientation  # None: no orientation check (films are taken as stored)
        self.t = thresholds if thresholds is not None else dict(segmenter.info.gate or {})
        # per novelty vector, one Gaussian per source of training films (``components``: the other sources)
        self._novelty = {name: [(np.asarray(c["mean"]), np.asarray(c["precision"]), float(c["scale"]))
                                for c in (g, *g.get("components", ()))]
                         for name, g in (self.t.get("novelty") or {}).items()}

    @classmethod
    def from_file(cls, path, device="cpu", orientation: "str | None" = "default") -> "ChestGate":
        """The gate of the segmenter file ``path``; ``orientation``: ``'default'`` (the shipped
        orientation model, when installed), a model file, or None (no orientation check)."""
        from training.gate.orientation import load_detector

        return cls(LungSegmenter.from_file(path, device), orientation=load_detector(orientation))

    @property
    def calibrated(self) -> bool:
        return bool(self.t.get("ranges"))

    def measure(self, seg: Segmentation, colour: float = 0.0) -> dict[str, float]:
        """Outline features plus each novelty distance (scaled: 1.0 = the 99th
        percentile of validation chest X-rays; with several sources, the
        smallest over them) and their maximum, ``novelty``."""
        f = measure(seg, colour)
        if self._novelty:
            vec = novelty_vectors(seg, f)
            for name, comps in self._novelty.items():  # the nearest source counts
                f[f"novelty_{name}"] = min(mahalanobis(vec[name], mean, prec) / scale for mean, prec, scale in comps)
            f["novelty"] = max(f[f"novelty_{n}"] for n in self._novelty)
        return f

    def decide(self, f: dict[str, float]) -> tuple[str, list[str], list[str]]:
        reasons: list[str] = []
        warns: list[str] = []
        colour_limits = self.t.get("colour", {})
        if f.get("colour", 0.0) >= float(colour_limits.get("refuse", 1e30)):
            reasons.append(FEATURE_REASONS["colour"][1])
        elif f.get("colour", 0.0) >= float(colour_limits.get("warn", 1e30)):
            warns.append("it has some colour")
        for name, (lo, hi) in self.t.get("ranges", {}).items():
            v = f.get(name)
            if v is None or lo <= v <= hi:
                continue
            why = FEATURE_REASONS[name][0 if v < lo else 1]
            if why not in reasons:
                reasons.append(why)
        if "novelty" in f:
            worst = max(NOVELTY_REASONS, key=lambda n: f.get(f"novelty_{n}", 0.0))
            if f["novelty"] > float(self.t["novelty_refuse"]):
                if NOVELTY_REASONS[worst] not in reasons:
                    reasons.append(NOVELTY_REASONS[worst])
            elif f["novelty"] > float(self.t["novelty_warn"]):
                warns.append(NOVELTY_REASONS[worst])
        decision = REFUSED if reasons else (WARNING if warns else SUITABLE)
        return decision, reasons, warns

    def check_batch(self, images: Sequence[np.ndarray], colours: Sequence[float] | None = None, *,
                    orient: bool = True) -> list[tuple[GateResult, np.ndarray]]:
        """Gate several images; returns ``(result, pixels)`` per image, where ``pixels`` are
        turned upright when the orientation check found the film stored rotated (``orient``
        and an orientation model), and inverted back when the image was found inverted.

        An inversion is kept only when the inverted film passes the gate.  A turn is kept when
        the turned film passes, or when it is refused either way but looks more like a chest
        film turned (a lower novelty score: e.g. a film cut off to one side, refused upright
        as "off to one side"); otherwise the image is judged as stored, with no turn claimed."""
        colours = list(colours) if colours is not None else [0.0] * len(images)
        found = (self.orientation.detect_batch(list(images)) if orient and self.orientation is not None
                 else [None] * len(images))
        turns = [int(o.rotation_deg // 90) % 4 if o is not None else 0 for o in found]
        first = [np.ascontiguousarray(np.rot90(im, k)) if k else im for im, k in zip(images, turns)]
        segs = self.segmenter.segment_batch(first)
        out = []
        for im, px, seg, col, k, o in zip(images, first, segs, colours, turns, found):
            res, judged = self._polarity_checked(px, seg, col)
            if k and res.refused:  # refused turned: judge it as stored too, and keep the more chest-like one
                stored, stored_px = self._polarity_checked(im, self.segmenter.segment(im), col)
                if not stored.refused or _novelty(stored) <= _novelty(res):
                    res, judged, k = stored, stored_px, 0
            res.rotation = k
            res.mirrored = bool(o is not None and o.mirrored)
            if o is not None:
                res.scores.update({"p_upright": float(o.p_rotation[0]), "p_mirrored": float(o.p_mirrored)})
            out.append((res, judged))
        return out

    def _polarity_checked(self, im: np.ndarray, seg: Segmentation, col: float) -> tuple[GateResult, np.ndarray]:
        """The gate's result for ``im`` (segmented as ``seg``) and the pixels it judged: inverted
        back when found inverted and the inverted film passes."""
        pol = polarity_score(seg)
        margin = float(self.t.get("polarity_margin", 0.0))
        if pol < -margin and seg.mask.mean() >= 0.01:
            fixed = np.float32(1.0) - np.asarray(im, dtype=np.float32)
            res = self._result(self.segmenter.segment(fixed), col, pol, inverted=True)
            if not res.refused:
                return res, fixed
        return self._result(seg, col, pol, inverted=False), im

    def _result(self, seg: Segmentation, colour: float, polarity_before: float, inverted: bool) -> GateResult:
        f = self.measure(seg, colour)
        f["polarity_before"] = polarity_before
        decision, reasons, warns = self.decide(f)
        return GateResult(decision, reasons, warns, inverted, f, seg)

    def check(self, pixels: np.ndarray, colour: float = 0.0, *, orient: bool = True) -> tuple[GateResult, np.ndarray]:
        return self.check_batch([pixels], [colour], orient=orient)[0]




__all__ = ["ChestGate", "GateResult", "SUITABLE", "WARNING", "REFUSED", "measure", "polarity_score", "calibrate",
           "fit_gaussian", "novelty_vectors", "heatmap_in_lungs", "ATTENTION_OUTSIDE_THRESHOLD", "ATTENTION_OUTSIDE_NOTE",
           "INVERTED_NOTE"]
