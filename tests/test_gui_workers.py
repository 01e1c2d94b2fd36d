"""The app's one worker pattern: errors from any job reach the notification
path, including torch's RuntimeErrors (which superqt alone would only warn about)."""

from __future__ import annotations

WAIT = 20000


def test_runtime_error_in_any_job_reaches_the_notifier(qtbot):
    from xray_gui.workers import Jobs, Notifier

    def failing():
        yield 1
        raise RuntimeError("CUDA out of memory (simulated)")

    notifier = Notifier(dialogs=False)
    jobs = Jobs(notifier)
    got, done = [], []
    jobs.start("predict", failing, on_yield=got.append, on_done=lambda: done.append(True), context="Prediction")
    qtbot.waitUntil(lambda: bool(done), timeout=WAIT)
    assert got == [1]
    errors = [n for n in notifier.history if n.level == "error"]
    assert len(errors) == 1
    assert "Prediction failed unexpectedly" in errors[0].text and "CUDA out of memory" in errors[0].text
    assert not jobs.running("predict")
