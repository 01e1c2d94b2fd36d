"""The Settings dialog's "Heatmap" section: default colour map, lower level
(the part of the map left transparent) and whether Normal results show their
heatmap by default.  Kept apart from dialogs.py; ``apply`` stores the choices
(``AppSettings``) and passes them to the window's image controller."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox

from .display_state import HEATMAP_COLOURS, HEATMAP_FLOOR, HEATMAP_FLOORS


def floor_text(floor: float) -> str:
    if floor <= 0:
        return "0 (whole map)"
    return f"{floor:g} of the maximum" + (" (default)" if abs(floor - HEATMAP_FLOOR) < 1e-9 else "")


class HeatmapSettingsBox(QGroupBox):
    def __init__(self, settings, parent=None):
        super().__init__("Grad-CAM heatmap", parent)
        form = QFormLayout(self)
        self.colours = QComboBox()
        for name, (text, _hot) in HEATMAP_COLOURS.items():
            self.colours.addItem(text, name)
        self.colours.setCurrentIndex(max(0, self.colours.findData(settings.heatmap_colours)))
        self.colours.setToolTip("Also in View → Heatmap Colours.  Inferno and Viridis grow steadily brighter "
                                "with the value; Jet is the classic rainbow.")
        form.addRow("Colour map:", self.colours)
        self.floor = QComboBox()
        for f in HEATMAP_FLOORS:
            self.floor.addItem(floor_text(f), f)
        current = min(range(len(HEATMAP_FLOORS)), key=lambda i: abs(HEATMAP_FLOORS[i] - settings.heatmap_floor))
        self.floor.setCurrentIndex(current)
        self.floor.setToolTip("Values below this share of the map's maximum are not coloured; above it the "
                              "colour fades in.  0 colours the whole image.")
        form.addRow("Colour only above:", self.floor)
        self.for_normal = QCheckBox("Show the heatmap for Normal results too")
        self.for_normal.setChecked(settings.heatmap_for_normal)
        self.for_normal.setToolTip("Off: a Normal result opens without its heatmap; H shows it for that image.")
        form.addRow(self.for_normal)

    def values(self) -> tuple[str, float, bool]:
        return str(self.colours.currentData()), float(self.floor.currentData()), self.for_normal.isChecked()

    def apply(self, window) -> None:
        """Remember the choices and use them now (``window``: the MainWindow)."""
        colours, floor, for_normal = self.values()
        s = window.settings
        s.heatmap_colours, s.heatmap_floor, s.heatmap_for_normal = colours, floor, for_normal
        images = window.images
        images.set_heat_for_normal(for_normal)
        images.set_heat_floor(floor)
        images.set_heat_colours(colours)
        act = (getattr(window, "actions_by_name", None) or {}).get(f"heat_colours_{colours}")
        if act is not None:
            act.setChecked(True)
