"""Window/level and invert of the current image, and the viewer's corner texts:
right drag (coalesced into one redraw per 15 ms), the W/L presets, the user's
invert and the gate's (an image found inverted is shown inverted back, as
classified).  The numbers are the core's (``display_state.DisplayState``).

Part of ``ImageController`` (``images.wl``), which owns the current image and
its ``display``; this part reads and sets them there."""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer

from .display_state import CUSTOM_PRESET, WINDOW_PRESETS, DisplayState
from .images import grey_to_qimage


class WindowLevel(QObject):
    def __init__(self, images):
        super().__init__(images)
        self.images = images  # the ImageController: image, display, viewer, meta_panel
        self.preset_name = WINDOW_PRESETS[0]  # what the W/L box and the overlay say
        self._timer = QTimer(self, singleShot=True, interval=15)
        self._timer.timeout.connect(self.redraw)
        images.viewer.windowDragged.connect(self.drag)
        meta_panel = images.meta_panel
        meta_panel.presetChosen.connect(self.preset)
        meta_panel.invertToggled.connect(self.set_invert)
        meta_panel.showPatientToggled.connect(lambda _on: self.update_overlay_text())

    def show_new(self, img, raw_range) -> None:
        """A newly decoded image on screen at its file's default window, not inverted."""
        images, meta_panel = self.images, self.images.meta_panel
        images.display = display = DisplayState(img, raw_range)
        meta_panel.set_meta(img.meta)
        meta_panel.set_dicom_controls(display.has_raw)
        meta_panel.preset.setCurrentIndex(0)  # a new image starts at its file default
        self.preset_name = WINDOW_PRESETS[0]
        meta_panel.set_window_text(display.center, display.width)
        if meta_panel.invert.isChecked():
            meta_panel.invert.setChecked(False)
        images.viewer.set_image(grey_to_qimage(display.pixels()))
        self.update_overlay_text()

    def drag(self, dx: float, dy: float) -> None:
        display = self.images.display
        if display is None or not display.has_raw:
            return
        display.drag(dx, dy)
        self.preset_name = CUSTOM_PRESET
        self.images.meta_panel.show_preset(CUSTOM_PRESET)  # no longer the preset the box named
        self._timer.start()  # coalesce mouse moves into one redraw

    def preset(self, name: str) -> None:
        display = self.images.display
        if display is not None and display.has_raw:
            display.preset(name)
            self.preset_name = name
            self.images.meta_panel.show_preset(name)
            self.redraw()

    def set_invert(self, on: bool) -> None:
        if self.images.display is not None:
            self.images.display.user_invert = on
            self.redraw()

    def set_gate_invert(self, on: bool) -> None:
        """The gate found the image inverted: show it inverted back, as classified."""
        display = self.images.display
        if display is not None and display.gate_invert != bool(on):
            display.gate_invert = bool(on)
            self.redraw()

    def redraw(self) -> None:
        display = self.images.display
        if display is None:
            return
        self.images.viewer.set_image(grey_to_qimage(display.pixels()), keep_view=True)
        self.images.meta_panel.set_window_text(display.center, display.width)
        self.update_overlay_text()

    def update_overlay_text(self) -> None:
        """The viewer's corner texts for the current image (overlay_text.py)."""
        from . import overlay_text as ot

        images = self.images
        if images.image is None:
            images.viewer.set_corner_text({}, {})
            return
        meta = images.image.meta
        ids = images.meta_panel.patient_items() if images.meta_panel.patient_visible() else None
        images.viewer.set_corner_text({"top_left": ot.top_left(meta, identifiers=ids), "top_right": ot.top_right(meta),
                                       "bottom_left": [ot.window_line(images.display, self.preset_name)]},
                                      ot.orientation_markers(meta, turn=meta.turn))
