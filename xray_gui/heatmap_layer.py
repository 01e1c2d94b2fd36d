"""The Grad-CAM heatmap layer of the current image: computed in a worker
(``tasks.gradcam_task``), cached per image, model, override and turn, drawn in
the chosen colour map above the chosen lower level, at the chosen opacity;
hidden by default for a Normal result (Settings), shown or hidden with H; and
the heatmap's share inside the lungs that the result quotes.

Part of ``ImageController`` (``images.heat``), which owns the current image,
its result and the model; this part reads them from it."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from PySide6.QtCore import QObject, Signal

from .display_state import DEFAULT_HEATMAP_COLOURS, HEATMAP_COLOURS, HEATMAP_FLOOR
from .tasks import gradcam_task

HEAT_CACHE_SIZE = 8


class HeatmapLayer(QObject):
    shown = Signal(str)     # path: the heatmap is on screen
    ready = Signal(str)     # path: computed (shown or not)
    failed = Signal(str)
    withheld = Signal(str)  # path: a Normal result, its heatmap not shown by default (Settings)

    def __init__(self, images, settings=None):
        super().__init__(images)
        self.images = images  # the ImageController: path, image, pred, classifier, viewer, panel, jobs
        self.cache: OrderedDict = OrderedDict()  # result key -> (heatmap, colour QImage, share, style)
        self.colours = DEFAULT_HEATMAP_COLOURS  # matplotlib colour map of the heatmap layer
        self.floor = HEATMAP_FLOOR  # below this fraction of the map's maximum: transparent
        self.for_normal = False  # show the heatmap of Normal results by default
        if settings is not None:
            self.colours, self.floor, self.for_normal = (settings.heatmap_colours, settings.heatmap_floor,
                                                         settings.heatmap_for_normal)
        self._recoloured: OrderedDict = OrderedDict()  # (result key, (colour map, floor)) -> QImage
        self._scale_colours: dict = {}  # colour map -> colours of the viewer's scale bar
        self.show = True  # the user's choice (H), remembered
        # a Normal result while for_normal is off: its heatmap stays hidden until
        # H shows it, for this image only (the remembered choice is left alone)
        self.normal_hidden = False
        self.normal_visible = False
        self.opacity = 0.45

    # -- the cached heatmap ----------------------------------------------------------
    def heatmap(self):
        """(heatmap array, colour QImage in the chosen colour map) for the current image, or None."""
        key = self.images.result_key() if self.images.path is not None else None
        entry = self.cache.get(key) if key is not None else None
        if entry is None:
            return None
        style = self.style()
        if entry[3] == style:  # the worker drew this one
            return entry[:2]
        colour = self._recoloured.get((key, style))
        if colour is None:  # another colour map or level chosen since: drawn once, then cached
            from training.inference.explain import COLOUR_LAYER_MAX_SIDE, heat_rgba

            from .images import rgba_to_qimage

            colour = rgba_to_qimage(heat_rgba(entry[0], *style, COLOUR_LAYER_MAX_SIDE))
            self._recoloured[(key, style)] = colour
            while len(self._recoloured) > HEAT_CACHE_SIZE:
                self._recoloured.popitem(last=False)
        return entry[0], colour

    def forget(self) -> None:
        """A new model: the cached heatmaps belong to the old one."""
        self.cache.clear()
        self.images.viewer.set_overlay(None)

    # -- how it is drawn ----------------------------------------------------------------
    def style(self) -> tuple[str, float]:
        """(colour map, lower level) of the heatmap's colour layer."""
        return self.colours, float(self.floor)

    def set_floor(self, floor: float) -> None:
        """Values below ``floor`` x the map's maximum become transparent (0: the whole map)."""
        floor = float(floor)
        if floor != self.floor:
            self.floor = floor
            self.refresh()

    def set_colours(self, name: str) -> None:
        """Draw the heatmap with another colour map (display and PDF report only)."""
        if name in HEATMAP_COLOURS and name != self.colours:
            self.colours = name
            self.refresh()

    def set_opacity(self, percent: int) -> None:
        self.opacity = percent / 100.0
        self.images.viewer.set_overlay_opacity(self.opacity)

    def scale_colours(self) -> list:
        """The colour map as a few QColors (low -> high) for the viewer's scale bar."""
        colours = self._scale_colours.get(self.colours)
        if colours is None:
            from PySide6.QtGui import QColor

            from training.inference.explain import heat_rgba

            ramp = heat_rgba(np.linspace(0.0, 1.0, 32, dtype=np.float32)[None, :], self.colours, 0.0)[0]
            colours = [QColor(int(r), int(g), int(b)) for r, g, b, _ in ramp]
            self._scale_colours[self.colours] = colours
        return colours

    # -- shown or not (H; Normal results) -----------------------------------------------
    def set_for_normal(self, on: bool) -> None:
        """Show the heatmap of Normal results by default (applies from the next result on)."""
        self.for_normal = bool(on)

    def visible_wanted(self) -> bool:
        """Whether the heatmap of the current image is to be shown."""
        return self.normal_visible if self.normal_hidden else self.show

    def is_normal(self, pred) -> bool:
        from training.inference.result import CATEGORY_NORMAL, result_category

        classifier = self.images.classifier
        positive = classifier.positive_class if classifier is not None else "COVID"
        return pred is not None and result_category(pred, positive) == CATEGORY_NORMAL

    def start_result(self, pred) -> None:
        """A result shown: its heatmap starts hidden when it is Normal (unless Settings say otherwise)."""
        self.set_normal_hidden(self.is_normal(pred) and not self.for_normal)

    def relabelled(self, pred) -> None:
        """The threshold moved the verdict: hide or show the heatmap when it changed between Normal and the rest."""
        hidden = self.is_normal(pred) and not self.for_normal
        if hidden != self.normal_hidden:
            self.set_normal_hidden(hidden)
            self.refresh()

    def set_normal_hidden(self, on: bool) -> None:
        """Start a result's heatmap hidden (Normal) or as the user's H choice, and
        show that state on the panel's check box and the View menu."""
        self.normal_hidden = bool(on)
        self.normal_visible = False
        want = self.visible_wanted()
        box = self.images.panel.heatmap
        if box.isChecked() != want:
            box.blockSignals(True)  # not the user's choice: nothing to remember
            box.setChecked(want)
            box.blockSignals(False)
        act = (getattr(self.images.window, "actions_by_name", None) or {}).get("heatmap")
        if act is not None:
            act.setChecked(want)

    def set_visible(self, on: bool) -> None:
        """H / the panel's check box.  On a Normal result hidden by default it
        shows / hides this image's heatmap only (the remembered choice stays)."""
        if self.normal_hidden:
            self.normal_visible = bool(on)
            settings = getattr(self.images.window, "settings", None)
            if settings is not None:
                settings.show_heatmap = self.show  # the window stored this toggle: undo that
        else:
            self.show = on
        self.refresh()

    # -- on screen ----------------------------------------------------------------------
    def refresh(self) -> None:
        """Show the heatmap when wanted: from the cache, else compute it."""
        images = self.images
        viewer, state = images.viewer, images.panel.heat_state
        if not self.visible_wanted() or images.pred is None or images.image is None:
            viewer.set_overlay(None)
            viewer.set_colour_scale(None)
            if images.pred is None:
                state.setText("")
            elif self.normal_hidden:
                state.setText("Heatmap not shown for Normal results (H shows it; "
                              "Settings → Settings… changes the default).")
                self.withheld.emit(str(images.path))
            else:
                state.setText("Heatmap hidden (H shows it).")
            return
        cached = self.heatmap()
        if cached is None:
            self.compute()
            return
        key = images.result_key()
        self.cache.move_to_end(key)
        self.apply_share(self.cache[key][2])
        viewer.set_overlay(cached[1], self.opacity)
        viewer.set_colour_scale(self.scale_colours(), self.floor)
        hot = HEATMAP_COLOURS.get(self.colours, HEATMAP_COLOURS[DEFAULT_HEATMAP_COLOURS])[1]
        below = (f" Below {self.floor:.0%} of its maximum: not coloured." if self.floor > 0 else "")
        state.setText(f"{hot} = regions that raised P(COVID) most (Grad-CAM).{below}")
        self.shown.emit(str(images.path))

    def compute(self) -> bool:
        """Start the Grad-CAM worker for the current image (False: nothing to do)."""
        images = self.images
        if images.classifier is None or images.image is None or images.pred is None:
            return False
        key = images.result_key()
        w = images.jobs.worker("heatmap")
        if w is not None and getattr(w, "heat_key", None) == key:
            return True  # already on its way
        images.panel.heat_state.setText("Computing heatmap…")
        w = images.jobs.start("heatmap", gradcam_task, key, images.classifier, images.image.pixels, images.pred,
                              self.style(), on_yield=self._on_heatmap, on_error=self._on_error, context="Heatmap")
        if w is not None:
            w.heat_key = key
        return True

    def _on_heatmap(self, item) -> None:
        _, key, heat, colour, share, style = item
        self.cache[key] = (heat, colour, share, style)
        while len(self.cache) > HEAT_CACHE_SIZE:
            self.cache.popitem(last=False)
        if key == self.images.result_key():
            self.apply_share(share)
            self.ready.emit(str(self.images.path))
            if self.visible_wanted() or self.normal_hidden:
                self.refresh()  # shows it, or says why a Normal result's is not shown
            else:
                self.images.panel.heat_state.setText("Heatmap ready (H shows it).")

    def _on_error(self, exc) -> bool:
        self.images.panel.heat_state.setText("The heatmap could not be computed.")
        self.failed.emit(str(exc))
        return False

    # -- its share inside the lungs -------------------------------------------------------
    def show_share(self) -> None:
        """The heatmap's share inside the lungs, when known."""
        pred = self.images.pred
        share = pred.heat_in_lungs if pred is not None else None
        low = False
        if share is not None:
            from training.gate.notes import ATTENTION_OUTSIDE_THRESHOLD  # torch is loaded once a model is

            low = share < ATTENTION_OUTSIDE_THRESHOLD
        self.images.panel.show_lung_share(share, low=low)

    def apply_share(self, share) -> None:
        """Record the share computed with the heatmap (a batch result already has one)."""
        p = self.images.pred
        if p is None or share is None or p.heat_in_lungs is not None:
            return
        p.set_heat_share(share)  # adds the core's caution note when low
        self.images.panel.show_warnings(list(p.warnings))
        self.show_share()
