"""Turning the current image: the user's Viewer › Rotate / Flip (the image is
classified again as turned, and its notes, the CSV and the PDF say so), and
the gate's turn upright of a film stored rotated (shown turned as classified).
The turning itself is the core's (``training.imaging.turn``).

Part of ``ImageController`` (``images.turns``), which owns the current image,
its ``display`` and its result; this part replaces them there."""

from __future__ import annotations

from .images import grey_to_qimage


class ImageTurn:
    def __init__(self, images):
        self.images = images  # the ImageController
        self.user_turn: tuple[int, bool] = (0, False)  # the user's Rotate / Flip of the current image
        self.turned_for = None  # the result whose turn upright the current image shows

    def reset(self) -> None:
        """A new image (or none): not turned."""
        self.user_turn, self.turned_for = (0, False), None

    def turn(self, quarter_turns: int = 0, mirror: bool = False) -> None:
        """Viewer › Rotate / Flip: turn the shown image (counter-clockwise quarter turns, a
        left-right mirror) and classify it again as turned; the result's notes, the CSV and
        the PDF say so.  The automatic orientation check is off for an image the user turned."""
        images = self.images
        if images.image is None or (not quarter_turns % 4 and not mirror):
            return
        from training.imaging.turn import compose, turned, user_turn_note

        old_note = user_turn_note(*self.user_turn) if any(self.user_turn) else None
        self.user_turn = compose(self.user_turn, (quarter_turns, mirror))
        image = turned(images.image, quarter_turns, mirror, by_user=True)
        image.warnings = [w for w in image.warnings if w != old_note]
        if any(self.user_turn):
            image.warnings.append(user_turn_note(*self.user_turn))
        for job in ("predict", "heatmap", "lungs"):  # their late results belong to the image as it was
            images.jobs.cancel(job)
        images.pred = None
        self.turned_for = None
        images.viewer.set_overlay(None)
        images.viewer.set_outline(None)
        self.replace_image(image)
        images.layers.update_lesion()
        images.panel.show_warnings(list(image.warnings))
        overrides = images.overrides
        if overrides.gate_refused:  # turned, it may be a chest film after all: the gate judges it again
            overrides.refusal = None
            images.panel.show_refusal(None)
        if overrides.refusal is None:
            if images.classifier is not None:
                images.predict()
            else:
                images.panel.clear("No model loaded — open one (File → Open Model…) to classify this image.")

    def upright(self, pred) -> None:
        """The gate turned the film upright to classify it: show it turned as classified (once per
        result; the note stays with the image, so a later classification of it says it too)."""
        if not pred.rotation % 4 or self.images.image is None or self.turned_for is pred:
            return
        from training.gate.notes import rotated_note
        from training.imaging.turn import turned

        self.turned_for = pred
        self.replace_image(turned(self.images.image, pred.rotation, note=rotated_note(pred.rotation)))

    def replace_image(self, image) -> None:
        """Show ``image`` (the current one turned) in place of the current one, keeping the
        user's window/level and invert."""
        from .display_state import DisplayState
        from .tasks import _raw_range

        images = self.images
        old = images.display
        images.image = image
        images.display = display = DisplayState(image, _raw_range(image))
        if old is not None:
            display.user_invert, display.gate_invert = old.user_invert, old.gate_invert
            if old.windowed and old.has_raw:  # the user's window/level stays
                display.center, display.width = old.center, old.width
                display._dirty_window = True
        images.viewer.set_image(grey_to_qimage(display.pixels()))
        images.meta_panel.set_window_text(display.center, display.width)
        images.wl.update_overlay_text()
