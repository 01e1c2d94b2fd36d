"""The layers a result draws from its stored masks, without running the model:
the lesion map of a model-v2 result (numpy on the GUI thread, from the
prediction's stored map) and the lung outline of a batch result (the gate's
mask, outlined in a worker).

Part of ``ImageController`` (``images.layers``), which owns the current image
and its result; this part reads them there and draws on its viewer."""

from __future__ import annotations

from .images import lesion_layer
from .tasks import lung_mask_task


class ResultLayers:
    def __init__(self, images):
        self.images = images  # the ImageController: image, pred, classifier, viewer, panel, jobs
        self.show_lesion = True  # the user's choice (M), remembered: the lesion map of a model-v2 result
        self._lesion: tuple | None = None  # (prediction, image shape, LesionLayer | None): the last one drawn

    # -- lesion map (model v2) --------------------------------------------------------
    def lesion(self):
        """The current result's ``images.LesionLayer`` (None: no result, a result
        without a lesion map, or one that is not valid)."""
        p, image = self.images.pred, self.images.image
        if p is None or image is None or not (p.ok and p.valid and p.has_lesion_map):
            return None
        shape = tuple(image.pixels.shape[:2])
        if self._lesion is None or self._lesion[0] is not p or self._lesion[1] != shape:
            self._lesion = (p, shape, lesion_layer(p, shape))  # numpy from the stored map: a few ms, no model run
        return self._lesion[2]

    def update_lesion(self) -> None:
        """Put the current result's lesion layer on the viewer (or none), and
        enable the View menu's Lesion Map and the panel's box only when there is one."""
        layer = self.lesion()
        if layer is None:
            self._lesion = None
        viewer = self.images.viewer
        viewer.set_lesion(layer)
        viewer.set_lesion_visible(self.show_lesion)
        self.images.panel.show_lesion_controls(layer is not None)
        act = (getattr(self.images.window, "actions_by_name", None) or {}).get("lesion_map")
        if act is not None:
            act.setEnabled(layer is not None)

    def set_lesion_visible(self, on: bool) -> None:
        """M / the panel's check box: show or hide the lesion layer (drawn from the stored map)."""
        self.show_lesion = bool(on)
        self.images.viewer.set_lesion_visible(self.show_lesion)

    # -- lung outline ----------------------------------------------------------------
    def find_lungs(self) -> None:
        """The lung mask and outline of a batch result, in a worker."""
        images = self.images
        if images.classifier is None or getattr(images.classifier, "gate", None) is None or images.image is None:
            return
        images.jobs.start("lungs", lung_mask_task, images.result_key(), images.classifier, images.image,
                          images.pred.lung_mask, on_yield=self._on_lungs, on_error=self._on_lungs_error,
                          context="Lung outline")

    def _on_lungs(self, item) -> None:
        _, key, mask, outline = item
        pred = self.images.pred
        if key != self.images.result_key() or pred is None:
            return
        if pred.lung_mask is None:
            pred.lung_mask = mask
        self.images.viewer.set_outline(outline)

    def _on_lungs_error(self, exc) -> bool:
        self.images.notifier.warning(f"The lung outline could not be computed: {exc}")
        return True
