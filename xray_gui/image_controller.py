"""The current image: open it (worker), show it, classify it through the
core's chest-radiograph gate, its heatmap and the heatmap's share inside the
lungs (worker, cached per image and model), the lesion map of a model-v2
result (drawn from the prediction's stored map: numpy on the GUI thread, no
model run), the lung outline, window/level and invert.

Two refusals can be overridden with "Classify anyway", one at a time: a DICOM
header refusal (the gate still applies afterwards) and a gate refusal (the
result is then shown as not valid: no verdict, here or in the PDF report).

Drives the viewer, the prediction panel and the metadata panel; all image and
model work is the core's, run through ``Jobs``."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal

from training.inference.result import GATE_CODE

from .display_state import (
    CUSTOM_PRESET,
    DEFAULT_HEATMAP_COLOURS,
    HEATMAP_COLOURS,
    HEATMAP_FLOOR,
    WINDOW_PRESETS,
    DisplayState,
)
from .images import grey_to_qimage, lesion_layer
from .tasks import HEADER_CODES, gradcam_task, lung_mask_task, open_image_task, predict_task

HEAT_CACHE_SIZE = 8


class ImageController(QObject):
    imageShown = Signal(str)        # path
    predictionShown = Signal(object)  # Prediction
    heatmapShown = Signal(str)      # path: the heatmap is on screen
    heatmapReady = Signal(str)      # path: computed (shown or not)
    refusalShown = Signal(str)      # reason
    heatmapFailed = Signal(str)
    heatmapWithheld = Signal(str)   # path: a Normal result, its heatmap not shown by default (Settings)

    def __init__(self, window, viewer, pred_panel, meta_panel, jobs, notifier):
        super().__init__(window)
        self.window = window
        self.viewer, self.panel, self.meta_panel = viewer, pred_panel, meta_panel
        self.jobs, self.notifier = jobs, notifier
        self.classifier = None
        self.model_pending = False  # a model is being loaded (set by the window)
        self.path: Path | None = None
        self.image = None
        self.display: DisplayState | None = None
        self.pred = None
        self.user_turn: tuple[int, bool] = (0, False)  # the user's Rotate / Flip of the current image
        self._turned_for = None  # the result whose turn upright the current image shows
        self.refusal = None  # ImageRefused (or _Reason) shown for the current path
        self.overridden = False  # the header refusal was overridden
        self.gate_overridden = False  # the gate refusal was overridden: results are not valid
        self.heat_cache: OrderedDict = OrderedDict()
        self.heat_colours = DEFAULT_HEATMAP_COLOURS  # matplotlib colour map of the heatmap layer
        self.heat_floor = HEATMAP_FLOOR  # below this fraction of the map's maximum: transparent
        self.heat_for_normal = False  # show the heatmap of Normal results by default
        settings = getattr(window, "settings", None)
        if settings is not None:
            self.heat_colours = settings.heatmap_colours
            self.heat_floor = settings.heatmap_floor
            self.heat_for_normal = settings.heatmap_for_normal
        self._recoloured: OrderedDict = OrderedDict()  # (heat key, (colour map, floor)) -> QImage
        self._scale_colours: dict = {}  # colour map -> colours of the viewer's scale bar
        self.show_heatmap = True  # the user's choice (H), remembered
        self.show_lesion = True  # the user's choice (M), remembered: the lesion map of a model-v2 result
        self._lesion: tuple | None = None  # (prediction, image shape, LesionLayer | None): the last one drawn
        # a Normal result while heat_for_normal is off: its heatmap stays hidden until
        # H shows it, for this image only (the remembered choice is left alone)
        self._normal_hidden = False
        self._normal_visible = False
        self.opacity = 0.45
        self.preset_name = WINDOW_PRESETS[0]  # what the W/L box and the overlay say
        self._wl_timer = QTimer(self, singleShot=True, interval=15)
        self._wl_timer.timeout.connect(self._redraw)
        viewer.windowDragged.connect(self.window_drag)
        meta_panel.presetChosen.connect(self.window_preset)
        meta_panel.invertToggled.connect(self.set_invert)
        meta_panel.showPatientToggled.connect(lambda _on: self._update_overlay_text())

    # -- model -----------------------------------------------------------------
    def set_classifier(self, classifier) -> None:
        """A new model: drop cached heatmaps and classify the current image again."""
        self.classifier = classifier
        self.heat_cache.clear()
        self.viewer.set_overlay(None)
        if self.image is not None and (self.refusal is None or self.overridden
                                       or getattr(self.refusal, "code", "") == GATE_CODE):
            self._predict()

    # -- opening -----------------------------------------------------------------
    def open(self, path, *, check_header: bool = True, pred=None) -> None:
        """Show ``path``; classify it unless ``pred`` (a batch result) is given."""
        self.path = Path(path)
        self.image = self.display = self.pred = self.refusal = None
        self.user_turn, self._turned_for = (0, False), None
        self.overridden = not check_header
        self.gate_overridden = False
        self._set_normal_hidden(False)
        self.viewer.set_image(None)
        self._update_lesion()
        self._update_overlay_text()
        self.viewer.set_placeholder(f"Opening {self.path.name}…")
        self.meta_panel.set_meta(None)
        self.panel.clear("Opening the image…")
        for job in ("predict", "heatmap", "lungs"):  # their late results belong to the previous image
            self.jobs.cancel(job)
        classify = self.classifier if pred is None else None
        self.jobs.start("image", open_image_task, str(self.path), check_header, classify,
                        on_yield=lambda item, b=pred: self._on_image_item(item, b),
                        on_error=self._on_open_error, context=f"Opening {self.path.name}")

    def clear(self, placeholder: str, state: str = "") -> None:
        """Nothing on screen (``placeholder`` in the viewer, ``state`` in the
        side panel): e.g. a new batch before a row is selected.  The jobs of
        the previous image are dropped."""
        for job in ("image", "predict", "heatmap", "lungs"):
            self.jobs.cancel(job)
        self.path = self.image = self.display = self.pred = self.refusal = None
        self.user_turn, self._turned_for = (0, False), None
        self.overridden = self.gate_overridden = False
        self.viewer.set_image(None)
        self._update_lesion()
        self.viewer.set_placeholder(placeholder)
        self.meta_panel.set_meta(None)
        self.panel.clear(state or placeholder)
        self.window.setWindowTitle(self.window.base_title)

    def classify_anyway(self) -> None:
        """The shown refusal overridden: classify the already decoded image.
        After a header refusal the gate still applies (it may refuse in its
        turn); after a gate refusal the result is marked not valid."""
        if self.path is None:
            return
        gate = getattr(self.refusal, "code", "") == GATE_CODE
        if gate:
            self.gate_overridden = True
        else:
            self.overridden = True
        self.refusal = None
        self.panel.show_refusal(None)
        if self.image is None:
            self.open(self.path, check_header=False)
        else:
            if not gate:
                self.panel.show_warnings(list(self.image.warnings))
            self._predict()

    def _on_image_item(self, item, batch_pred) -> None:
        kind = item[0]
        if kind in ("image", "refused"):
            if kind == "refused":
                _, exc, img, raw_range = item
            else:
                _, img, raw_range = item
            self.image = img
            self.display = DisplayState(img, raw_range)
            self.meta_panel.set_meta(img.meta)
            self.meta_panel.set_dicom_controls(self.display.has_raw)
            self.meta_panel.preset.setCurrentIndex(0)  # a new image starts at its file default
            self.preset_name = WINDOW_PRESETS[0]
            self.meta_panel.set_window_text(self.display.center, self.display.width)
            if self.meta_panel.invert.isChecked():
                self.meta_panel.invert.setChecked(False)
            self.viewer.set_image(grey_to_qimage(self.display.pixels()))
            self._update_overlay_text()
            # a header-refused image was decoded with the gates as warnings: those
            # repeat the refusal, so they are shown only once the user overrides it
            self.panel.show_warnings([] if kind == "refused" else list(img.warnings))
            self.window.setWindowTitle(f"{self.path.name} — {self.window.base_title}")
            self.imageShown.emit(str(self.path))
            if kind == "refused":
                self.notifier.warning(f"{self.path.name} was not classified: {exc.reason}")
                self._show_refusal(exc)
            elif batch_pred is not None:
                self._show_prediction(batch_pred)
            elif self.classifier is None:
                self.panel.clear("Waiting for the model to load…" if self.model_pending else
                                 "No model loaded — open one (File → Open Model…) to classify this image.")
                self.panel.show_warnings(list(img.warnings))
            else:
                self.panel.set_busy("Classifying…")
        elif kind == "prediction":
            self._show_prediction(item[1], item[2])

    def _on_open_error(self, exc) -> bool:
        from training.common.errors import ImageRefused

        self.viewer.set_placeholder("")
        if isinstance(exc, ImageRefused):
            self._show_refusal(exc)
            self.notifier.warning(f"{self.path.name} was not classified: {exc.reason}")
            return True
        self.panel.clear("")
        from training.common.formatting import exception_text

        self.panel.show_refusal(f"the file could not be opened ({exception_text(exc)})")
        return False  # unexpected: the notifier shows it as an error too

    def _show_refusal(self, exc) -> None:
        self.refusal = exc
        code = getattr(exc, "code", "")
        if code == GATE_CODE:
            tip = ("Classify this image all the same. The result is marked “not valid” and shows no "
                   "COVID / Normal verdict.")
        else:
            tip = "Ignore the header check (modality / body part / view) and classify this image."
        if self.image is None:
            self.panel.clear("")
        else:
            self.panel.set_busy("")
        self.panel.show_refusal(exc.reason, can_override=code in HEADER_CODES or code == GATE_CODE,
                                override_tip=tip)
        self.refusalShown.emit(exc.reason)

    # -- prediction ----------------------------------------------------------------
    def _predict(self) -> None:
        if self.classifier is None or self.image is None:
            return
        self.panel.set_busy("Classifying…")
        self.jobs.start("predict", predict_task, self.classifier, self.image, not self.gate_overridden,
                        on_yield=lambda item: self._show_prediction(item[1], item[2]), context="Classification")

    def _show_prediction(self, pred, outline=None) -> None:
        """Show a prediction (``outline``: its lung outline, a QPainterPath)."""
        if pred.status != "ok":  # the gate refused, or a batch row that was refused or failed
            self.pred = None
            self.viewer.set_overlay(None)
            self._update_lesion()
            if pred.code == GATE_CODE:
                from training.gate.notes import INVERTED_NOTE  # torch is loaded once a model is

                self.panel.clear("")  # no earlier verdict may stay next to the refusal
                # a refused image is shown as the file has it (its "inversion" may mean
                # nothing: a photo has no lungs), so the note on inverting it back is left out
                self._set_gate_invert(False)
                self.viewer.set_outline(outline)
                self.panel.show_warnings([w for w in pred.warnings if w != INVERTED_NOTE])
                self.notifier.warning(f"{self.path.name} was not classified: {pred.reason}")
            self._show_refusal(_Reason(pred.reason, pred.code))
            return
        self.pred = pred
        self._turn_upright(pred)
        self._set_gate_invert(pred.inverted)
        self.viewer.set_outline(outline)
        self._update_lesion()
        mask = pred.lung_mask
        if outline is None and pred.suitability and (mask is None or mask.any()):
            self._find_lungs()  # a batch result: its outline is drawn from the gate's mask in a worker
        self.panel.show_warnings(list(pred.warnings))
        self._label_prediction()
        self._show_share()
        self._set_normal_hidden(self._is_normal(pred) and not self.heat_for_normal)
        self.predictionShown.emit(pred)
        self.refresh_heatmap()

    def _label_prediction(self) -> None:
        p = self.pred
        positive = self.classifier.positive_class if self.classifier is not None else "COVID"
        header = "; ".join(getattr(p.meta, "header_overridden", ()) or ())
        self.panel.show_prediction(p.label, p.p_covid, p.threshold, positive, valid=p.valid, band=p.band,
                                   model=p.model_version, header_forced=header, probs=p.probs,
                                   involvement=p.lung_involvement)

    def _turn_upright(self, pred) -> None:
        """The gate turned the film upright to classify it: show it turned as classified (once per
        result; the note stays with the image, so a later classification of it says it too)."""
        if not pred.rotation % 4 or self.image is None or self._turned_for is pred:
            return
        from training.gate.notes import rotated_note
        from training.imaging.turn import turned

        self._turned_for = pred
        self._replace_image(turned(self.image, pred.rotation, note=rotated_note(pred.rotation)))

    def _replace_image(self, image) -> None:
        """Show ``image`` (the current one turned) in place of the current one, keeping the
        user's window/level and invert."""
        from .display_state import DisplayState
        from .tasks import _raw_range

        old = self.display
        self.image = image
        self.display = DisplayState(image, _raw_range(image))
        if old is not None:
            self.display.user_invert, self.display.gate_invert = old.user_invert, old.gate_invert
            if old.windowed and old.has_raw:  # the user's window/level stays
                self.display.center, self.display.width = old.center, old.width
                self.display._dirty_window = True
        self.viewer.set_image(grey_to_qimage(self.display.pixels()))
        self.meta_panel.set_window_text(self.display.center, self.display.width)
        self._update_overlay_text()

    def turn(self, quarter_turns: int = 0, mirror: bool = False) -> None:
        """Viewer › Rotate / Flip: turn the shown image (counter-clockwise quarter turns, a
        left-right mirror) and classify it again as turned; the result's notes, the CSV and
        the PDF say so.  The automatic orientation check is off for an image the user turned."""
        if self.image is None or (not quarter_turns % 4 and not mirror):
            return
        from training.imaging.turn import compose, turned, user_turn_note

        old_note = user_turn_note(*self.user_turn) if any(self.user_turn) else None
        self.user_turn = compose(self.user_turn, (quarter_turns, mirror))
        image = turned(self.image, quarter_turns, mirror, by_user=True)
        image.warnings = [w for w in image.warnings if w != old_note]
        if any(self.user_turn):
            image.warnings.append(user_turn_note(*self.user_turn))
        for job in ("predict", "heatmap", "lungs"):  # their late results belong to the image as it was
            self.jobs.cancel(job)
        self.pred = None
        self._turned_for = None
        self.viewer.set_overlay(None)
        self.viewer.set_outline(None)
        self._replace_image(image)
        self._update_lesion()
        self.panel.show_warnings(list(image.warnings))
        gate_refused = getattr(self.refusal, "code", "") == GATE_CODE
        if gate_refused:  # turned, it may be a chest film after all: the gate judges it again
            self.refusal = None
            self.panel.show_refusal(None)
        if self.refusal is None:
            if self.classifier is not None:
                self._predict()
            else:
                self.panel.clear("No model loaded — open one (File → Open Model…) to classify this image.")

    def _set_gate_invert(self, on: bool) -> None:
        """The gate found the image inverted: show it inverted back, as classified."""
        if self.display is not None and self.display.gate_invert != bool(on):
            self.display.gate_invert = bool(on)
            self._redraw()

    # -- lesion map (model v2) --------------------------------------------------------
    def lesion(self):
        """The current result's ``images.LesionLayer`` (None: no result, a result
        without a lesion map, or one that is not valid)."""
        p = self.pred
        if p is None or self.image is None or not (p.ok and p.valid and p.has_lesion_map):
            return None
        shape = tuple(self.image.pixels.shape[:2])
        if self._lesion is None or self._lesion[0] is not p or self._lesion[1] != shape:
            self._lesion = (p, shape, lesion_layer(p, shape))  # numpy from the stored map: a few ms, no model run
        return self._lesion[2]

    def _update_lesion(self) -> None:
        """Put the current result's lesion layer on the viewer (or none), and
        enable the View menu's Lesion Map and the panel's box only when there is one."""
        layer = self.lesion()
        if layer is None:
            self._lesion = None
        self.viewer.set_lesion(layer)
        self.viewer.set_lesion_visible(self.show_lesion)
        self.panel.show_lesion_controls(layer is not None)
        act = (getattr(self.window, "actions_by_name", None) or {}).get("lesion_map")
        if act is not None:
            act.setEnabled(layer is not None)

    def set_lesion_visible(self, on: bool) -> None:
        """M / the panel's check box: show or hide the lesion layer (drawn from the stored map)."""
        self.show_lesion = bool(on)
        self.viewer.set_lesion_visible(self.show_lesion)

    # -- lungs ---------------------------------------------------------------------
    def _find_lungs(self) -> None:
        """The lung mask and outline of a batch result, in a worker."""
        if self.classifier is None or getattr(self.classifier, "gate", None) is None or self.image is None:
            return
        self.jobs.start("lungs", lung_mask_task, self._heat_key(), self.classifier, self.image, self.pred.lung_mask,
                        on_yield=self._on_lungs, on_error=self._on_lungs_error, context="Lung outline")

    def _on_lungs(self, item) -> None:
        _, key, mask, outline = item
        if key != self._heat_key() or self.pred is None:
            return
        if self.pred.lung_mask is None:
            self.pred.lung_mask = mask
        self.viewer.set_outline(outline)

    def _on_lungs_error(self, exc) -> bool:
        self.notifier.warning(f"The lung outline could not be computed: {exc}")
        return True

    def _show_share(self) -> None:
        """The heatmap's share inside the lungs, when known."""
        share = self.pred.heat_in_lungs if self.pred is not None else None
        low = False
        if share is not None:
            from training.gate.notes import ATTENTION_OUTSIDE_THRESHOLD  # torch is loaded once a model is

            low = share < ATTENTION_OUTSIDE_THRESHOLD
        self.panel.show_lung_share(share, low=low)

    def _apply_share(self, share) -> None:
        """Record the share computed with the heatmap (a batch result already has one)."""
        p = self.pred
        if p is None or share is None or p.heat_in_lungs is not None:
            return
        p.set_heat_share(share)  # adds the core's caution note when low
        self.panel.show_warnings(list(p.warnings))
        self._show_share()

    def relabel(self) -> None:
        """The threshold changed: relabel with the core's rule; no model run."""
        if self.classifier is not None and self.classifier.relabel(self.pred):
            self._label_prediction()
            hidden = self._is_normal(self.pred) and not self.heat_for_normal
            if hidden != self._normal_hidden:  # the verdict changed between Normal and the rest
                self._set_normal_hidden(hidden)
                self.refresh_heatmap()

    # -- heatmap -------------------------------------------------------------------
    def _heat_key(self):
        turn = self.image.meta.turn if self.image is not None else (0, False)
        return (str(self.path), self.overridden, self.gate_overridden, id(self.classifier), turn)

    def heatmap(self):
        """(heatmap array, colour QImage in the chosen colour map) for the current image, or None."""
        key = self._heat_key() if self.path is not None else None
        entry = self.heat_cache.get(key) if key is not None else None
        if entry is None:
            return None
        style = self.heat_style()
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

    def heat_style(self) -> tuple[str, float]:
        """(colour map, lower level) of the heatmap's colour layer."""
        return self.heat_colours, float(self.heat_floor)

    def set_heat_floor(self, floor: float) -> None:
        """Values below ``floor`` x the map's maximum become transparent (0: the whole map)."""
        floor = float(floor)
        if floor != self.heat_floor:
            self.heat_floor = floor
            self.refresh_heatmap()

    def set_heat_for_normal(self, on: bool) -> None:
        """Show the heatmap of Normal results by default (applies from the next result on)."""
        self.heat_for_normal = bool(on)

    def heatmap_visible_wanted(self) -> bool:
        """Whether the heatmap of the current image is to be shown."""
        return self._normal_visible if self._normal_hidden else self.show_heatmap

    def _is_normal(self, pred) -> bool:
        from training.inference.result import CATEGORY_NORMAL, result_category

        positive = self.classifier.positive_class if self.classifier is not None else "COVID"
        return pred is not None and result_category(pred, positive) == CATEGORY_NORMAL

    def _set_normal_hidden(self, on: bool) -> None:
        """Start a result's heatmap hidden (Normal) or as the user's H choice, and
        show that state on the panel's check box and the View menu."""
        self._normal_hidden = bool(on)
        self._normal_visible = False
        want = self.heatmap_visible_wanted()
        box = self.panel.heatmap
        if box.isChecked() != want:
            box.blockSignals(True)  # not the user's choice: nothing to remember
            box.setChecked(want)
            box.blockSignals(False)
        act = (getattr(self.window, "actions_by_name", None) or {}).get("heatmap")
        if act is not None:
            act.setChecked(want)

    def _scale(self) -> list:
        """The colour map as a few QColors (low -> high) for the viewer's scale bar."""
        colours = self._scale_colours.get(self.heat_colours)
        if colours is None:
            from PySide6.QtGui import QColor

            from training.inference.explain import heat_rgba

            ramp = heat_rgba(np.linspace(0.0, 1.0, 32, dtype=np.float32)[None, :], self.heat_colours, 0.0)[0]
            colours = [QColor(int(r), int(g), int(b)) for r, g, b, _ in ramp]
            self._scale_colours[self.heat_colours] = colours
        return colours

    def set_heat_colours(self, name: str) -> None:
        """Draw the heatmap with another colour map (display and PDF report only)."""
        if name in HEATMAP_COLOURS and name != self.heat_colours:
            self.heat_colours = name
            self.refresh_heatmap()

    def set_heatmap_visible(self, on: bool) -> None:
        """H / the panel's check box.  On a Normal result hidden by default it
        shows / hides this image's heatmap only (the remembered choice stays)."""
        if self._normal_hidden:
            self._normal_visible = bool(on)
            settings = getattr(self.window, "settings", None)
            if settings is not None:
                settings.show_heatmap = self.show_heatmap  # the window stored this toggle: undo that
        else:
            self.show_heatmap = on
        self.refresh_heatmap()

    def set_opacity(self, percent: int) -> None:
        self.opacity = percent / 100.0
        self.viewer.set_overlay_opacity(self.opacity)

    def refresh_heatmap(self) -> None:
        """Show the heatmap when wanted: from the cache, else compute it."""
        wanted = self.heatmap_visible_wanted()
        if not wanted or self.pred is None or self.image is None:
            self.viewer.set_overlay(None)
            self.viewer.set_colour_scale(None)
            if self.pred is None:
                self.panel.heat_state.setText("")
            elif self._normal_hidden:
                self.panel.heat_state.setText("Heatmap not shown for Normal results (H shows it; "
                                              "Settings → Settings… changes the default).")
                self.heatmapWithheld.emit(str(self.path))
            else:
                self.panel.heat_state.setText("Heatmap hidden (H shows it).")
            return
        cached = self.heatmap()
        if cached is not None:
            self.heat_cache.move_to_end(self._heat_key())
            self._apply_share(self.heat_cache[self._heat_key()][2])
            self.viewer.set_overlay(cached[1], self.opacity)
            self.viewer.set_colour_scale(self._scale(), self.heat_floor)
            hot = HEATMAP_COLOURS.get(self.heat_colours, HEATMAP_COLOURS[DEFAULT_HEATMAP_COLOURS])[1]
            below = (f" Below {self.heat_floor:.0%} of its maximum: not coloured." if self.heat_floor > 0 else "")
            self.panel.heat_state.setText(f"{hot} = regions that raised P(COVID) most (Grad-CAM).{below}")
            self.heatmapShown.emit(str(self.path))
            return
        self.compute_heatmap()

    def compute_heatmap(self) -> bool:
        """Start the Grad-CAM worker for the current image (False: nothing to do)."""
        if self.classifier is None or self.image is None or self.pred is None:
            return False
        key = self._heat_key()
        w = self.jobs.worker("heatmap")
        if w is not None and getattr(w, "heat_key", None) == key:
            return True  # already on its way
        self.panel.heat_state.setText("Computing heatmap…")
        w = self.jobs.start("heatmap", gradcam_task, key, self.classifier, self.image.pixels, self.pred,
                            self.heat_style(), on_yield=self._on_heatmap, on_error=self._on_heatmap_error, context="Heatmap")
        if w is not None:
            w.heat_key = key
        return True

    def _on_heatmap(self, item) -> None:
        _, key, heat, colour, share, style = item
        self.heat_cache[key] = (heat, colour, share, style)
        while len(self.heat_cache) > HEAT_CACHE_SIZE:
            self.heat_cache.popitem(last=False)
        if key == self._heat_key():
            self._apply_share(share)
            self.heatmapReady.emit(str(self.path))
            if self.heatmap_visible_wanted() or self._normal_hidden:
                self.refresh_heatmap()  # shows it, or says why a Normal result's is not shown
            else:
                self.panel.heat_state.setText("Heatmap ready (H shows it).")

    def _on_heatmap_error(self, exc) -> bool:
        self.panel.heat_state.setText("The heatmap could not be computed.")
        self.heatmapFailed.emit(str(exc))
        return False

    # -- window / level / invert -------------------------------------------------
    def window_drag(self, dx: float, dy: float) -> None:
        if self.display is None or not self.display.has_raw:
            return
        self.display.drag(dx, dy)
        self.preset_name = CUSTOM_PRESET
        self.meta_panel.show_preset(CUSTOM_PRESET)  # no longer the preset the box named
        self._wl_timer.start()  # coalesce mouse moves into one redraw

    def window_preset(self, name: str) -> None:
        if self.display is not None and self.display.has_raw:
            self.display.preset(name)
            self.preset_name = name
            self.meta_panel.show_preset(name)
            self._redraw()

    def set_invert(self, on: bool) -> None:
        if self.display is not None:
            self.display.user_invert = on
            self._redraw()

    def _redraw(self) -> None:
        if self.display is None:
            return
        self.viewer.set_image(grey_to_qimage(self.display.pixels()), keep_view=True)
        self.meta_panel.set_window_text(self.display.center, self.display.width)
        self._update_overlay_text()

    def _update_overlay_text(self) -> None:
        """The viewer's corner texts for the current image (overlay_text.py)."""
        from . import overlay_text as ot

        if self.image is None:
            self.viewer.set_corner_text({}, {})
            return
        meta = self.image.meta
        ids = self.meta_panel.patient_items() if self.meta_panel.patient_visible() else None
        self.viewer.set_corner_text({"top_left": ot.top_left(meta, identifiers=ids), "top_right": ot.top_right(meta),
                                     "bottom_left": [ot.window_line(self.display, self.preset_name)]},
                                    ot.orientation_markers(meta, turn=meta.turn))


class _Reason:
    """A batch row's refusal, shaped like ImageRefused for ``_show_refusal``."""

    def __init__(self, reason: str, code: str):
        self.reason, self.code = reason or "not classified", code or ""


def report_content(ctl: ImageController, *, patient: dict | None):
    """What the PDF report shows for the controller's current image."""
    from training.inference.explain import overlay_rgb

    from .images import rgb_to_qimage
    from .report_pdf import ReportContent

    if ctl.pred is None or ctl.display is None:
        return None
    px = ctl.display.pixels()
    limit = 1200  # enough for print; keeps the PDF small

    def small(img):
        return img if max(img.width(), img.height()) <= limit else img.scaled(
            limit, limit, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)

    heat = ctl.heatmap()
    overlay = (small(rgb_to_qimage(overlay_rgb(px, heat[0], ctl.opacity, ctl.heat_colours, ctl.heat_floor)))
               if heat is not None else None)
    layer = ctl.lesion()  # a valid model-v2 result: the film with the lesion fill and contours drawn on
    lesion_img = None
    if layer is not None:
        from .images import draw_lesion

        lesion_img = draw_lesion(small(grey_to_qimage(px)), layer, ctl.image.pixels.shape[:2])
    meta = ctl.image.meta
    d = ctl.display
    metadata = [("Modality", meta.modality or "not recorded"), ("Body part", meta.body_part or "not recorded"),
                ("View", meta.view or "not recorded"),
                ("Size", f"{meta.original_size[1]} × {meta.original_size[0]} px")]
    if d.has_raw and (d.is_dicom or d.windowed):
        metadata.append(("Display window", f"level {d.center:.4g}, width {d.width:.4g}"
                         + ("" if d.windowed else " (file default)")))
    info = ctl.classifier.info if ctl.classifier is not None else None
    stamp = None
    if ctl.classifier is not None:
        from training.model.audit import model_stamp

        stamp = model_stamp(ctl.classifier.loaded)
    p = ctl.pred
    return ReportContent(
        file_name=ctl.path.name, image=small(grey_to_qimage(px)), overlay=overlay, label=p.result or p.label,
        p_covid=float(p.p_covid), threshold=float(p.threshold),
        model_name=info.label if info else "unknown", model_version=info.version if info else "?",
        warnings=list(p.warnings), metadata=metadata, patient=patient, valid=bool(p.valid),
        forced_reason="" if p.valid else p.forced_reason(),
        suitability=p.suitability, heat_in_lungs=p.heat_in_lungs, band=p.band,
        probs=dict(p.probs or {}), lung_involvement=p.lung_involvement if p.valid else None, lesion=lesion_img,
        calibrated=bool(info.calibration) if info else False, model_sha256=stamp.sha256 if stamp else "", app_version=stamp.app_version if stamp else "")
