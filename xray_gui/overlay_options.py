"""The overlays the user switches on the image and the app remembers: the
Grad-CAM heatmap (shown or not, its opacity), the lung outline and the lesion
map.  Restored from the settings at start, kept in them when changed."""

from __future__ import annotations


class OverlayOptions:
    """Between the side panel's controls (``pred_panel``), the settings, and
    what draws the overlays (``images``: the current image, ``viewer``)."""

    def __init__(self, settings, pred_panel, images, viewer):
        self.settings, self.pred_panel, self.images, self.viewer = settings, pred_panel, images, viewer
        p = pred_panel
        p.heatmapToggled.connect(self.heatmap_toggled)
        p.opacityChanged.connect(self.opacity_changed)
        p.lung_outline.toggled.connect(self.lung_outline_toggled)
        p.lesion.toggled.connect(self.lesion_toggled)

    def restore(self) -> None:
        """The remembered choices, on the controls and on the image."""
        s, p = self.settings, self.pred_panel
        p.opacity.setValue(s.overlay_opacity)
        self.images.set_opacity(s.overlay_opacity)
        p.heatmap.setChecked(s.show_heatmap)
        self.images.show_heatmap = s.show_heatmap
        p.lung_outline.setChecked(s.show_lung_outline)
        self.viewer.set_outline_visible(s.show_lung_outline)
        p.lesion.setChecked(s.show_lesion_map)
        self.images.set_lesion_visible(s.show_lesion_map)

    def heatmap_toggled(self, on: bool) -> None:
        self.settings.show_heatmap = on
        self.images.set_heatmap_visible(on)

    def lung_outline_toggled(self, on: bool) -> None:
        self.settings.show_lung_outline = on
        self.viewer.set_outline_visible(on)

    def lesion_toggled(self, on: bool) -> None:
        self.settings.show_lesion_map = on
        self.images.set_lesion_visible(on)

    def opacity_changed(self, value: int) -> None:
        self.settings.overlay_opacity = value
        self.images.set_opacity(value)
