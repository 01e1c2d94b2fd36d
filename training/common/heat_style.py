"""How a Grad-CAM heatmap is drawn by default, everywhere it is drawn (the
viewer, the PDF, ``xray-classify --heatmaps`` PNGs, the DICOM secondary
capture).  Torch-free: the GUI imports it before a model is loaded.

* Colour map **inferno**: its brightness rises steadily with the value, so a
  reader tells "more" from "less" without a legend, also in grey print and with
  a colour-vision deficiency; jet's rainbow has false edges (yellow/cyan bands)
  and its "hot" red is darker than its middle.  Jet and viridis stay on offer
  in the app (View > Heatmap Colours, Settings).
* Lower level **0.5**: values below this fraction of the map's maximum are fully
  transparent, and the opacity rises from 0 at the level to full halfway to the
  maximum (``training.inference.explain.heat_weight``).  Grad-CAM is min-max scaled per
  image, so its low part is no evidence of anything - it is whatever the least
  relevant region happened to be - and a wash over the whole film hides the
  image the reader has to look at.  0.5 keeps the regions with at least half of
  the strongest evidence, the usual way Grad-CAM figures are read.
"""

from __future__ import annotations

HEAT_CMAP_DEFAULT = "inferno"
HEAT_FLOOR_DEFAULT = 0.5

__all__ = ["HEAT_CMAP_DEFAULT", "HEAT_FLOOR_DEFAULT"]
