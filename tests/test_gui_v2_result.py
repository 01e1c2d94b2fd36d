"""Model v2 in the app: the three-class result in the prediction panel, the
lesion map as its own viewer layer (View > Show Lesion Map, M), the batch
table's P(pneumonia) / Lung inv. columns and the PDF report.  Binary (v1)
models keep their two-class display without a lesion layer.  Uses the
session's tiny untrained three-class + lesion model (``tiny_v2_model``, 64 px)
and the binary tiny model of test_gui_app.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("superqt")

from PySide6.QtCore import QThreadPool  # noqa: E402

from tests.conftest import DATA  # noqa: E402
from tests.test_gui_app import WAIT, _make_window, classifier, model_file, settings_file  # noqa: E402,F401

THREE_CLASS = DATA / "cxr-infection-3class" / "COVID" / "images"


@pytest.fixture(scope="module")
def covid_png() -> Path:
    files = sorted(THREE_CLASS.glob("*.png"))[:2]
    if not files:
        pytest.skip(f"{THREE_CLASS} not found")
    return files[0]


@pytest.fixture(scope="module")
def v2_classifier(tiny_v2_model):
    from training.inference.classifier import Classifier

    return Classifier.from_file(tiny_v2_model, device="cpu", decode_workers=1)


@pytest.fixture
def v2_window(qtbot, settings_file, v2_classifier, tiny_v2_model):  # noqa: F811
    v2_classifier.threshold = v2_classifier.info.threshold
    win = _make_window(qtbot)
    with qtbot.waitSignal(win.models.changed, timeout=WAIT):
        win.models.use(v2_classifier, tiny_v2_model)
    win.pred_panel.heatmap.setChecked(False)  # Grad-CAM is not under test here: keep the CPU for the rest
    yield win
    win.close()
    assert QThreadPool.globalInstance().activeThreadCount() == 0


def _open(win, qtbot, path):
    with qtbot.waitSignal(win.images.predictionShown, timeout=WAIT) as sig:
        win.open_image(path)
    return sig.args[0]


def _alpha_pixels(img) -> int:
    from PySide6.QtGui import QImage

    a = img.convertToFormat(QImage.Format.Format_RGBA8888)
    arr = np.frombuffer(a.constBits(), np.uint8).reshape(a.height(), a.bytesPerLine())[:, :a.width() * 4]
    return int((arr.reshape(a.height(), a.width(), 4)[..., 3] > 0).sum())


def _magenta_pixels(img) -> int:
    """Pixels clearly tinted by the lesion colour (red and blue well above green)."""
    from PySide6.QtGui import QImage

    a = img.convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(a.constBits(), np.uint8).reshape(a.height(), a.bytesPerLine())[:, :a.width() * 3]
    rgb = arr.reshape(a.height(), a.width(), 3).astype(int)
    return int(((rgb[..., 0] - rgb[..., 1] > 40) & (rgb[..., 2] - rgb[..., 1] > 40)).sum())


# ------------------------------------------------------------------ Qt-free overlay
def test_gui_constants_match_the_core():
    from training.inference.lesion_overlay import LESION_LEVEL
    from training.inference.result import LESION_LEVEL as CORE_LEVEL
    from training.inference.result import PNEUMONIA
    from xray_gui import batch_table, report_pdf
    from xray_gui.prediction_panel import PNEUMONIA_COLOUR
    from xray_gui.viewer import LESION_COLOUR

    assert LESION_LEVEL == CORE_LEVEL
    assert batch_table.PNEUMONIA == report_pdf.PNEUMONIA == PNEUMONIA
    assert batch_table.PNEUMONIA_TEXT.color() == PNEUMONIA_COLOUR
    from training.inference.lesion_overlay import LESION_RGB

    assert LESION_COLOUR.getRgb()[:3] == LESION_RGB


def test_lesion_overlay_is_the_cores_placed_map_and_outlines_it():
    """At full size the numpy resampling equals ``Prediction.lesion_map`` (torch) inside the
    model's box; the contours run where P crosses 0.5, inside the box."""
    from training.inference.lesion_overlay import lesion_overlay
    from training.inference.result import Prediction
    from training.model.lung_input import Box

    u8 = np.zeros((8, 8), np.uint8)
    u8[2:5, 3:7] = 230  # one lesion blob
    u8[6, 0] = 140  # a weak one at the box's edge: still >= 0.5
    box = Box(top=0.1, left=0.2, bottom=0.9, right=0.95)
    pred = Prediction(path=None, status="ok", lesion_u8=u8, input_box=box)
    shape = (120, 100)
    ov = lesion_overlay(u8, box, shape, max_side=10_000, oversample=None)
    r0, c0, r1, c1 = ov.box_px
    placed = pred.lesion_map(shape)
    assert ov.prob.shape == (r1 - r0, c1 - c0)
    np.testing.assert_allclose(ov.prob, placed[r0:r1, c0:c1], atol=1e-5)
    assert not placed[:r0].any() and not placed[:, :c0].any()  # zero outside the box, as the overlay draws it
    lines = ov.contours()
    assert len(lines) == 2
    for pts in lines:
        assert (pts[:, 0] >= c0).all() and (pts[:, 0] <= c1).all()
        assert (pts[:, 1] >= r0).all() and (pts[:, 1] <= r1).all()
        inside = [(x, y) for x, y in pts if c0 + 1 < x < c1 - 1 and r0 + 1 < y < r1 - 1]
        for x, y in inside[::5]:  # on the level: P near 0.5 at the line (bilinear map)
            assert abs(placed[int(round(y - 0.5)), int(round(x - 0.5))] - 0.5) < 0.2
    rgba = ov.rgba()
    assert (rgba[..., 3] > 0).sum() == ov.mask.sum() > 0
    # a bounded overlay for a big film: at most MAX_SIDE, and OVERSAMPLE x the map, on its long side
    from training.inference.lesion_overlay import MAX_SIDE, OVERSAMPLE

    big = lesion_overlay(u8, box, (3000, 2500))
    assert max(big.prob.shape) == min(MAX_SIDE, OVERSAMPLE * 8) and big.any
    assert max(lesion_overlay(np.zeros((40, 40), np.uint8), box, (3000, 2500)).prob.shape) == MAX_SIDE
    assert lesion_overlay(None, box, shape) is None
    assert lesion_overlay(np.zeros((8, 8), np.uint8), None, shape).contours() == []


# ------------------------------------------------------------------ panel
def test_other_pneumonia_verdict_has_its_own_colour(qtbot):
    from training.inference.result import INDETERMINATE, OTHER_PNEUMONIA
    from xray_gui.prediction_panel import (
        CAUTION_COLOUR,
        NEGATIVE_COLOUR,
        PNEUMONIA_COLOUR,
        POSITIVE_COLOUR,
        PredictionPanel,
    )

    panel = PredictionPanel()
    qtbot.addWidget(panel)
    probs = {"Normal": 0.25, "COVID": 0.1, "Pneumonia": 0.65}
    panel.show_prediction("Pneumonia", 0.1, 0.3, "COVID", band=(0.2, 0.45), probs=probs, involvement=0.234)
    assert panel.label.text() == OTHER_PNEUMONIA
    assert PNEUMONIA_COLOUR.name() in panel.label.styleSheet()
    assert len({c.name() for c in (PNEUMONIA_COLOUR, POSITIVE_COLOUR, NEGATIVE_COLOUR, CAUTION_COLOUR)}) == 4
    assert "P(COVID): 0.100" in panel.p_text.text()
    assert panel.class_probs.text() == "P(Normal): 0.250   P(Other pneumonia): 0.650"
    assert panel.involvement.text() == "Lung involvement: 23 % of the lung area (lesion map)"
    assert panel.bar._below == PNEUMONIA_COLOUR
    panel.show_prediction("Normal", 0.1, 0.3, "COVID", band=(0.2, 0.45), probs=probs)
    assert NEGATIVE_COLOUR.name() in panel.label.styleSheet() and panel.bar._below is None
    assert panel.involvement.isHidden()
    panel.show_prediction("Pneumonia", 0.3, 0.5, "COVID", band=(0.2, 0.45), probs=probs)
    assert panel.label.text() == INDETERMINATE and CAUTION_COLOUR.name() in panel.label.styleSheet()
    panel.show_prediction("Pneumonia", 0.1, 0.3, "COVID", valid=False, probs=probs, involvement=0.5)
    assert panel.involvement.isHidden() and "0.650" in panel.class_probs.text()  # no lesion claim when not valid
    panel.show_prediction("COVID", 0.7, 0.5, "COVID", probs={"COVID": 0.7, "Normal": 0.3})  # a binary model
    assert panel.class_probs.isHidden() and panel.label.text() == "COVID"


# ------------------------------------------------------------------ window: v2 result, lesion layer
def test_v2_result_shows_three_probabilities_and_a_toggled_lesion_layer(v2_window, qtbot, covid_png, classifier,
                                                                      model_file):  # noqa: F811
    win = v2_window
    pred = _open(win, qtbot, covid_png)
    panel, viewer, act = win.pred_panel, win.viewer, win.actions_by_name["lesion_map"]
    assert pred.ok and set(pred.probs) == {"Normal", "COVID", "Pneumonia"} and pred.has_lesion_map
    assert f"P(COVID): {pred.p_covid:.3f}" in panel.p_text.text()
    assert panel.class_probs.isVisible()
    assert (panel.class_probs.text() ==
            f"P(Normal): {pred.probs['Normal']:.3f}   P(Other pneumonia): {pred.probs['Pneumonia']:.3f}")
    assert panel.label.text() == pred.result
    assert "3 classes + lesion map" in panel.model_text.text()
    assert pred.lung_involvement is not None and panel.involvement.isVisible()
    assert f"Lung involvement: {pred.lung_involvement * 100:.0f} % of the lung area" in panel.involvement.text()
    # the lesion layer: on by default, drawn from the stored map, visible pixels, toggled by M
    assert act.isEnabled() and act.isChecked() and panel.lesion_box.isVisible()
    assert act.shortcut().toString() == "M"
    assert viewer.lesion_visible() and _alpha_pixels(viewer.lesion_image()) > 0
    assert not viewer.lesion_path().isEmpty()
    assert not win.jobs.running("predict")  # no model run for the layer
    shown = viewer.viewport().grab().toImage()
    act.trigger()
    assert not viewer.lesion_visible() and not panel.lesion.isChecked() and win.settings.show_lesion_map is False
    hidden = viewer.viewport().grab().toImage()
    assert _magenta_pixels(shown) > 50 + _magenta_pixels(hidden)
    act.trigger()
    assert viewer.lesion_visible() and win.settings.show_lesion_map is True
    assert viewer.overlay_visible() is False  # the Grad-CAM layer is a separate one (off here)
    # the same window after switching to a binary model: two-class result, no lesion layer, M disabled
    classifier.threshold = classifier.info.threshold
    with qtbot.waitSignal(win.images.predictionShown, timeout=WAIT) as sig:
        win.models.use(classifier, model_file)
    binary = sig.args[0]
    assert set(binary.probs) == {"COVID", "Normal"} and not binary.has_lesion_map
    assert panel.label.text() in ("COVID", "Normal", "Indeterminate — review")
    assert not act.isEnabled() and not panel.lesion_box.isVisible()
    assert not viewer.has_lesion() and not viewer.lesion_visible()
    assert panel.class_probs.isHidden() and panel.involvement.isHidden()
    assert "classes" not in panel.model_text.text()


def test_v2_pdf_report_lists_each_class_lung_involvement_and_the_lesion_image(v2_window, qtbot, covid_png,
                                                                              tmp_path):
    from xray_gui.image_controller import report_content
    from xray_gui.report_pdf import build_document

    win = v2_window
    pred = _open(win, qtbot, covid_png)
    out = tmp_path / "v2.pdf"
    with qtbot.waitSignal(win.reportWritten, timeout=WAIT):
        win.export_report(out)
    assert out.read_bytes()[:4] == b"%PDF"
    content = report_content(win.images, patient=None)
    text = build_document(content).toPlainText()
    assert "P(COVID)" in text and f"{pred.p_covid:.3f}" in text
    assert "P(Normal)" in text and f"{pred.probs['Normal']:.3f}" in text
    assert "P(Other pneumonia)" in text and f"{pred.probs['Pneumonia']:.3f}" in text
    assert "Lung involvement" in text and f"{pred.lung_involvement * 100:.0f} % of the lung area" in text
    assert pred.result in text
    assert content.lesion is not None and _magenta_pixels(content.lesion) > 50
    assert _magenta_pixels(content.image) == 0  # the plain film stays plain
    assert "Lesion map" in text
    # a binary result's report has none of it
    from dataclasses import replace

    plain = build_document(replace(content, probs={"COVID": 0.4, "Normal": 0.6}, lung_involvement=None,
                                   lesion=None)).toPlainText()
    assert "P(Other pneumonia)" not in plain and "Lung involvement" not in plain and "Lesion map" not in plain


# ------------------------------------------------------------------ batch table
def test_batch_table_three_class_columns(v2_window, qtbot, covid_png):
    from xray_gui.batch_table import COL_INVOLVEMENT, COL_P, COL_P_PNEUMONIA, COL_PRED

    win = v2_window
    files = sorted(THREE_CLASS.glob("*.png"))[:2]
    panel = win.batch_panel
    with qtbot.waitSignal(win.batch.finished, timeout=WAIT):
        win.open_batch([str(f) for f in files])
    m = panel.model
    assert not panel.view.isColumnHidden(COL_P_PNEUMONIA) and not panel.view.isColumnHidden(COL_INVOLVEMENT)
    for i, r in enumerate(m.rows):
        p = r.pred
        assert p.ok and p.has_lesion_map
        assert m.data(m.index(i, COL_PRED)) == p.result
        assert m.data(m.index(i, COL_P)) == f"{p.p_covid:.3f}"
        assert m.data(m.index(i, COL_P_PNEUMONIA)) == f"{p.probs['Pneumonia']:.3f}"
        assert m.data(m.index(i, COL_INVOLVEMENT)) == f"{p.lung_involvement * 100:.0f} %"
    # a batch row's result draws its lesion layer from the stored map (no model run)
    with qtbot.waitSignal(win.images.predictionShown, timeout=WAIT):
        panel.view.selectRow(0)
    assert win.viewer.lesion_visible() and win.actions_by_name["lesion_map"].isEnabled()
    assert not win.jobs.running("predict")


def test_batch_table_rows_binary_and_other_pneumonia(qtbot):
    """Two-class rows leave the three-class cells empty and the columns hidden; the
    "Other pneumonia" filter keeps the Pneumonia verdicts only."""
    from training.inference.result import OTHER_PNEUMONIA, Prediction
    from xray_gui.batch_table import COL_INVOLVEMENT, COL_P_PNEUMONIA, COL_PRED, FILTERS, PNEUMONIA_TEXT, BatchPanel

    panel = BatchPanel()
    qtbot.addWidget(panel)
    m = panel.model
    panel.start([Path("a.png"), Path("b.png"), Path("c.png")], [])
    binary = Prediction(path=Path("a.png"), status="ok", label="Normal", p_covid=0.2, threshold=0.5,
                        probs={"COVID": 0.2, "Normal": 0.8})
    m.set_result(0, binary, None)
    assert m.data(m.index(0, COL_P_PNEUMONIA)) == "" and m.data(m.index(0, COL_INVOLVEMENT)) == ""
    assert panel.view.isColumnHidden(COL_P_PNEUMONIA) and panel.view.isColumnHidden(COL_INVOLVEMENT)
    other = Prediction(path=Path("b.png"), status="ok", label="Pneumonia", p_covid=0.05, threshold=0.3,
                       probs={"Normal": 0.15, "COVID": 0.05, "Pneumonia": 0.8}, lung_involvement=0.314)
    covid = Prediction(path=Path("c.png"), status="ok", label="COVID", p_covid=0.9, threshold=0.3,
                       probs={"Normal": 0.05, "COVID": 0.9, "Pneumonia": 0.05}, lung_involvement=0.05)
    m.set_result(1, other, None)
    m.set_result(2, covid, None)
    assert not panel.view.isColumnHidden(COL_P_PNEUMONIA) and not panel.view.isColumnHidden(COL_INVOLVEMENT)
    assert m.data(m.index(1, COL_PRED)) == OTHER_PNEUMONIA
    assert m.data(m.index(1, COL_P_PNEUMONIA)) == "0.800" and m.data(m.index(1, COL_INVOLVEMENT)) == "31 %"
    from PySide6.QtCore import Qt

    assert m.data(m.index(1, COL_PRED), Qt.ItemDataRole.ForegroundRole) == PNEUMONIA_TEXT
    assert "Other pneumonia" in FILTERS
    panel.filter.setCurrentText("Other pneumonia")
    assert panel.visible_source_rows() == [1]
    panel.filter.setCurrentText("All")
    panel.start([Path("d.png")], [])  # a new batch: hidden again until a three-class result arrives
    assert panel.view.isColumnHidden(COL_P_PNEUMONIA)
