"""Menus, actions and keyboard shortcuts of the main window."""

from __future__ import annotations

from PySide6.QtGui import QAction, QActionGroup, QKeySequence

from .dialogs import DEVICE_LABELS
from .display_state import HEATMAP_COLOURS, PRESET_TIPS, WINDOW_PRESETS


def _act(window, text, slot, shortcuts=(), tip="", checkable=False):
    a = QAction(text, window)
    if shortcuts:
        a.setShortcuts([QKeySequence(s) for s in shortcuts])
    if tip:
        a.setStatusTip(tip)
    a.setCheckable(checkable)
    a.triggered.connect(slot)
    window.addAction(a)  # shortcuts work even while the menu bar is hidden
    return a


def _window_preset(w, name: str) -> None:
    """Keys 1-4: the preset, shown in the side panel's W/L box too."""
    if w.images.display is None or not w.images.display.has_raw:
        return
    w.meta_panel.preset.setCurrentText(name)
    w.images.window_preset(name)


def _heat_colours(w, name: str) -> None:
    w.settings.heatmap_colours = name
    w.images.set_heat_colours(name)


def _overlays(w, on: bool) -> None:
    """View > Overlays (O): the viewer's corner texts, remembered."""
    w.settings.show_overlays = bool(on)
    w.viewer.set_overlays_visible(bool(on))


def build_menus(w) -> dict[str, QAction]:
    """Create the menu bar of MainWindow ``w``; returns the actions by name."""
    A: dict[str, QAction] = {}
    _file_menu(w, A)
    _view_menu(w, A)
    _settings_menu(w, A)
    _tools_menu(w, A)
    h = w.menuBar().addMenu("&Help")
    A["about"] = _act(w, "&About and Model Card…", w.show_about, ["F1"])
    h.addAction(A["about"])
    return A


def _file_menu(w, A: dict[str, QAction]) -> None:
    m = w.menuBar().addMenu("&File")
    A["open"] = _act(w, "&Open Image…", w.choose_image, ["Ctrl+O"],
                     "Open a chest X-ray (PNG, JPEG, BMP, TIFF or DICOM)")
    A["open_folder"] = _act(w, "Open &Folder…", w.choose_folder, ["Ctrl+Shift+O"],
                            "Classify every image in a folder (and its subfolders)")
    A["open_dicomdir"] = _act(w, "Open &DICOMDIR…", w.choose_dicomdir, ["Ctrl+Shift+D"],
                              "Classify the radiographs of a CD/DVD or USB export (its DICOMDIR index)")
    m.addAction(A["open"])
    m.addAction(A["open_folder"])
    m.addAction(A["open_dicomdir"])
    w.recent_menu = m.addMenu("Open &Recent")
    w.recent_menu.aboutToShow.connect(lambda: _fill_recent_menu(w))
    m.addSeparator()
    A["open_model"] = _act(w, "Open &Model…", w.choose_model, ["Ctrl+M"], "Load another model file (.safetensors)")
    m.addAction(A["open_model"])
    m.addSeparator()
    A["export_report"] = _act(w, "Export &Report (PDF)…", w.exports.choose_report, ["Ctrl+E"],
                              "PDF of the current image, heatmap and prediction")
    A["export_csv"] = _act(w, "Export Batch Results (&CSV)…", w.exports.choose_csv, ["Ctrl+Shift+E"],
                           "The batch table as shown (sorted and filtered)")
    A["export_dicom"] = _act(w, "Export &DICOM Results (SR + Secondary Capture)…", w.exports.choose_dicom_export,
                             [], "A DICOM structured report and a heatmap image per result, filed with the source "
                             "study (DICOM sources only)")
    m.addAction(A["export_report"])
    m.addAction(A["export_csv"])
    m.addAction(A["export_dicom"])
    m.addSeparator()
    A["quit"] = _act(w, "&Quit", w.close, ["Ctrl+Q"])
    m.addAction(A["quit"])


def _fill_recent_menu(w) -> None:
    """File → Open Recent, filled each time it opens."""
    m = w.recent_menu
    m.clear()
    items = w.settings.recent_files
    for f in items:
        m.addAction(f, lambda f=f: w.open_paths([f]))
    if not items:
        m.addAction("(none)").setEnabled(False)
    else:
        m.addSeparator()
        m.addAction("Clear list", w.settings.clear_recent)


def _turn_actions(w, A: dict[str, QAction]) -> None:
    """View > Rotate Left / Right, Flip Horizontal (Weasis-style): the shown image is turned and
    classified again as turned; the result's notes, the CSV and the PDF say so."""
    A["rotate_left"] = _act(w, "Rotate 90° &Left", lambda: w.images.turn(1), ["["],
                            "Turn the image 90° counter-clockwise and classify it again")
    A["rotate_right"] = _act(w, "Rotate 90° &Right", lambda: w.images.turn(3), ["]"],
                             "Turn the image 90° clockwise and classify it again")
    A["flip"] = _act(w, "&Flip Horizontal", lambda: w.images.turn(0, True), ["F"],
                     "Mirror the image left-right and classify it again (check the side marker first)")


def _view_menu(w, A: dict[str, QAction]) -> None:
    v = w.menuBar().addMenu("&View")
    A["zoom_in"] = _act(w, "Zoom &In", w.viewer.zoom_in, ["+", "=", "Ctrl++"])
    A["zoom_out"] = _act(w, "Zoom &Out", w.viewer.zoom_out, ["-", "Ctrl+-"])
    A["fit"] = _act(w, "&Fit to Window", w.viewer.fit, ["0", "Ctrl+0"])
    A["heatmap"] = _act(w, "Show &Heatmap", w.pred_panel.heatmap.toggle, ["H"], checkable=True)
    w.pred_panel.heatmap.toggled.connect(A["heatmap"].setChecked)
    A["lung_outline"] = _act(w, "Show &Lung Outline", w.pred_panel.lung_outline.toggle, ["L"], checkable=True,
                             tip="Outline of the lungs found by the lung segmenter, over the image")
    w.pred_panel.lung_outline.toggled.connect(A["lung_outline"].setChecked)
    A["lesion_map"] = _act(w, "Show Lesion &Map", w.pred_panel.lesion.toggle, ["M"], checkable=True,
                           tip="The model's lesion map (model v2): tinted where its lesion probability is at or "
                               "above 0.5, outlined at 0.5")
    w.pred_panel.lesion.toggled.connect(A["lesion_map"].setChecked)
    A["lesion_map"].setEnabled(False)  # only while the current result has a lesion map (image_controller)
    A["invert"] = _act(w, "&Invert", w.meta_panel.invert.toggle, ["I"], checkable=True)
    w.meta_panel.invert.toggled.connect(A["invert"].setChecked)
    A["next"] = _act(w, "&Next Image in Batch", lambda: w.batch_panel.step(+1), ["PgDown", "N"])
    A["prev"] = _act(w, "&Previous Image in Batch", lambda: w.batch_panel.step(-1), ["PgUp", "P"])
    _turn_actions(w, A)
    for key in ("zoom_in", "zoom_out", "fit", None, "heatmap", "lesion_map", "lung_outline", "invert", None,
                "rotate_left", "rotate_right", "flip", None, "next", "prev"):
        v.addSeparator() if key is None else v.addAction(A[key])
    v.addSeparator()
    wl = v.addMenu("&Window/Level")
    for number, name in enumerate(WINDOW_PRESETS, start=1):
        A[f"window_{number}"] = _act(w, f"&{number}  {name}", lambda _=False, n=name: _window_preset(w, n),
                                     [str(number)], f"{name}: {PRESET_TIPS[name]}")
        wl.addAction(A[f"window_{number}"])
    _heat_colours_menu(w, A, v.addMenu("Heatmap &Colours"))
    A["overlays"] = _act(w, "&Overlays", lambda on: _overlays(w, on), ["O"],
                         "Texts over the image: window/level, zoom, orientation, size, file", checkable=True)
    A["overlays"].setChecked(w.settings.show_overlays)
    w.viewer.set_overlays_visible(w.settings.show_overlays)
    v.addAction(A["overlays"])
    v.addSeparator()
    for key in ("side_panel", "batch_table", "full_screen"):  # made by the window's layout (window_layout.py)
        v.addAction(w.layout_actions[key])


def _heat_colours_menu(w, A: dict[str, QAction], hc) -> None:
    group = QActionGroup(w)
    group.setExclusive(True)
    chosen = w.settings.heatmap_colours
    w.images.set_heat_colours(chosen)
    for name, (text, hot) in HEATMAP_COLOURS.items():
        a = QAction(text, w, checkable=True)
        a.setStatusTip(f"Draw the Grad-CAM heatmap with the {name} colour map ({hot.lower()} = strongest)")
        a.setChecked(name == chosen)
        a.triggered.connect(lambda _=False, n=name: _heat_colours(w, n))
        group.addAction(a)
        hc.addAction(a)
        A[f"heat_colours_{name}"] = a


def _settings_menu(w, A: dict[str, QAction]) -> None:
    s = w.menuBar().addMenu("&Settings")
    dm = s.addMenu("&Device")
    group = QActionGroup(w)
    group.setExclusive(True)
    w.device_actions = {}
    for key, text in DEVICE_LABELS.items():
        a = QAction(text, w, checkable=True)
        a.triggered.connect(lambda _=False, k=key: w.model_display.choose_device(k))
        group.addAction(a)
        dm.addAction(a)
        w.device_actions[key] = a
    A["settings"] = _act(w, "&Settings…", w.show_settings, ["Ctrl+,"])
    s.addAction(A["settings"])


def _tools_menu(w, A: dict[str, QAction]) -> None:
    """Tools → Train models…: the training wizard (docs/WIZARD.md)."""
    act = QAction("&Train models…", w)
    act.setStatusTip("Retrain the paper's models on your own images (training wizard)")
    act.triggered.connect(w.show_training_wizard)
    w.menuBar().addMenu("&Tools").addAction(act)
    A["train"] = act
