"""What the viewer shows of the current image: window/level and invert.

The windowing itself is the core's ``training.loading.apply_window``; this
class only keeps the user's (center, width) and turns drags and presets into
new values.  The model never sees these settings (it classifies
``LoadedImage.pixels``, the file's default window).  ``gate_invert``: the
core's gate found the image inverted and classified it inverted back, so the
viewer shows it inverted back too (the user's Invert applies on top)."""

from __future__ import annotations

import numpy as np


class DisplayState:
    def __init__(self, image, raw_range: tuple[float, float] | None = None):
        self.image = image
        raw = getattr(image, "raw", None)
        self.has_raw = raw is not None
        if self.has_raw and raw_range is None:
            raw_range = (float(np.min(raw)), float(np.max(raw)))
        self.raw_range = raw_range
        self.user_invert = False
        self.gate_invert = False
        self.default_window = self._file_window()
        self.center, self.width = self.default_window if self.default_window else (None, None)
        self._dirty_window = False

    def _file_window(self) -> tuple[float, float] | None:
        if not self.has_raw:
            return None
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
        elif name == "More contrast":
            self.width = max(self.width * 0.6, 1e-6)
        elif name == "Less contrast":
            self.width = self.width * 1.6
        self._dirty_window = True

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
            from training.loading import apply_window

            invert = bool(self.image.invert) != flip
            return apply_window(self.image.raw, self.center, self.width, invert)
        px = self.image.pixels
        return (1.0 - px) if flip else px
