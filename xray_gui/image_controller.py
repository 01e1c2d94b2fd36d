"""The current image: open it (worker), show it, classify it through the
core's chest-radiograph gate, and show its result: the verdict, its heatmap,
lesion map and lung outline.

Two refusals can be overridden with "Classify anyway", one at a time: a DICOM
header refusal (the gate still applies afterwards) and a gate refusal (the
result is then shown as not valid: no verdict, here or in the PDF report).

``ImageController`` owns the current image (``path``, ``image``, ``display``,
``pred``) and the model, and drives the viewer, the prediction panel and the
metadata panel; its parts hold the rest, each in its own module:

* ``overrides`` (``override_state.py``): the refusal shown and what was overridden;
* ``heat`` (``heatmap_layer.py``): the Grad-CAM heatmap (worker, cache, colours,
  level, opacity, Normal results) and its share inside the lungs;
* ``layers`` (``result_layers.py``): the lesion map and the lung outline;
* ``turns`` (``image_turn.py``): Rotate / Flip and the gate's turn upright;
* ``wl`` (``window_level.py``): window/level, invert, the corner texts.

The parts' methods and settings keep their old names on the controller (other
modules and the tests use them).  All image and model work is the core's, run
through ``Jobs``."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal

from training.inference.result import GATE_CODE

from .delegate import to_parts
from .heatmap_layer import HeatmapLayer
from .image_turn import ImageTurn
from .images import grey_to_qimage
from .override_state import OverrideState, Reason
from .result_layers import ResultLayers
from .tasks import HEADER_CODES, open_image_task, predict_task
from .window_level import WindowLevel

_IMAGE_JOBS = ("predict", "heatmap", "lungs")  # an image's jobs after it is open: their late results are its own


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
        self.display = None  # display_state.DisplayState of the image
        self.pred = None
        self.overrides = OverrideState()
        self.heat = HeatmapLayer(self, getattr(window, "settings", None))
        self.layers = ResultLayers(self)
        self.turns = ImageTurn(self)
        self.wl = WindowLevel(self)
        h = self.heat
        for theirs, ours in ((h.shown, self.heatmapShown), (h.ready, self.heatmapReady),
                             (h.failed, self.heatmapFailed), (h.withheld, self.heatmapWithheld)):
            theirs.connect(ours)

    # -- the parts' API under the controller's names -------------------------------------
    refusal, overridden, gate_overridden = to_parts("overrides", "refusal", "header", "gate")
    heat_cache, heat_colours, heat_floor, heat_for_normal, show_heatmap, opacity = to_parts(
        "heat", "cache", "colours", "floor", "for_normal", "show", "opacity")
    heatmap, heat_style, refresh_heatmap, compute_heatmap, heatmap_visible_wanted, _is_normal = to_parts(
        "heat", "heatmap", "style", "refresh", "compute", "visible_wanted", "is_normal")
    set_heat_floor, set_heat_colours, set_heat_for_normal, set_heatmap_visible, set_opacity = to_parts(
        "heat", "set_floor", "set_colours", "set_for_normal", "set_visible", "set_opacity")
    lesion, set_lesion_visible, show_lesion = to_parts("layers", "lesion", "set_lesion_visible", "show_lesion")
    turn, user_turn = to_parts("turns", "turn", "user_turn")
    window_drag, window_preset, set_invert, preset_name = to_parts("wl", "drag", "preset", "set_invert", "preset_name")

    def result_key(self) -> tuple:
        """What a worker's result for the current image depends on (a late one that does not match is dropped)."""
        turn = self.image.meta.turn if self.image is not None else (0, False)
        return (str(self.path), *self.overrides.key(), id(self.classifier), turn)

    # -- model -----------------------------------------------------------------
    def set_classifier(self, classifier) -> None:
        """A new model: drop cached heatmaps and classify the current image again."""
        self.classifier = classifier
        self.heat.forget()
        if self.image is not None and self.overrides.may_classify():
            self.predict()

    # -- opening -----------------------------------------------------------------
    def open(self, path, *, check_header: bool = True, pred=None) -> None:
        """Show ``path``; classify it unless ``pred`` (a batch result) is given."""
        self.path = Path(path)
        self.image = self.display = self.pred = None
        self.turns.reset()
        self.overrides.reset(header_overridden=not check_header)
        self.heat.set_normal_hidden(False)
        self.viewer.set_image(None)
        self.layers.update_lesion()
        self.wl.update_overlay_text()
        self.viewer.set_placeholder(f"Opening {self.path.name}…")
        self.meta_panel.set_meta(None)
        self.panel.clear("Opening the image…")
        for job in _IMAGE_JOBS:  # their late results belong to the previous image
            self.jobs.cancel(job)
        classify = self.classifier if pred is None else None
        self.jobs.start("image", open_image_task, str(self.path), check_header, classify,
                        on_yield=lambda item, b=pred: self._on_image_item(item, b),
                        on_error=self._on_open_error, context=f"Opening {self.path.name}")

    def clear(self, placeholder: str, state: str = "") -> None:
        """Nothing on screen (``placeholder`` in the viewer, ``state`` in the
        side panel): e.g. a new batch before a row is selected.  The jobs of
        the previous image are dropped."""
        for job in ("image", *_IMAGE_JOBS):
            self.jobs.cancel(job)
        self.path = self.image = self.display = self.pred = None
        self.turns.reset()
        self.overrides.reset()
        self.viewer.set_image(None)
        self.layers.update_lesion()
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
        gate = self.overrides.override()
        self.panel.show_refusal(None)
        if self.image is None:
            self.open(self.path, check_header=False)
        else:
            if not gate:
                self.panel.show_warnings(list(self.image.warnings))
            self.predict()

    def _on_image_item(self, item, batch_pred) -> None:
        kind = item[0]
        if kind == "prediction":
            self._show_prediction(item[1], item[2])
            return
        if kind not in ("image", "refused"):
            return
        exc, img, raw_range = item[1:] if kind == "refused" else (None, *item[1:])
        self.image = img
        self.wl.show_new(img, raw_range)
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
        self.overrides.refusal = exc
        code = getattr(exc, "code", "")
        if self.image is None:
            self.panel.clear("")
        else:
            self.panel.set_busy("")
        self.panel.show_refusal(exc.reason, can_override=code in HEADER_CODES or code == GATE_CODE,
                                override_tip=self.overrides.tip(code))
        self.refusalShown.emit(exc.reason)

    # -- prediction ----------------------------------------------------------------
    def predict(self) -> None:
        """Classify the current image (a worker), with the gate unless its refusal was overridden."""
        if self.classifier is None or self.image is None:
            return
        self.panel.set_busy("Classifying…")
        self.jobs.start("predict", predict_task, self.classifier, self.image, not self.overrides.gate,
                        on_yield=lambda item: self._show_prediction(item[1], item[2]), context="Classification")

    def _show_prediction(self, pred, outline=None) -> None:
        """Show a prediction (``outline``: its lung outline, a QPainterPath)."""
        if pred.status != "ok":  # the gate refused, or a batch row that was refused or failed
            self._show_not_classified(pred, outline)
            return
        self.pred = pred
        self.turns.upright(pred)
        self.wl.set_gate_invert(pred.inverted)
        self.viewer.set_outline(outline)
        self.layers.update_lesion()
        mask = pred.lung_mask
        if outline is None and pred.suitability and (mask is None or mask.any()):
            self.layers.find_lungs()  # a batch result: its outline is drawn from the gate's mask in a worker
        self.panel.show_warnings(list(pred.warnings))
        self._label_prediction()
        self.heat.show_share()
        self.heat.start_result(pred)
        self.predictionShown.emit(pred)
        self.heat.refresh()

    def _show_not_classified(self, pred, outline) -> None:
        """A result that is not a classification: the gate refused, or a batch row was refused or failed."""
        self.pred = None
        self.viewer.set_overlay(None)
        self.layers.update_lesion()
        if pred.code == GATE_CODE:
            from training.gate.notes import INVERTED_NOTE  # torch is loaded once a model is

            self.panel.clear("")  # no earlier verdict may stay next to the refusal
            # a refused image is shown as the file has it (its "inversion" may mean
            # nothing: a photo has no lungs), so the note on inverting it back is left out
            self.wl.set_gate_invert(False)
            self.viewer.set_outline(outline)
            self.panel.show_warnings([w for w in pred.warnings if w != INVERTED_NOTE])
            self.notifier.warning(f"{self.path.name} was not classified: {pred.reason}")
        self._show_refusal(Reason(pred.reason, pred.code))

    def _label_prediction(self) -> None:
        p = self.pred
        positive = self.classifier.positive_class if self.classifier is not None else "COVID"
        header = "; ".join(getattr(p.meta, "header_overridden", ()) or ())
        self.panel.show_prediction(p.label, p.p_covid, p.threshold, positive, valid=p.valid, band=p.band,
                                   model=p.model_version, header_forced=header, probs=p.probs,
                                   involvement=p.lung_involvement)

    def relabel(self) -> None:
        """The threshold changed: relabel with the core's rule; no model run."""
        if self.classifier is not None and self.classifier.relabel(self.pred):
            self._label_prediction()
            self.heat.relabelled(self.pred)


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
        model_name=info.title if info else "unknown", model_version=info.version if info else "?",
        warnings=list(p.warnings), metadata=metadata, patient=patient, valid=bool(p.valid),
        forced_reason="" if p.valid else p.forced_reason(),
        suitability=p.suitability, heat_in_lungs=p.heat_in_lungs, band=p.band,
        probs=dict(p.probs or {}), lung_involvement=p.lung_involvement if p.valid else None, lesion=lesion_img,
        calibrated=bool(info.calibration) if info else False, model_sha256=stamp.sha256 if stamp else "", app_version=stamp.app_version if stamp else "")
