"""The gate's policy, in one place: what the chest-radiograph gate's verdict
(:class:`training.gate.gate.GateResult`) does to a classification.

* :func:`screen`: the one call of the gate for a loaded image (its colour, and
  no automatic orientation check when the user turned the film);
* :func:`stops`: a refusal stops classification unless the user chose
  "Classify anyway" (``enforce=False``);
* :func:`refused_prediction`: the ``'refused'`` result of a stopped image
  (code ``GATE_CODE``, the gate's reason and notes);
* :func:`apply_gate`: a classified image carries the gate's decision, scores,
  lung mask, orientation and notes; a refusal that was overridden makes the
  result not valid, with the FORCED note first.

The single-image path (``Classifier.predict_image``) and the batch pipeline
(``training.inference.batch``) both go through these four functions.  The
gate's measurements and wording stay in ``training.gate``; the result type in
``training.inference.result``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.common.formatting import clause
from training.inference.result import FORCED_NOTE, GATE_CODE, Prediction


def mask_of(gres) -> np.ndarray | None:
    """The gate's lung mask (bool, ``SEG_SIZE`` square), or None."""
    return gres.segmentation.mask if gres is not None and gres.segmentation is not None else None


def screen(gate, pixels: np.ndarray, meta: Any) -> tuple[Any, np.ndarray]:
    """The gate's verdict on loaded ``pixels`` and the pixels to classify (turned
    upright, grey levels inverted back where the gate found that).  A film the
    user turned is not turned again (``meta.user_turned``)."""
    colour = float(getattr(meta, "colour", 0.0) or 0.0)
    return gate.check(pixels, colour, orient=not getattr(meta, "user_turned", False))


def stops(gres, enforce: bool) -> bool:
    """The gate refused and the refusal stands (no "Classify anyway")."""
    return gres is not None and gres.refused and enforce


def refused_prediction(path, gres, meta: Any, warnings: list[str], threshold: float) -> Prediction:
    """The result of an image the gate refused."""
    pred = Prediction(path=None if path is None else Path(path), status="refused", threshold=threshold,
                      reason=gres.refusal_text(), warnings=list(warnings) + gres.warning_texts(), meta=meta,
                      code=GATE_CODE, suitability=gres.decision, inverted=gres.inverted,
                      gate_scores=dict(gres.scores), rotation=gres.rotation, mirrored=gres.mirrored)
    pred.lung_mask = mask_of(gres)
    return pred


def apply_gate(pred: Prediction, gres) -> None:
    """A classified image's result takes the gate's decision, scores, mask, orientation and notes."""
    pred.suitability = gres.decision
    pred.inverted = gres.inverted
    pred.rotation, pred.mirrored = gres.rotation, gres.mirrored
    pred.gate_scores = dict(gres.scores)
    pred.lung_mask = mask_of(gres)  # kept: Grad-CAM, the lung outline and DICOM export need not segment again
    pred.warnings.extend(gres.warning_texts())
    if gres.refused:
        pred.valid = False
        pred.warnings.insert(0, f"{clause(FORCED_NOTE)} ({clause(gres.refusal_text())}).")


__all__ = ["mask_of", "screen", "stops", "refused_prediction", "apply_gate"]
