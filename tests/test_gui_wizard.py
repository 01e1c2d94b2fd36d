"""The training wizard (pytest-qt, offscreen) on a tiny real data set: 8 COVID +
8 Normal images from covid-cxr-1000, 32 px input, batch 4, 1 epoch, 1 thread.
No sleeps: signals and waitUntil only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("superqt")

from PySide6.QtCore import QThreadPool  # noqa: E402
from PySide6.QtWidgets import QWizard  # noqa: E402

WAIT = 180_000  # ms; generous for 2 shared CPU cores


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, cxr1000) -> Path:
    root = tmp_path_factory.mktemp("wizdata") / "tiny-cxr"
    for cls in ("COVID", "Normal"):
        (root / cls).mkdir(parents=True)
        for p in sorted((cxr1000 / cls).glob("*.png"))[:8]:
            shutil.copy(p, root / cls / p.name)
    (root / "COVID" / "notes.txt").write_text("not an image\n")
    return root


@pytest.fixture
def settings_file(tmp_path, monkeypatch) -> Path:
    ini = tmp_path / "settings.ini"
    monkeypatch.setenv("XRAY_SETTINGS", str(ini))
    return ini


def make_wizard(qtbot, **kw):
    from xray_gui.wizard import TrainingWizard

    wiz = TrainingWizard(dialogs=False, **kw)
    qtbot.addWidget(wiz)
    wiz.show()
    return wiz


def read_folder(qtbot, wiz, folder) -> None:
    page = wiz.data_page
    page.set_folder(folder)
    qtbot.waitUntil(lambda: not page.scanning, timeout=WAIT)


def small_setup(wiz, out: Path, models=("resnet50", "lstm", "resnet50_lstm"), epochs: int = 1) -> None:
    sp = wiz.setup_page
    sp.input_size.setValue(32)
    sp.batch_size.setValue(4)
    sp.epochs.setValue(epochs)
    sp.threads.setValue(1)
    sp.device.setCurrentIndex(sp.device.findData("cpu"))
    sp.out_dir.setText(str(out))
    for arch, cb in sp.model_checks.items():
        cb.setChecked(arch in models)


def no_tmp_files(run: Path) -> bool:
    return not [p for p in run.rglob("*") if p.name.endswith(".tmp")]


def test_gui_uses_the_cores_names_and_they_need_no_torch():
    import subprocess
    import sys

    from training.model.networks import ARCH_LABELS
    from training.train.data import MIN_PER_CLASS
    from xray_gui.wizard import data_page
    from xray_gui.wizard.common import MODEL_LABELS

    assert MODEL_LABELS is ARCH_LABELS  # one object, not a copy
    assert data_page.MIN_PER_CLASS is MIN_PER_CLASS
    code = "import sys, training.common.constants, training.common.formatting; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_unusable_folders_block_next(qtbot, tiny_data, tmp_path):
    wiz = make_wizard(qtbot)
    page = wiz.data_page
    next_button = wiz.button(QWizard.WizardButton.NextButton)
    only_covid = tmp_path / "only-covid"
    shutil.copytree(tiny_data / "COVID", only_covid / "COVID")
    read_folder(qtbot, wiz, only_covid)
    assert not page.isComplete() and not next_button.isEnabled()
    assert page.message.isVisible() and "Normal" in page.message.text()
    assert "cannot be used" in page.message.text()
    assert not wiz.validateCurrentPage()

    few = tmp_path / "few"
    for cls in ("COVID", "Normal"):
        (few / cls).mkdir(parents=True)
        for p in sorted((tiny_data / cls).glob("*.png"))[:3]:
            shutil.copy(p, few / cls / p.name)
    read_folder(qtbot, wiz, few)
    assert not page.isComplete() and not next_button.isEnabled()
    assert "Too few images" in page.message.text() and "at least 5" in page.message.text().lower()

    read_folder(qtbot, wiz, tmp_path / "does-not-exist")
    assert not page.isComplete() and "not found" in page.message.text()

    read_folder(qtbot, wiz, tiny_data)
    assert page.isComplete() and next_button.isEnabled()
    assert page.scan.counts() == {"Normal": 8, "COVID": 8}
    assert any("notes.txt" in page.skipped.item(i).text() for i in range(page.skipped.count()))
    qtbot.waitUntil(lambda: wiz.state.decode_s is not None, timeout=WAIT)  # thumbnails decoded
    assert page.thumb_count == 12  # six per class
    wiz.close()


def test_walk_the_whole_wizard_and_use_the_model(qtbot, tiny_data, tmp_path, settings_file, monkeypatch):
    from xray_gui.main_window import MainWindow

    win = MainWindow(dialogs=False)
    qtbot.addWidget(win)
    win.show()
    assert "&Tools" in [a.text() for a in win.menuBar().actions()]
    win.actions_by_name["train"].trigger()  # Tools → Train models…
    wiz = win.training_wizard
    assert wiz is not None and wiz.isVisible() and wiz.use_model is not None
    read_folder(qtbot, wiz, tiny_data)
    wiz.next()
    sp = wiz.setup_page
    assert wiz.currentPage() is sp
    # the paper's values, and the recipe choice refills them
    assert (sp.input_size.value(), sp.batch_size.value(), sp.lr.value(), sp.epochs.value()) == (224, 32, 0.001, 15)
    assert [s.value() for s in sp.fracs] == [80, 10, 10]
    assert all(cb.isChecked() for cb in sp.model_checks.values())
    sp.recipe.setCurrentIndex(sp.recipe.findData("shipped"))
    assert sp.epochs.value() == 40
    sp.recipe.setCurrentIndex(sp.recipe.findData("paper"))
    assert sp.epochs.value() == 15

    run = tmp_path / "run"
    small_setup(wiz, run, models=("lstm",))  # the estimate is measured for the LSTM only (time)
    sp.start_estimate()
    qtbot.waitUntil(lambda: not sp._estimating, timeout=WAIT)
    assert set(sp._step_s) == {"lstm"} and sp._overhead_s is not None
    assert "Total: about" in sp.estimate_text.text() and "LSTM:" in sp.estimate_text.text()
    assert wiz.state.estimate_s["lstm"] > 0
    small_setup(wiz, run)  # all three models for the run itself
    assert "measure again" in sp.estimate_text.text()

    wiz.next()
    tp = wiz.train_page
    assert wiz.currentPage() is tp
    qtbot.waitUntil(lambda: tp.running, timeout=WAIT)
    assert not wiz.button(QWizard.WizardButton.BackButton).isEnabled()
    qtbot.waitUntil(lambda: not tp.running, timeout=WAIT)
    assert tp.done, tp.message.text()
    kinds = {e.kind for e in tp.events}
    assert {"data", "batch", "epoch", "model_done", "done"} <= kinds
    for fw in tp.figures.values():  # curves per model (a hidden tab is drawn when shown)
        tp.tabs.setCurrentWidget(fw)
        assert len(fw.figure.axes) == 2 and fw.figure.axes[0].lines
    assert "Finished" in tp.status.text()
    assert wiz.button(QWizard.WizardButton.NextButton).isEnabled()

    wiz.next()
    rp = wiz.results_page
    assert wiz.currentPage() is rp
    data = json.loads((run / "data.json").read_text())
    n_test = sum(data["split_counts"]["test"].values())
    assert set(rp.confusions) == {"resnet50", "lstm", "resnet50_lstm"}
    for cm in rp.confusions.values():
        assert sum(cm.values()) == n_test
    assert len(rp.confusion_fig.figure.axes) == 3
    assert rp.table6.rowCount() == 6 and rp.table2.rowCount() == 6  # this run + paper per model
    assert "0.93" in [rp.table6.item(r, 2).text() for r in range(6)]  # the paper's ResNet50 accuracy

    wiz.next()
    fp = wiz.finish_page
    assert wiz.currentPage() is fp
    assert set(fp.model_paths) == {"resnet50", "lstm", "resnet50_lstm"}
    assert all(p.is_file() for p in fp.model_paths.values())
    assert (run / "report.md").is_file() and (run / "report.json").is_file()
    written = fp.export(tmp_path / "export" / "my_report.html")
    assert [p.name for p in written] == ["my_report.html", "my_report.md", "my_report.json"]
    html = written[0].read_text()
    assert "Table 6" in html and "data:image/png;base64," in html and "Research use only" in html
    assert fp.export(tmp_path / "export" / "my_report.pdf")[0].read_bytes()[:4] == b"%PDF"
    assert no_tmp_files(tmp_path / "export")

    # "Use the ResNet50-LSTM model now" switches the main window's model
    assert fp.selected_arch() == "resnet50_lstm"
    assert fp.use_button.isEnabled() and "ResNet50-LSTM" in fp.use_button.text()
    # it asks first (the figures rest on a handful of test images); Cancel keeps the window's model
    from xray_gui.model_switch import ModelSwitchDialog

    said, answer = [], {"b": None}

    def fake_exec(dlg):
        said.append(dlg.text())
        (dlg.session_button if answer["b"] == "session" else dlg.cancel_button).click()

    monkeypatch.setattr(ModelSwitchDialog, "exec", fake_exec)
    remembered = win.settings.model_path
    fp.use_button.click()
    assert said and "say little" in said[0] and not win.models.busy
    assert "keeps its current model" in fp.message.text()
    answer["b"] = "session"
    with qtbot.waitSignal(win.models.changed, timeout=WAIT):
        fp.use_button.click()
    assert "for this session only" in fp.message.text() and win.settings.model_path == remembered
    assert win.models.path == run / "models" / "resnet50_lstm.safetensors"
    assert win.models.classifier.info.arch == "resnet50_lstm"
    assert win.models.classifier.info.input_size == 32
    wiz.close()
    win.close()
    assert QThreadPool.globalInstance().waitForDone(WAIT)


def test_cancel_resume_and_close_mid_run(qtbot, tiny_data, tmp_path):
    from xray_gui.wizard.train_page import CANCELLED_TEXT

    wiz = make_wizard(qtbot)
    read_folder(qtbot, wiz, tiny_data)
    wiz.next()
    run = tmp_path / "run"
    small_setup(wiz, run, models=("resnet50", "lstm"), epochs=2)
    wiz.setup_page.batch_size.setValue(2)  # 6 batches per epoch
    wiz.next()
    tp = wiz.train_page

    def batches(epoch):
        return sum(1 for e in tp.events if e.kind == "batch" and e.model == "resnet50" and e.epoch == epoch)

    # cancel during ResNet50's second epoch: its first epoch is checkpointed, the model is unfinished
    qtbot.waitUntil(lambda: batches(2) > 0, timeout=WAIT)
    tp.cancel_button.click()
    qtbot.waitUntil(lambda: not tp.running, timeout=WAIT)
    assert tp.cancelled and not tp.done
    assert tp.message.isVisible() and tp.message.text() == CANCELLED_TEXT
    assert (run / "checkpoints" / "resnet50_last.pt").is_file()
    assert not (run / "models" / "resnet50.safetensors").exists()
    assert not (run / "models" / "lstm.safetensors").exists()
    assert not (run / "resnet50" / "metrics.json").exists()
    assert no_tmp_files(run)

    # the wizard is usable again: Back works, and Next resumes the same run after epoch 1
    back = wiz.button(QWizard.WizardButton.BackButton)
    assert back.isEnabled() and tp.resume_button.isVisible()
    back.click()
    assert wiz.currentPage() is wiz.setup_page
    wiz.next()
    qtbot.waitUntil(lambda: any("resuming after epoch 1" in e.message for e in tp.events), timeout=WAIT)
    assert len(tp.histories["resnet50"]) == 1  # the finished epoch's curve point is back
    qtbot.waitUntil(lambda: batches(2) > 0, timeout=WAIT)

    # closing the wizard mid-run stops the run; it closes once the worker has ended
    wiz.close()
    assert wiz.isVisible() and "Stopping" in tp.status.text()
    qtbot.waitUntil(lambda: not wiz.isVisible(), timeout=WAIT)
    assert not tp.running and tp.cancelled
    assert QThreadPool.globalInstance().waitForDone(WAIT)
    assert not (run / "models" / "resnet50.safetensors").exists()
    assert no_tmp_files(run)


def test_training_error_is_shown_and_the_wizard_stays_usable(qtbot, tiny_data, tmp_path):
    """A weights file that is not a ResNet50: the trainer's reason, in plain words."""
    wiz = make_wizard(qtbot)
    read_folder(qtbot, wiz, tiny_data)
    wiz.next()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not weights")
    small_setup(wiz, tmp_path / "run", models=("resnet50",))
    sp = wiz.setup_page
    sp.init_buttons["file"].setChecked(True)
    sp.init_file.setText(str(bad))
    wiz.next()
    tp = wiz.train_page
    qtbot.waitUntil(lambda: bool(tp.failed) and not tp.running, timeout=WAIT)
    assert not tp.done and not tp.cancelled
    assert "Cannot read weights file bad.pth" in tp.message.text()
    assert any("Training stopped" in n.text for n in wiz.notifier.history)
    assert wiz.button(QWizard.WizardButton.BackButton).isEnabled()
    assert tp.resume_button.isVisible() and tp.resume_button.text() == "Try again"
    wiz.close()


def test_a_pytorch_runtime_error_reaches_the_page(qtbot):
    """superqt swallows a RuntimeError escaping a generator worker (no errored,
    no finished); the app's one worker class re-types it so it reaches the page."""
    from xray_gui.workers import Jobs, Notifier

    def failing():
        yield 1
        raise RuntimeError("CUDA out of memory (simulated)")

    def task():
        yield from failing()

    jobs = Jobs(Notifier(dialogs=False))
    got, errors, done = [], [], []
    jobs.start("t", task, on_yield=got.append, on_error=lambda e: errors.append(e) or True,
               on_done=lambda: done.append(True))
    qtbot.waitUntil(lambda: bool(done), timeout=WAIT)
    assert got == [1]
    assert errors and "CUDA out of memory (simulated)" in str(errors[0])
