"""The current image: open it (worker), show it, classify it through the
core's chest-radiograph gate, its heatmap and the heatmap's share inside the
lungs (worker, cached per image and model), the lung outline, window/level and
invert.

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

from .display_state import DEFAULT_HEATMAP_COLOURS, HEATMAP_COLOURS, DisplayState
from .images import grey_to_qimage
from .tasks import GATE_CODE, HEADER_CODES, gradcam_task, lung_mask_task, open_image_task, predict_task

HEAT_CACHE_SIZE = 8


class ImageController(QObject):
    imageShown = Signal(str)        # path
    predictionShown = Signal(object)  # Prediction
    heatmapShown = Signal(str)      # path: the heatmap is on screen
    heatmapReady = Signal(str)      # path: computed (shown or not)
    refusalShown = Signal(str)      # reason
    heatmapFailed = Signal(str)

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
        self.refusal = None  # ImageRefused (or _Reason) shown for the current path
        self.overridden = False  # the header refusal was overridden
        self.gate_overridden = False  # the gate refusal was overridden: results are not valid
        self.heat_cache: OrderedDict = OrderedDict()
        self.heat_colours = DEFAULT_HEATMAP_COLOURS  # matplotlib colour map of the heatmap layer
        self._recoloured: OrderedDict = OrderedDict()  # (heat key, colour map) -> QImage
        self.show_heatmap = True
        self.opacity = 0.45
        self._wl_timer = QTimer(self, singleShot=True, interval=15)
        self._wl_timer.timeout.connect(self._redraw)
        viewer.windowDragged.connect(self.window_drag)
        meta_panel.presetChosen.connect(self.window_preset)
        meta_panel.invertToggled.connect(self.set_invert)

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
        self.overridden = not check_header
        self.gate_overridden = False
        self.viewer.set_image(None)
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
        self.overridden = self.gate_overridden = False
        self.viewer.set_image(None)
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
            self.meta_panel.set_window_text(self.display.center, self.display.width)
            if self.meta_panel.invert.isChecked():
                self.meta_panel.invert.setChecked(False)
            self.viewer.set_image(grey_to_qimage(self.display.pixels()))
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
        from training.errors import ImageRefused

        self.viewer.set_placeholder("")
        if isinstance(exc, ImageRefused):
            self._show_refusal(exc)
            self.notifier.warning(f"{self.path.name} was not classified: {exc.reason}")
            return True
        self.panel.clear("")
        self.panel.show_refusal(f"the file could not be opened ({type(exc).__name__}: {exc})")
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
            if pred.code == GATE_CODE:
                from training.gate import INVERTED_NOTE  # torch is loaded once a model is

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
        self._set_gate_invert(pred.inverted)
        self.viewer.set_outline(outline)
        if outline is None and pred.suitability and (pred.lung_mask is None or pred.lung_mask.any()):
            self._find_lungs()  # a batch result: the gate ran but kept no mask
        self.panel.show_warnings(list(pred.warnings))
        self._label_prediction()
        self._show_share()
        self.predictionShown.emit(pred)
        self.refresh_heatmap()

    def _label_prediction(self) -> None:
        p = self.pred
        positive = self.classifier.positive_class if self.classifier is not None else "COVID"
        self.panel.show_prediction(p.label, p.p_covid, p.threshold, positive, valid=p.valid, band=p.band,
                                   model=p.model_version)

    def _set_gate_invert(self, on: bool) -> None:
        """The gate found the image inverted: show it inverted back, as classified."""
        if self.display is not None and self.display.gate_invert != bool(on):
            self.display.gate_invert = bool(on)
            self._redraw()

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
            from training.gate import ATTENTION_OUTSIDE_THRESHOLD  # torch is loaded once a model is

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

    # -- heatmap -------------------------------------------------------------------
    def _heat_key(self):
        return (str(self.path), self.overridden, self.gate_overridden, id(self.classifier))

    def heatmap(self):
        """(heatmap array, colour QImage in the chosen colour map) for the current image, or None."""
        key = self._heat_key() if self.path is not None else None
        entry = self.heat_cache.get(key) if key is not None else None
        if entry is None:
            return None
        if self.heat_colours == DEFAULT_HEATMAP_COLOURS:  # the worker drew this one
            return entry[:2]
        colour = self._recoloured.get((key, self.heat_colours))
        if colour is None:
            from training.explain import overlay_rgb

            from .images import rgb_to_qimage

            colour = rgb_to_qimage(overlay_rgb(np.zeros_like(entry[0]), entry[0], 1.0, self.heat_colours))
            self._recoloured[(key, self.heat_colours)] = colour
            while len(self._recoloured) > HEAT_CACHE_SIZE:
                self._recoloured.popitem(last=False)
        return entry[0], colour

    def set_heat_colours(self, name: str) -> None:
        """Draw the heatmap with another colour map (display and PDF report only)."""
        if name in HEATMAP_COLOURS and name != self.heat_colours:
            self.heat_colours = name
            self.refresh_heatmap()

    def set_heatmap_visible(self, on: bool) -> None:
        self.show_heatmap = on
        self.refresh_heatmap()

    def set_opacity(self, percent: int) -> None:
        self.opacity = percent / 100.0
        self.viewer.set_overlay_opacity(self.opacity)

    def refresh_heatmap(self) -> None:
        """Show the heatmap when wanted: from the cache, else compute it."""
        if not self.show_heatmap or self.pred is None or self.image is None:
            self.viewer.set_overlay(None)
            self.panel.heat_state.setText("" if self.show_heatmap or self.pred is None
                                          else "Heatmap hidden (H shows it).")
            return
        cached = self.heatmap()
        if cached is not None:
            self.heat_cache.move_to_end(self._heat_key())
            self._apply_share(self.heat_cache[self._heat_key()][2])
            self.viewer.set_overlay(cached[1], self.opacity)
            hot = HEATMAP_COLOURS.get(self.heat_colours, HEATMAP_COLOURS[DEFAULT_HEATMAP_COLOURS])[1]
            self.panel.heat_state.setText(f"{hot} = regions that raised P(COVID) most (Grad-CAM).")
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
                            on_yield=self._on_heatmap, on_error=self._on_heatmap_error, context="Heatmap")
        if w is not None:
            w.heat_key = key
        return True

    def _on_heatmap(self, item) -> None:
        _, key, heat, colour, share = item
        self.heat_cache[key] = (heat, colour, share)
        while len(self.heat_cache) > HEAT_CACHE_SIZE:
            self.heat_cache.popitem(last=False)
        if key == self._heat_key():
            self._apply_share(share)
            self.heatmapReady.emit(str(self.path))
            if self.show_heatmap:
                self.refresh_heatmap()
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
        self._wl_timer.start()  # coalesce mouse moves into one redraw

    def window_preset(self, name: str) -> None:
        if self.display is not None and self.display.has_raw:
            self.display.preset(name)
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


class _Reason:
    """A batch row's refusal, shaped like ImageRefused for ``_show_refusal``."""

    def __init__(self, reason: str, code: str):
        self.reason, self.code = reason or "not classified", code or ""


def report_content(ctl: ImageController, *, patient: dict | None):
    """What the PDF report shows for the controller's current image."""
    from training.explain import overlay_rgb

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
    overlay = (small(rgb_to_qimage(overlay_rgb(px, heat[0], ctl.opacity, ctl.heat_colours)))
               if heat is not None else None)
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
        from training.audit import model_stamp

        stamp = model_stamp(ctl.classifier.loaded)
    p = ctl.pred
    return ReportContent(
        file_name=ctl.path.name, image=small(grey_to_qimage(px)), overlay=overlay, label=p.result or p.label,
        p_covid=float(p.p_covid), threshold=float(p.threshold),
        model_name=info.label if info else "unknown", model_version=info.version if info else "?",
        warnings=list(p.warnings), metadata=metadata, patient=patient, valid=bool(p.valid),
        suitability=p.suitability, heat_in_lungs=p.heat_in_lungs, band=p.band,
        calibrated=bool(info.calibration) if info else False, model_sha256=stamp.sha256 if stamp else "", app_version=stamp.app_version if stamp else "")
