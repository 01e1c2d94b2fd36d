"""The viewer's Rotate / Flip (View menu, keys [ ] F): the shown image is turned,
classified again as turned (the gate judges it as turned), and the result, the
PDF report and the CSV row carry the note; a film stored rotated is shown
turned upright as the orientation check classified it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pytestqt")
pytest.importorskip("superqt")

from tests.test_gui_app import WAIT, classifier, model_file, png, settings_file, window  # noqa: E402,F401

FLIPPED = "The image was flipped left-right by the user before classification."


def _trigger(window, qtbot, name, signal):
    with qtbot.waitSignal(signal, timeout=WAIT) as sig:
        window.actions_by_name[name].trigger()
    return sig.args[0]


def test_rotate_and_flip_reclassify_and_are_recorded(window, qtbot, png):
    from xray_gui.image_controller import report_content

    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT):
        window.open_image(png)
    before = window.images.image.pixels.copy()
    pred = _trigger(window, qtbot, "flip", window.images.predictionShown)
    assert np.array_equal(window.images.image.pixels, before[:, ::-1])
    assert pred.status == "ok" and FLIPPED in pred.warnings and not pred.rotation
    assert FLIPPED in report_content(window.images, patient=None).warnings  # the PDF's notes
    assert FLIPPED in pred.as_row()["warnings"]  # the CSV's warnings column
    # turned sideways by the user, the gate judges the sideways film (and refuses it); no automatic turn back
    reason = _trigger(window, qtbot, "rotate_right", window.images.refusalShown)
    assert "frontal chest radiograph" in reason
    assert window.images.image.pixels.shape == before.shape[::-1] and window.images.image.meta.turn == (3, True)
    pred = _trigger(window, qtbot, "rotate_left", window.images.predictionShown)  # back: classified again
    assert np.array_equal(window.images.image.pixels, before[:, ::-1])
    assert [w for w in pred.warnings if "by the user" in w] == [FLIPPED]  # one note for the whole turn


def test_a_film_stored_rotated_is_shown_upright(window, qtbot, png, tmp_path):
    from training.gate.orientation import default_orientation_path

    if default_orientation_path() is None:
        pytest.skip("no orientation model installed")
    upright = np.asarray(Image.open(png).convert("L"))
    stored = tmp_path / "stored_rotated.png"
    Image.fromarray(np.rot90(upright, -1)).save(stored)  # stored 90 degrees clockwise
    with qtbot.waitSignal(window.images.predictionShown, timeout=WAIT) as sig:
        window.open_image(stored)
    pred = sig.args[0]
    assert pred.rotation == 1 and any("stored rotated 90°" in w for w in pred.warnings)
    assert np.allclose(window.images.image.pixels, upright / 255.0, atol=1e-6)  # shown as classified
    assert window.viewer.has_image()
