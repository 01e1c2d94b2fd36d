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
