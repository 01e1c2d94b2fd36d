"""Switching the model is a deliberate step: File → Open Model… (and the
wizard's "Use … model now") ask first, with both models' test figures; "this
session only" does not change the model of the next start; the batch table's
results of the old model turn stale.  Also: the About box as tables, wizard
messages without raw HTML entities, forced ("Classify anyway") results grey
with their reason in the table.  pytest-qt, offscreen, tiny 64 px models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("superqt")

from PySide6.QtCore import Qt, QThreadPool  # noqa: E402

WAIT = 60_000


def _model(path: Path, seed: int, version: str, metrics: dict, threshold: float = 0.5) -> Path:
    if not path.exists():
        import torch

        from training.model.modelfile import ModelInfo, save_model
        from training.model.networks import build_model

        torch.manual_seed(seed)
        save_model(build_model("resnet50", "scratch", input_size=64),
                   ModelInfo(arch="resnet50", input_size=64, name="Switch model", version=version,
                             threshold=threshold, metrics=metrics), path)
    return path


def _metrics(tp, fn, fp, tn):
    n = tp + fn + fp + tn
    return {"n": n, "accuracy": (tp + tn) / n, "recall": tp / (tp + fn), "roc_auc": 0.9123456789012345,
            "ci95": {"accuracy": [0.8012345678901234, 0.95], "recall": [0.7, 0.99], "specificity": [0.7, 0.99],
                     "roc_auc": [0.85, 0.96]},
            "confusion": {"tp": tp, "fn": fn, "fp": fp, "tn": tn}}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    return (_model(base / "switch_a.safetensors", 0, "1", _metrics(180, 20, 15, 185), threshold=0.3),
            _model(base / "switch_b.safetensors", 1, "2", _metrics(1, 1, 1, 1)))  # tested on 4 images


@pytest.fixture(scope="module")
def classifier_a(model_files):
    from training.inference.classifier import Classifier

    return Classifier.from_file(model_files[0], device="cpu", decode_workers=1)


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch, classifier_a, model_files):
    monkeypatch.setenv("XRAY_SETTINGS", str(tmp_path / "settings.ini"))
    from xray_gui.main_window import MainWindow

    win = MainWindow(dialogs=False)
    qtbot.addWidget(win)
    win.show()
    win.settings.model_path = str(model_files[0])  # A is the remembered default
    classifier_a.threshold = classifier_a.info.threshold
    with qtbot.waitSignal(win.models.changed, timeout=WAIT):
        win.models.use(classifier_a, model_files[0], remember=True)
    yield win
    win.close()
    assert QThreadPool.globalInstance().activeThreadCount() == 0


@pytest.fixture
def answer(monkeypatch):
    """Answer the switch dialog with a button (None: Cancel); the dialogs shown are kept."""
    from xray_gui.model_switch import ModelSwitchDialog

    shown, choice = [], {"button": None}

    def fake_exec(dlg):
        shown.append(dlg.text())
        b = {"session": dlg.session_button, "default": dlg.default_button}.get(choice["button"], dlg.cancel_button)
        b.click()
        return dlg.result()

    monkeypatch.setattr(ModelSwitchDialog, "exec", fake_exec)

    def set_answer(button):
        choice["button"] = button
        return shown
    return set_answer


def _open_model_menu(window, monkeypatch, path):
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    window.actions_by_name["open_model"].trigger()


def test_open_model_asks_and_cancel_keeps_the_current_model(window, qtbot, monkeypatch, answer, model_files):
    shown = answer(None)
    before = window.models.classifier
    _open_model_menu(window, monkeypatch, model_files[1])
    assert len(shown) == 1  # asked before anything was loaded
    assert not window.models.busy and window.models.classifier is before
    assert window.models.path == model_files[0] and window.settings.model_path == str(model_files[0])
    text = shown[0]
    # both models side by side, with the candidate's tiny test set called out
    assert "Current model" in text and "Candidate" in text
    assert "Switch model v1" in text and "Switch model v2" in text
    assert "These figures rest on 4 test images" in text and "say little" in text
    assert "4 (2 COVID, 2 Normal)" in text and "400 (200 COVID, 200 Normal)" in text
    assert "Accuracy" in text and "Sensitivity" in text and "Specificity" in text and "ROC AUC" in text
    # the current model's file figures are at 0.5, its threshold in use is 0.3: said so
    assert "not the 0.300 in use" in text
    assert "0.9123456789" not in text and "0.91 " not in text.replace("0.912", "")
    assert "not calibrated" in text


def test_session_only_does_not_change_the_default(window, qtbot, monkeypatch, answer, model_files):
    answer("session")
    with qtbot.waitSignal(window.models.changed, timeout=WAIT):
        _open_model_menu(window, monkeypatch, model_files[1])
    assert window.models.path == model_files[1] and window.models.classifier.info.version == "2"
    assert window.settings.model_path == str(model_files[0])
    # reloading it on another device keeps it "this session only"
    window.models.device = "auto"
    with qtbot.waitSignal(window.models.changed, timeout=WAIT):
        window.models.set_device("cpu")
    assert window.settings.model_path == str(model_files[0]) and window.settings.device == "cpu"


def test_make_default_is_remembered(window, qtbot, monkeypatch, answer, model_files):
    answer("default")
    with qtbot.waitSignal(window.models.changed, timeout=WAIT):
        _open_model_menu(window, monkeypatch, model_files[1])
    assert window.settings.model_path == str(model_files[1])


def test_switch_marks_the_old_models_batch_results_stale(window, qtbot, monkeypatch, answer, model_files,
                                                          cxr1000, tmp_path):
    from xray_gui.batch_table import COL_P, COL_PRED, COL_STATUS

    d = tmp_path / "batch"
    d.mkdir()
    for f in sorted((cxr1000 / "Normal").glob("*.png"))[:2]:
        shutil.copy(f, d / f.name)
    with qtbot.waitSignal(window.batch.finished, timeout=WAIT):
        window.open_batch([d])
    m = window.batch_panel.model
    ok = [i for i, r in enumerate(m.rows) if r.status == "ok"]
    assert ok and not any(m.is_stale(m.rows[i]) for i in ok)
    shown = answer("session")
    with qtbot.waitSignal(window.models.changed, timeout=WAIT):
        _open_model_menu(window, monkeypatch, model_files[1])
    assert f"{len(ok)} result" in shown[0] and "marked stale" in shown[0]
    for i in ok:
        assert m.is_stale(m.rows[i])
        assert m.data(m.index(i, COL_PRED)).endswith("(stale)")
        assert m.data(m.index(i, COL_STATUS)).startswith("stale: computed by Switch model v1")
        assert m.data(m.index(i, COL_P), Qt.ItemDataRole.ForegroundRole) is not None


def test_wizard_finish_page_reports_a_cancelled_switch(window, qtbot, monkeypatch, answer, model_files):
    answer(None)
    from xray_gui.model_switch import switch_model

    assert switch_model(window, model_files[1]) is None
    assert window.models.path == model_files[0]
    assert "not switched" in window.notifier.history[-1].text.lower()


# ------------------------------------------------------------------ About box
def test_about_box_is_a_readable_table_at_the_threshold_in_use(window):
    from xray_gui.dialogs import model_info_html

    window.models.classifier.threshold = 0.3
    out = model_info_html(window.models.classifier)
    assert "{" not in out and "<pre>" not in out  # no raw JSON
    assert "0.9123456789012345" not in out and "0.8012345678901234" not in out
    assert "Test metrics at threshold 0.500" in out and "not at the 0.300 in use" in out
    assert "0.912 (0.85-0.96)" in out  # AUC with its 95 % CI
    assert "Threshold in use</b></td><td>0.300" in out


# ------------------------------------------------------------------ wizard wording
def test_wizard_messages_show_no_html_entities(qtbot):
    from PySide6.QtGui import QTextDocument

    from xray_gui.wizard.common import MessageLabel, esc

    lab = MessageLabel()
    qtbot.addWidget(lab)
    lab.show_message(f"This folder cannot be used: {esc(chr(39) + 'Normal' + chr(39))} sub-folder missing", "error")
    assert lab.textFormat() == Qt.TextFormat.RichText
    doc = QTextDocument()
    doc.setHtml(lab.text())
    assert "'Normal'" in doc.toPlainText() and "&#x27;" not in doc.toPlainText()


# ------------------------------------------------------------------ forced results in the table and the panel
def test_forced_result_is_grey_with_its_reason_in_the_table_and_panel(qtbot):
    from training.inference.result import FORCED_NOTE, Prediction
    from xray_gui.batch_table import COL_P, COL_PRED, COL_STATUS, STALE_TEXT, BatchTableModel
    from xray_gui.prediction_panel import NOT_VALID_LABEL, PredictionPanel

    m = BatchTableModel()
    m.reset([Path("ct.png"), Path("cxr.png")])
    forced = Prediction(path=Path("ct.png"), status="ok", label="COVID", p_covid=0.81, threshold=0.5, valid=False,
                        warnings=[FORCED_NOTE])
    m.set_result(0, forced, None)
    m.set_result(1, Prediction(path=Path("cxr.png"), status="ok", label="COVID", p_covid=0.81, threshold=0.5), None)
    assert m.data(m.index(0, COL_PRED)) == "not valid"
    assert m.data(m.index(0, COL_P)) == "0.810 (not valid)"
    assert m.data(m.index(0, COL_STATUS)).startswith("not valid: classified anyway")
    assert m.data(m.index(0, COL_PRED), Qt.ItemDataRole.ForegroundRole) is STALE_TEXT
    assert m.data(m.index(1, COL_P)) == "0.810" and m.data(m.index(1, COL_STATUS)) == "ok"
    row = next(r for r in __import__("csv").DictReader(m.csv_text([0], forced.as_row().keys()).splitlines()))
    assert row["reason"].startswith("Classified anyway") and row["label"] != "COVID"
    panel = PredictionPanel()
    qtbot.addWidget(panel)
    panel.show_prediction("COVID", 0.81, 0.5, "COVID", valid=False)
    assert panel.label.text() == NOT_VALID_LABEL and "not valid" in panel.p_text.text()
    from xray_gui.prediction_panel import NEGATIVE_COLOUR, POSITIVE_COLOUR

    assert POSITIVE_COLOUR.name() not in panel.label.styleSheet()
    assert NEGATIVE_COLOUR.name() not in panel.label.styleSheet()
