"""What the viewer shows of the current image: window/level and invert.

The windowing itself is the core's ``training.imaging.loading.apply_window``; this
class only keeps the user's (center, width) and turns drags and presets into
new values.  The model never sees these settings (it classifies
``LoadedImage.pixels``, the file's default window).  ``gate_invert``: the
core's gate found the image inverted and classified it inverted back, so the
viewer shows it inverted back too (the user's Invert applies on top)."""

from __future__ import annotations

import numpy as np

from training.common.heat_style import HEAT_CMAP_DEFAULT, HEAT_FLOOR_DEFAULT

# Keyboard presets 1-4 (View > Window/Level), like Weasis / OHIF.  A radiograph's
# stored values are not Hounsfield units, so the anatomical presets are chosen
# from the image's own grey levels: a range of display-brightness percentiles
# (the lungs are the dark part of a chest film, the mediastinum the middle to
# bright part, bone the brightest part).
WINDOW_PRESETS = ("File default", "Lung", "Mediastinum", "Bone")
OTHER_PRESETS = ("Full range", "More contrast", "Less contrast")
# What the W/L box says once the window was set by a right-drag (not a preset).
CUSTOM_PRESET = "Custom"
# "More contrast" / "Less contrast" are fixed windows relative to the file
# default (same level, width x factor): choosing one twice gives the same
# window, it does not narrow / widen further each time.
CONTRAST_FACTORS = {"More contrast": 0.6, "Less contrast": 1.6}
PRESET_PERCENTILES = {"Lung": (1.0, 60.0), "Mediastinum": (30.0, 99.0), "Bone": (65.0, 99.9)}
PRESET_TIPS = {
    "File default": "the window stored in the file (what the model sees)",
    "Lung": "contrast spread over the darker grey levels of this image (lung fields)",
    "Mediastinum": "contrast spread over the middle to bright grey levels (heart, mediastinum, through the heart)",
    "Bone": "contrast spread over the brightest grey levels (ribs, spine, clavicles)",
    "More contrast": "the file's window at 0.6 x its width (fixed: choosing it again changes nothing)",
    "Less contrast": "the file's window at 1.6 x its width (fixed: choosing it again changes nothing)",
}


# Heatmap colour maps (View > Heatmap Colours): matplotlib name -> (menu text, colour of the strongest regions)
HEATMAP_COLOURS = {
    "jet": ("Jet (classic rainbow)", "Red"),
    "inferno": ("Inferno (colour-blind safe)", "Yellow-white"),
    "viridis": ("Viridis (colour-blind safe)", "Yellow"),
}
# The defaults (inferno; transparent below half of the map's maximum) and why
# live in the core, so the CLI's PNGs, the DICOM secondary capture and the PDF
# draw the heatmap as the screen does.
DEFAULT_HEATMAP_COLOURS = HEAT_CMAP_DEFAULT
HEATMAP_FLOOR = HEAT_FLOOR_DEFAULT
HEATMAP_FLOORS = (0.0, 0.3, 0.5, 0.7)  # the Settings dialog's choices (0 = the whole map)


class DisplayState:
    """``has_raw``: the image can be re-windowed.  DICOM images window their
    stored values (``LoadedImage.raw``); other images window their pixels
    (0..1, default window 0.5 / 1 = the picture as loaded)."""

    def __init__(self, image, raw_range: tuple[float, float] | None = None):
        self.image = image
        raw = getattr(image, "raw", None)
        self.is_dicom = raw is not None
        if raw is None:
            raw = getattr(image, "pixels", None)
            raw_range = (0.0, 1.0)
        self._source = raw
        self.has_raw = raw is not None
        if self.has_raw and raw_range is None:
            raw_range = (float(np.min(raw)), float(np.max(raw)))
        self.raw_range = raw_range
        self.user_invert = False
        self.gate_invert = False
        self.default_window = self._file_window()
        self.center, self.width = self.default_window if self.default_window else (None, None)
        self._dirty_window = False
        self._percentiles: np.ndarray | None = None

    def _file_window(self) -> tuple[float, float] | None:
        if not self.has_raw:
            return None
        if not self.is_dicom:
            return 0.5, 1.0
        w = getattr(self.image.meta, "window", None)
        if w and w[1] and w[1] > 0:
            return float(w[0]), float(w[1])
        lo, hi = self.raw_range
        return (lo + hi) / 2.0, max(hi - lo, 1e-6)

    @property
    def windowed(self) -> bool:
        """True when the user changed the window (the file default is used otherwise)."""
        return self._dirty_window

    def preset(self, name: str) -> None:
        if not self.has_raw:
            return
        c0, w0 = self.default_window
        lo, hi = self.raw_range
        if name == "File default":
            self.center, self.width = c0, w0
            self._dirty_window = False
            return
        if name == "Full range":
            self.center, self.width = (lo + hi) / 2.0, max(hi - lo, 1e-6)
        elif name in CONTRAST_FACTORS:  # relative to the file default, so it does not compound
            self.center, self.width = c0, max(w0 * CONTRAST_FACTORS[name], 1e-6)
        elif name in PRESET_PERCENTILES:
            self.center, self.width = self._percentile_window(*PRESET_PERCENTILES[name])
        else:
            return
        self._dirty_window = True

    def _percentile_window(self, lo_pct: float, hi_pct: float) -> tuple[float, float]:
        """The window spanning display-brightness percentiles ``lo_pct``..``hi_pct``."""
        if self._percentiles is None:
            src = np.asarray(self._source, dtype=np.float32)
            step = max(1, int(np.sqrt(src.size / (512 * 512))))
            sample = src[::step, ::step]
            sample = sample[np.isfinite(sample)]
            self._percentiles = np.percentile(sample, np.arange(0.0, 100.01, 0.1)) if sample.size else None
            if self._percentiles is None:
                return self.center, self.width
        # brightness grows with the stored value unless the file (MONOCHROME1) or the gate says otherwise
        brighter_up = bool(getattr(self.image, "invert", False) and self.is_dicom) == bool(self.gate_invert)
        if not brighter_up:
            lo_pct, hi_pct = 100.0 - hi_pct, 100.0 - lo_pct
        lo = float(self._percentiles[int(round(lo_pct * 10))])
        hi = float(self._percentiles[int(round(hi_pct * 10))])
        span = max(self.raw_range[1] - self.raw_range[0], 1e-6)
        width = max(hi - lo, span / 1000.0)
        return (lo + hi) / 2.0, width

    def drag(self, dx: float, dy: float) -> None:
        """Right-drag: right = wider window (less contrast), down = higher level."""
        if not self.has_raw:
            return
        lo, hi = self.raw_range
        span = max(hi - lo, 1e-6)
        step = span / 600.0
        self.width = float(np.clip(self.width + dx * step * 2.0, span / 1000.0, span * 4.0))
        self.center = float(np.clip(self.center + dy * step, lo - span, hi + span))
        self._dirty_window = True

    def pixels(self) -> np.ndarray:
        """The grey image to display, (H, W) float32 in [0, 1]."""
        flip = self.user_invert != self.gate_invert
        if self.has_raw and self._dirty_window:
            from training.imaging.loading import apply_window

            invert = (bool(self.image.invert) and self.is_dicom) != flip
            return apply_window(self._source, self.center, self.width, invert)
        px = self.image.pixels
        return (1.0 - px) if flip else px
