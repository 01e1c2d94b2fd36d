"""What the gate says, without torch: its decisions, the wording of its refusals
and warnings, and the heatmap-in-the-lungs share that results quote.  The GUI
thread and the result module read these without loading the segmenter."""

from __future__ import annotations

import numpy as np

SUITABLE, WARNING, REFUSED = "suitable", "warning", "refused"
REFUSAL_PREFIX = "This does not look like a frontal chest radiograph"
WARNING_PREFIX = "Unusual image for this model"
INVERTED_NOTE = ("The image looked inverted (lungs brighter than the mediastinum); it was inverted back "
                 "for display and classification.")
ROTATED_NOTE = "The film was stored rotated {deg}\u00b0; it was turned upright for display and classification."
MIRRORED_NOTE = ("The film looks mirrored left-right (the heart on the patient's right): check the side marker. "
                 "It was not flipped (situs inversus exists).")
ATTENTION_OUTSIDE_THRESHOLD = 0.5
ATTENTION_OUTSIDE_NOTE = ("The model's attention was mostly outside the lungs; treat this result with caution.")


def heatmap_in_lungs(heat: np.ndarray, lung_mask: np.ndarray) -> float | None:
    """Share of the heatmap's mass inside the lungs (both arrays the same
    shape); None when the heatmap is empty."""
    h = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float64)), 0, None)
    total = h.sum()
    if total <= 0:
        return None
    return float(h[np.asarray(lung_mask, dtype=bool)].sum() / total)


def rotated_note(quarter_turns: int) -> str:
    """The note for a film turned upright by ``quarter_turns`` counter-clockwise quarter turns
    (it was stored rotated ``90 * quarter_turns`` degrees clockwise)."""
    return ROTATED_NOTE.format(deg=90 * (int(quarter_turns) % 4))
