"""The app while a decode hangs (issue 13, item 1): the window stays
responsive, and closing it ends at once instead of waiting for the decoder."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("superqt")

from PySide6.QtCore import QThreadPool, QTimer  # noqa: E402

from tests.test_decode_guard import D78_FRAME, _j2k_dicom  # noqa: E402
from tests.test_gui_app import (  # noqa: E402,F401
    WAIT,
    _make_window,  # noqa: E402
    classifier,
    model_file,
    settings_file,
)
from training.imaging import decode_guard  # noqa: E402


def test_window_stays_responsive_and_closes_at_once_while_a_decode_hangs(qtbot, settings_file, classifier,
                                                                         model_file, tmp_path, monkeypatch):
    import training.imaging.j2k_header

    monkeypatch.setattr(training.imaging.j2k_header, "codestream_problem", lambda *a, **k: "")  # let d78 reach pydicom
    monkeypatch.setattr(decode_guard, "DECODE_TIMEOUT_S", 120.0)
    decode_guard.reset_for_tests()
    hang = _j2k_dicom(tmp_path / "d78.dcm", D78_FRAME)
    win = _make_window(qtbot)
    with qtbot.waitSignal(win.models.changed, timeout=WAIT):
        win.models.use(classifier, model_file)
    win.open_image(hang)
    qtbot.waitUntil(lambda: decode_guard.pool_size() > 0, timeout=WAIT)  # the worker is stuck in the loop
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    qtbot.wait(1000)
    timer.stop()
    assert len(ticks) >= 25  # the event loop kept running (about 50 ticks of 20 ms in a second)
    t0 = time.monotonic()
    win.close()
    assert time.monotonic() - t0 < 5.0
    assert QThreadPool.globalInstance().activeThreadCount() == 0
    assert decode_guard.pool_size() == 0
    decode_guard.reset_for_tests()
