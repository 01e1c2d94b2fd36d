"""The DICOM node in the app (pytest-qt, offscreen): network settings kept in
QSettings with a working "Test connection"; images sent by dcmtk's storescu
received, classified and shown grouped by study; a study found in Orthanc,
retrieved, classified and its SR + SC sent back into the same study (checked
through Orthanc's REST API)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest

pytest.importorskip("pytestqt")

from dicom_peers import MODALITY_AET, NODE_AET, ORTHANC_AET, free_port, orthanc, radiographs, require_tool  # noqa: E402,F401
from PySide6.QtCore import QThreadPool  # noqa: E402

WAIT = 120_000
SR_CLASS, SC_CLASS, CR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.1"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    import torch

    from training.model.modelfile import ModelInfo, save_model
    from training.model.networks import build_model

    torch.manual_seed(0)
    torch.set_num_threads(1)
    return save_model(build_model("resnet50", "scratch", input_size=64),
                      ModelInfo(arch="resnet50", input_size=64, name="Node model", version="1"),
                      tmp_path_factory.mktemp("m") / "node.safetensors")


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch, model_file):
    monkeypatch.setenv("XRAY_SETTINGS", str(tmp_path / "settings.ini"))
    from training.inference.classifier import Classifier
    from xray_gui.main_window import MainWindow

    win = MainWindow(dialogs=False)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.models.changed, timeout=WAIT):
        win.models.use(Classifier.from_file(model_file, device="cpu", decode_workers=1), model_file)
    yield win
    win.close()
    assert QThreadPool.globalInstance().activeThreadCount() == 0


def _save(win, tmp_path, peers=(), port=None):
    from training.dicom_node.config import NodeConfig
    from xray_gui.network_settings import save_network_config

    cfg = NodeConfig(ae_title=NODE_AET, port=port or free_port(), store=tmp_path / "store", peers=list(peers),
                     allowed_calling_ae_titles=[MODALITY_AET], retry_seconds=1, retry_max_seconds=2)
    save_network_config(win.settings, cfg)
    return cfg


def test_settings_dialog_round_trip_and_test_connection(qtbot, window, tmp_path):
    from training.dicom_node.config import Peer
    from training.dicom_node.service import Node
    from xray_gui.network_settings import NetworkSettingsDialog, load_network_config

    default = load_network_config(window.settings)
    assert default.host == "127.0.0.1" and not default.accept_any_calling_ae
    # a peer to test against: a second node answering C-ECHO
    other = Node(_other_config(tmp_path), window.models.classifier)
    port = other.start()
    try:
        dlg = NetworkSettingsDialog(default, window.jobs, window)
        qtbot.addWidget(dlg)
        assert "127.0.0.1 only" in dlg.listen_note.text()
        dlg.ae_title.setText("MYNODE")
        dlg.callers.setText("MODALITY1, CR_ROOM2")
        dlg.add_peer("PACS", "OTHER", "127.0.0.1", port, True, True)
        dlg.test_connection()
        qtbot.waitUntil(lambda: "answered in" in dlg.result.text(), timeout=WAIT)
        assert dlg.result.text().startswith("PACS answered in ") and dlg.result.text().endswith(" ms.")
        closed = free_port()
        dlg.add_peer("Down", "DOWN", "127.0.0.1", closed, False, True)
        dlg.test_connection()
        qtbot.waitUntil(lambda: "No answer" in dlg.result.text(), timeout=WAIT)
        assert dlg.result.text() == f"No answer from 127.0.0.1:{closed} - is the port right, and is Down running?"
        from xray_gui.network_settings import save_network_config

        save_network_config(window.settings, dlg.config())
        dlg.close()
    finally:
        other.stop()
    back = load_network_config(window.settings)
    assert back.ae_title == "MYNODE" and back.allowed_calling_ae_titles == ["MODALITY1", "CR_ROOM2"]
    assert [(p.ae_title, p.port) for p in back.peers] == [("OTHER", port), ("DOWN", closed)]
    assert back.peers[1].roles == ("results",)
    assert isinstance(back.peers[0], Peer)


def _other_config(tmp_path):
    from training.dicom_node.config import NodeConfig

    return NodeConfig(ae_title="OTHER", port=0, store=tmp_path / "other", allowed_calling_ae_titles=["MYNODE"])


def test_receive_from_storescu_into_the_worklist(qtbot, window, tmp_path, dicom_dir):
    storescu = require_tool("storescu", "dcmtk")
    cfg = _save(window, tmp_path)
    window.actions_by_name["receive"].trigger()
    assert window.actions_by_name["receive"].isChecked() and window.dicom_network.controller.listening
    imgs = radiographs(tmp_path / "src", dicom_dir, 2, patient="GUI-RX", name="Gui^Receive")
    run = subprocess.run([storescu, "-R", "-xy", "-aet", MODALITY_AET, "-aec", NODE_AET, "127.0.0.1", str(cfg.port),
                          *map(str, imgs)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    model = window.batch_panel.model
    qtbot.waitUntil(lambda: len(model.rows) == 2 and all(r.pred is not None for r in model.rows), timeout=WAIT)
    study = str(pydicom.dcmread(imgs[0]).StudyInstanceUID)
    assert {r.info.study_uid for r in model.rows} == {study}  # grouped as one study
    assert window.batch_dock.isVisible()
    window.actions_by_name["receive"].trigger()  # off
    assert not window.dicom_network.controller.listening


def test_query_retrieve_classify_and_send_back_to_orthanc(qtbot, window, tmp_path, dicom_dir, orthanc):
    from training.dicom_node.config import ROLE_QUERY, ROLE_RESULTS, Peer

    imgs = radiographs(tmp_path / "src", dicom_dir, 2, patient="GUI-QR", name="Gui^Query")
    for f in imgs:
        orthanc.upload(f)
    study = str(pydicom.dcmread(imgs[0]).StudyInstanceUID)
    _save(window, tmp_path, peers=[Peer("PACS", ORTHANC_AET, "127.0.0.1", orthanc.dicom_port,
                                        (ROLE_QUERY, ROLE_RESULTS))])
    dlg = window.dicom_network.show_query_retrieve()
    dlg.patient_id.setText("GUI-QR")
    dlg.search()
    qtbot.waitUntil(lambda: dlg.table.rowCount() == 1, timeout=WAIT)
    assert dlg.table.item(0, 0).text() == "GUI-QR" and dlg.matches[0].study_uid == study
    dlg.table.selectRow(0)
    dlg.retrieve_selected()
    model = window.batch_panel.model
    qtbot.waitUntil(lambda: len(model.rows) == 2 and all(r.pred is not None for r in model.rows), timeout=WAIT)
    assert "2 image(s) retrieved from PACS" in dlg.status.text()
    store = window.dicom_network.controller.store.root
    qtbot.waitUntil(lambda: len(list((store / "sent").glob("*/*.dcm"))) == 4, timeout=WAIT)
    classes = sorted(i["SOPClassUID"] for i in orthanc.study_instances(study))
    assert classes == sorted([CR_CLASS] * 2 + [SR_CLASS] * 2 + [SC_CLASS] * 2)
    dlg.close()


def test_send_failure_is_shown_and_retry_sends(qtbot, window, tmp_path, dicom_dir, orthanc):
    from training.dicom_node.config import ROLE_RESULTS, Peer
    from training.dicom_node.store import NodeStore

    imgs = radiographs(tmp_path / "src", dicom_dir, 1, patient="GUI-RETRY")
    ds = pydicom.dcmread(imgs[0])
    _save(window, tmp_path, peers=[Peer("Archive", ORTHANC_AET, "127.0.0.1", free_port(), (ROLE_RESULTS,))])
    NodeStore(tmp_path / "store").put(imgs[0].read_bytes(), ds.StudyInstanceUID, ds.SOPInstanceUID)
    ctrl = window.dicom_network.controller
    assert ctrl.ensure_worker()
    with qtbot.waitSignal(ctrl.sendProblems, timeout=WAIT, check_params_cb=lambda p: bool(p)) as sig:
        pass
    assert "No answer from 127.0.0.1" in next(iter(sig.args[0].values()))
    assert any("not sent yet" in n.text for n in window.notifier.history)
    _save(window, tmp_path, peers=[Peer("Archive", ORTHANC_AET, "127.0.0.1", orthanc.dicom_port, (ROLE_RESULTS,))])
    ctrl.node.config = ctrl.config
    ctrl.node.sender.config = ctrl.node.config
    model = window.batch_panel.model
    qtbot.waitUntil(lambda: len(model.rows) == 1, timeout=WAIT)
    window.batch_panel.select_source_row(0)
    assert window.dicom_network.selected_study_key() == pytest.importorskip("training.dicom_node.store").uid_key(
        str(ds.StudyInstanceUID))
    with qtbot.waitSignal(ctrl.sent, timeout=WAIT) as sig:  # sent off the GUI thread
        window.actions_by_name["send_study"].trigger()  # "send the results of this study" (per study)
    assert sig.args[0] == {} and ctrl.check_outbox() == {}
    assert any(n.text == "The results of this study were sent to the results destination."
               for n in window.notifier.history)
    with qtbot.waitSignal(ctrl.sent, timeout=WAIT):
        window.actions_by_name["retry_send"].trigger()  # nothing left: says so
    assert window.notifier.history[-1].text == "All results were sent to the results destination."
    classes = sorted(i["SOPClassUID"] for i in orthanc.study_instances(str(ds.StudyInstanceUID)))
    assert classes == sorted([SR_CLASS, SC_CLASS])


def test_query_retrieve_with_c_move(qtbot, window, tmp_path, dicom_dir, orthanc):
    from training.dicom_node.config import ROLE_QUERY, Peer

    imgs = radiographs(tmp_path / "src", dicom_dir, 1, patient="GUI-MOVE")
    orthanc.upload(imgs[0])
    _save(window, tmp_path, peers=[Peer("PACS", ORTHANC_AET, "127.0.0.1", orthanc.dicom_port, (ROLE_QUERY,))],
          port=orthanc.node_port)
    dlg = window.dicom_network.show_query_retrieve()
    dlg.patient_id.setText("GUI-MOVE")
    dlg.search()
    qtbot.waitUntil(lambda: dlg.table.rowCount() == 1, timeout=WAIT)
    dlg.table.selectRow(0)
    dlg.use_move.setChecked(True)
    dlg.retrieve_selected()
    assert window.dicom_network.controller.listening  # C-MOVE needs the receiving port
    model = window.batch_panel.model
    qtbot.waitUntil(lambda: len(model.rows) == 1 and model.rows[0].pred is not None, timeout=WAIT)
    qtbot.waitUntil(lambda: "1 image(s) retrieved from PACS" in dlg.status.text(), timeout=WAIT)
    dlg.close()
