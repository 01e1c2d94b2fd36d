"""The result of classifying one input, without torch: the GUI thread, the CSV
and PDF writers, the DICOM SR and the node read it without loading a model.

:class:`Prediction` (status, label, calibrated P per class, the gate's
decision and lung mask, the lesion map, warnings), the verdict wording, the
result categories written into exports, and the CSV columns.  The classifier
(:mod:`training.inference.classifier`) fills it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.common.errors import XrayError
from training.common.formatting import clause, sentence_join
from training.gate.notes import ATTENTION_OUTSIDE_NOTE, ATTENTION_OUTSIDE_THRESHOLD

if TYPE_CHECKING:  # pragma: no cover
    from training.imaging.loading import ImageMeta
    from training.model.lung_input import Box


STATUSES = ("ok", "refused", "error")
CSV_COLUMNS = ("path", "result", "label", "p_covid", "p_normal", "p_pneumonia", "threshold", "status", "reason",
               "warnings", "suitability", "heatmap_in_lungs", "lung_involvement")
INDETERMINATE = "Indeterminate \u2014 review"  # calibrated P inside the model's borderline band
PNEUMONIA = "Pneumonia"  # the third class of model v2 (non-COVID pneumonia)
OTHER_PNEUMONIA = "Other pneumonia (not a COVID-19 pattern)"  # what the app shows for it
LESION_LEVEL = 0.5  # a lesion-map cell at or above this probability counts as lesion (contours, involvement)
GATE_CODE = "not_chest_xray"  # ImageRefused-like code of a gate refusal
FORCED_NOTE = ("Classified anyway although the image does not look like a frontal chest radiograph: "
               "this result is not valid.")
HEADER_FORCED_NOTE = ("Classified anyway although the DICOM header says this is not a frontal chest radiograph: "
                      "this result is not valid.")


@dataclass
class Prediction:
    """The result for one input.

    ``status`` is ``'ok'`` (``label``/``p_covid`` set), ``'refused'`` (the image
    must not or cannot be classified; ``reason`` says why, ``code`` is the
    ``ImageRefused.code``) or ``'error'`` (an unexpected failure; ``reason`` is
    one line).  ``warnings`` are the loader's plain-language flags."""

    path: Path | None
    status: str
    label: str | None = None
    p_covid: float | None = None
    threshold: float | None = None
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    meta: "ImageMeta | None" = None
    code: str = ""
    preview: np.ndarray | None = None  # small float32 copy of the pixels (classify_paths(preview=N))
    suitability: str = ""  # the gate's decision: suitable | warning | refused ('' = no gate ran)
    valid: bool = True  # False when a gate-refused image was classified anyway: no verdict to show
    inverted: bool = False  # the gate found the image inverted and classified it inverted back
    # quarter turns (numpy ``rot90``, counter-clockwise) that turned the file's image upright: the film was
    # stored rotated ``90 * rotation`` degrees clockwise (the orientation check or a user rotation)
    rotation: int = 0
    mirrored: bool = False  # the orientation check found the film mirrored left-right (flagged, never flipped)
    heat_in_lungs: float | None = None  # share of the Grad-CAM heatmap inside the lung mask
    # the gate's lung mask, bit-packed (8 KB, not 64 KB: a batch keeps one per row); read it as ``lung_mask``
    _lung_bits: "tuple[np.ndarray, tuple[int, int]] | None" = field(default=None, repr=False, compare=False)
    gate_scores: dict = field(default_factory=dict)
    band: tuple[float, float] | None = None  # the model's borderline band of calibrated P (None: no band)
    input_box: Box | None = None  # the region the model saw (fractions of the image)
    model_version: str = ""  # "<name> v<version>" of the model that computed this result
    probs: dict = field(default_factory=dict)  # calibrated P per class name (three-class models: all three)
    # the lesion probability map on the model's view (uint8, 0-255 = P 0-1, the decoder's resolution); read it
    # placed on the image with ``lesion_map(shape)``
    lesion_u8: np.ndarray | None = field(default=None, repr=False, compare=False)
    lung_involvement: float | None = None  # lesion area inside the lungs / lung area (lesion-map models)
    # Grad-CAM of the classification pass at the model's input size, on ``input_box`` (kept only when asked:
    # ``classify_paths(keep_heatmaps=True)``); ``training.inference.explain.heatmap_of`` places it on the image
    heat_input: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def lung_mask(self) -> np.ndarray | None:
        """The gate's lung mask: bool (256, 256), the image stretched to a square (None: no gate ran)."""
        if self._lung_bits is None:
            return None
        bits, shape = self._lung_bits
        return np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(bool)

    @lung_mask.setter
    def lung_mask(self, mask: np.ndarray | None) -> None:
        if mask is None:
            self._lung_bits = None
        else:
            m = np.asarray(mask, dtype=bool)
            self._lung_bits = (np.packbits(m, axis=None), (int(m.shape[0]), int(m.shape[1])))

    def model_frame(self, pixels: np.ndarray) -> np.ndarray:
        """The image as loaded from the file, put the way the gate and the model saw it: turned
        upright (``rotation``) and inverted back (``inverted``).  Heatmaps, lung masks and lesion
        maps of this result are in this frame."""
        out = np.rot90(pixels, self.rotation % 4) if self.rotation % 4 else pixels
        return (np.float32(1.0) - out).astype(np.float32, copy=False) if self.inverted else out

    def lung_mask_as_loaded(self, shape: tuple[int, int]) -> np.ndarray | None:
        """The gate's lung mask (bool) on the file's own frame: turned back by ``rotation`` and
        resized to ``shape``, the image's size as loaded (None when no gate ran)."""
        mask = self.lung_mask
        if mask is None:
            return None
        k = self.rotation % 4
        upright = (int(shape[1]), int(shape[0])) if k % 2 else (int(shape[0]), int(shape[1]))
        from PIL import Image

        img = Image.fromarray(mask.astype(np.uint8) * 255).resize((upright[1], upright[0]), Image.BILINEAR)
        out = np.asarray(img) >= 128
        return np.rot90(out, -k) if k else out

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def has_lesion_map(self) -> bool:
        return self.lesion_u8 is not None

    def lesion_map(self, shape: tuple[int, int]) -> np.ndarray | None:
        """The lesion probability map placed on an image of ``shape`` (float32 in [0, 1],
        zero outside the region the model saw), or None for a model without one."""
        if self.lesion_u8 is None:
            return None
        from training.model.lung_input import Box, place_heatmap

        prob = self.lesion_u8.astype(np.float32) / np.float32(255.0)
        return np.clip(place_heatmap(prob, self.input_box or Box(), shape), 0.0, 1.0)

    @property
    def indeterminate(self) -> bool:
        """A valid result whose P(COVID) lies in the model's borderline band."""
        return (self.verdict and self.band is not None and self.p_covid is not None
                and self.band[0] <= self.p_covid <= self.band[1])

    @property
    def result(self) -> str:
        """What the app shows: COVID / Normal, ``INDETERMINATE``, ``not valid (...)`` or '' (no result)."""
        if not self.ok or self.label is None:
            return ""
        if not self.valid:
            return f"not valid ({self.label})"
        if self.indeterminate:
            return INDETERMINATE
        return OTHER_PNEUMONIA if self.label == PNEUMONIA else self.label

    @property
    def verdict(self) -> bool:
        """True when the result may be shown as a COVID / Normal verdict."""
        return self.ok and self.valid

    def forced_reason(self) -> str:
        """Why a result classified anyway is not valid (the note with the gate's reason)."""
        heads = (clause(FORCED_NOTE), clause(HEADER_FORCED_NOTE))
        return next((w for w in self.warnings if w.startswith(heads)), FORCED_NOTE)

    def set_heat_share(self, share: float | None) -> None:
        """Record the heatmap's share inside the lungs, with the caution note when low."""
        self.heat_in_lungs = share
        if share is not None and share < ATTENTION_OUTSIDE_THRESHOLD and ATTENTION_OUTSIDE_NOTE not in self.warnings:
            self.warnings.append(ATTENTION_OUTSIDE_NOTE)

    def as_row(self) -> dict[str, str]:
        """The CSV row (``CSV_COLUMNS``) for this prediction."""
        from training.common.csv_out import csv_cell

        def prob(name: str) -> str:
            v = self.probs.get(name)
            return "" if v is None else f"{v:.6f}"

        return {
            "path": "" if self.path is None else csv_cell(self.path),
            "result": self.result,
            "label": (self.label or "") if self.valid else f"not valid ({self.label})",
            "p_covid": "" if self.p_covid is None else f"{self.p_covid:.6f}",
            "p_normal": prob("Normal"),
            "p_pneumonia": prob(PNEUMONIA),
            "threshold": "" if self.threshold is None else f"{self.threshold:.6g}",
            "status": self.status,
            "reason": csv_cell(self.reason or (self.forced_reason() if self.ok and not self.valid else "")),
            "warnings": csv_cell(sentence_join(self.warnings)),
            "suitability": self.suitability + (" (classified anyway: not valid)" if self.ok and not self.valid else ""),
            "heatmap_in_lungs": "" if self.heat_in_lungs is None else f"{self.heat_in_lungs:.3f}",
            "lung_involvement": "" if self.lung_involvement is None else f"{self.lung_involvement:.3f}",
        }


def validate_threshold(value: float) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise XrayError(f"The decision threshold must be a number, got {value!r}.", code="threshold") from None
    if not (0.0 < t < 1.0) or t != t:
        raise XrayError(f"The decision threshold must be between 0 and 1 (exclusive), got {value}.",
                        code="threshold")
    return t


def lung_involvement(pred: Prediction) -> float | None:
    """Lesion area inside the lungs / lung area (the lesion map at or above ``LESION_LEVEL``, on the gate's
    lung mask's frame); None without a lesion map, a lung mask or lungs."""
    mask = pred.lung_mask
    if mask is None or pred.lesion_u8 is None or not mask.any():
        return None
    lesion = pred.lesion_map(mask.shape)
    return float((lesion[mask] >= LESION_LEVEL).mean())


# ---------------------------------------------------------------- result category
# The one place that maps a Prediction to the category written into DICOM SR
# (training.dicom_out.sr) and shown in exports.  A borderline band ("Indeterminate -
# review") only needs to be recognised here.
CATEGORY_COVID = "COVID-19"
CATEGORY_NORMAL = "Normal"
CATEGORY_PNEUMONIA = "Other pneumonia"
CATEGORY_INDETERMINATE = "Indeterminate"
CATEGORY_REFUSED = "Refused"
CATEGORY_NOT_VALID = "Not valid"
CATEGORIES = (CATEGORY_COVID, CATEGORY_NORMAL, CATEGORY_PNEUMONIA, CATEGORY_INDETERMINATE, CATEGORY_REFUSED,
              CATEGORY_NOT_VALID)


def result_category(pred: Prediction, positive_class: str = "COVID") -> str:
    """COVID-19 / Normal / Indeterminate / Refused / Not valid for ``pred``.

    Refused covers every input without a score (refused or broken: ``reason``
    says why); Not valid a gate-refused image classified anyway; Indeterminate a
    result in the model's borderline band (``Prediction.indeterminate``)."""
    if not pred.ok:
        return CATEGORY_REFUSED
    if not pred.valid:
        return CATEGORY_NOT_VALID
    if pred.indeterminate:
        return CATEGORY_INDETERMINATE
    if pred.label == positive_class:
        return CATEGORY_COVID
    return CATEGORY_PNEUMONIA if pred.label == PNEUMONIA else CATEGORY_NORMAL


__all__ = ["Prediction", "CSV_COLUMNS", "STATUSES", "GATE_CODE", "INDETERMINATE", "validate_threshold",
           "lung_involvement", "result_category", "CATEGORIES", "PNEUMONIA", "OTHER_PNEUMONIA", "LESION_LEVEL",
           "FORCED_NOTE", "HEADER_FORCED_NOTE"]
