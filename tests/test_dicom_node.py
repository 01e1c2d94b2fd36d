"""The DICOM node (training.dicom_node, xray-node) against real peers: dcmtk's
echoscu/storescu as a modality, Orthanc as the PACS to query/retrieve from and
as the results destination (checked through Orthanc's REST API).  A missing
dcmtk/Orthanc fails under CI=true and skips otherwise (tests/dicom_peers.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
import torch
from dicom_peers import MODALITY_AET, NODE_AET, ORTHANC_AET, free_port, orthanc, radiographs, require_tool  # noqa: F401

from training.dicom_node.config import (
    ROLE_QUERY,
    ROLE_RESULTS,
    ConfigError,
    NodeConfig,
    Peer,
    config_from_dict,
    load_config,
)
from training.dicom_node.scu import StudyQuery, echo, find_studies, retrieve_study
from training.dicom_node.service import Node
from training.dicom_node.store import NodeStore, uid_key
from training.inference.classifier import Classifier
from training.model.modelfile import ModelInfo, save_model
from training.model.networks import build_model

REPO = Path(__file__).resolve().parents[1]
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
CR_CLASS = "1.2.840.10008.5.1.4.1.1.1"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model("resnet50", "scratch", input_size=64)
    return save_model(model, ModelInfo(arch="resnet50", input_size=64, threshold=0.5),
                      tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def classifier(tiny_model):
    torch.set_num_threads(1)
    return Classifier.from_file(tiny_model, device="cpu", decode_workers=1)


def config(tmp_path: Path, peers=(), **kw) -> NodeConfig:
    kw.setdefault("port", 0)
    return NodeConfig(ae_title=NODE_AET, host="127.0.0.1", store=tmp_path / "store", peers=list(peers),
                      allowed_calling_ae_titles=[MODALITY_AET], retry_seconds=0.5, retry_max_seconds=2,
                      timeout_seconds=15, **kw)


def wait_for(cond, timeout: float = 180.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def files(store: Path, stage: str, suffix: str = ".dcm") -> list[Path]:
    return sorted(p for p in (store / stage).glob(f"*/*{suffix}"))


# ------------------------------------------------------------------ config
def test_config_file_round_trip_and_plain_errors(tmp_path):
    cfg = config(tmp_path, peers=[Peer("PACS", ORTHANC_AET, "10.0.0.5", 104, (ROLE_QUERY, ROLE_RESULTS))])
    path = tmp_path / "node.toml"
    path.write_text(cfg.to_toml())
    back = load_config(path)
    assert (back.ae_title, back.host, back.port, back.store) == (NODE_AET, "127.0.0.1", 0, tmp_path / "store")
    assert back.peers == cfg.peers and back.allowed_calling_ae_titles == [MODALITY_AET]
    assert back.accept_any_calling_ae is False
    # defaults are the safe ones: loopback only, configured callers only
    default = config_from_dict({})
    assert default.host == "127.0.0.1" and not default.accept_any_calling_ae
    assert default.calling_ae_allowed("ANYBODY") is False
    assert back.calling_ae_allowed(MODALITY_AET) and back.calling_ae_allowed(ORTHANC_AET)  # peers may C-MOVE to us
    assert back.peer(ROLE_RESULTS).ae_title == ORTHANC_AET
    with pytest.raises(ConfigError, match="not valid: use 1 to 16"):
        config_from_dict({"node": {"ae_title": "A_TITLE_MUCH_TOO_LONG"}})
    with pytest.raises(ConfigError, match="Unknown setting.*prot"):
        config_from_dict({"node": {"prot": 104}})
    with pytest.raises(ConfigError, match="out of range"):
        config_from_dict({"peers": [{"ae_title": "X", "host": "h", "port": 70000}]})
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="No results destination"):
        config(tmp_path).peer(ROLE_RESULTS)


# -------------------------------------------------------------------- echo
def test_test_connection_says_what_happened(tmp_path, classifier):
    node = Node(config(tmp_path), classifier)
    node.start()
    try:
        modality = NodeConfig(ae_title=MODALITY_AET, store=tmp_path / "m")
        ok = echo(modality, Peer("this node", NODE_AET, "127.0.0.1", node.port))
        assert ok.ok and ok.message.startswith("this node answered in ") and ok.message.endswith(" ms.")
        closed = free_port()
        down = echo(modality, Peer("PACS", "PACS", "127.0.0.1", closed))
        assert not down.ok and down.message == (f"No answer from 127.0.0.1:{closed} - is the port right, "
                                                "and is PACS running?")
        stranger = NodeConfig(ae_title="STRANGER", store=tmp_path / "s")
        refused = echo(stranger, Peer("this node", NODE_AET, "127.0.0.1", node.port))
        assert not refused.ok and "refused the connection" in refused.message and "'STRANGER'" in refused.message
        unknown = echo(modality, Peer("PACS", "PACS", "no-such-host.invalid", 104))
        assert not unknown.ok and "is not known" in unknown.message
    finally:
        node.stop()


# ---------------------------------------------------- dcmtk as the modality
def test_dcmtk_modality_sends_to_node(tmp_path, dicom_dir, classifier, caplog):
    echoscu = require_tool("echoscu", "dcmtk")
    storescu = require_tool("storescu", "dcmtk")
    caplog.set_level("INFO", logger="xray_node")
    cfg = config(tmp_path)
    node = Node(cfg, classifier)
    port = node.start()
    try:
        run = subprocess.run([echoscu, "-aet", MODALITY_AET, "-aec", NODE_AET, "127.0.0.1", str(port)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        imgs = radiographs(tmp_path / "src", dicom_dir, 2, patient="PID-DCMTK", name="Dcmtk^Patient")
        study = pydicom.dcmread(imgs[0]).StudyInstanceUID
        run = subprocess.run([storescu, "-R", "-xy", "-aet", MODALITY_AET, "-aec", NODE_AET, "127.0.0.1", str(port), *map(str, imgs)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        # a CT image (not a radiograph) is refused cleanly at association time, the sender is told
        ct = dicom_dir / "other01_pydicom_CT_small.dcm"
        run = subprocess.run([storescu, "-R", "-xy", "-aet", MODALITY_AET, "-aec", NODE_AET, "127.0.0.1", str(port), str(ct)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode != 0 or "no presentation context" in (run.stdout + run.stderr).lower()
        # an AE title that is not configured cannot send
        run = subprocess.run([storescu, "-R", "-xy", "-aet", "STRANGER", "-aec", NODE_AET, "127.0.0.1", str(port), str(imgs[0])],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode != 0
        srs = wait_for(lambda: len(files(cfg.store, "outbox", "_SR.dcm")) == 2 and files(cfg.store, "outbox", "_SR.dcm"),
                       what="2 SRs in the outbox")
        assert len(files(cfg.store, "images")) == 2 and not files(cfg.store, "inbox")
        for sr in srs:
            ds = pydicom.dcmread(sr)
            assert ds.SOPClassUID == SR_CLASS and ds.StudyInstanceUID == study and ds.PatientID == "PID-DCMTK"
        assert (cfg.store / "outbox" / uid_key(study)).is_dir()
        # dcmtk's findscu asks what the node holds (C-FIND SCP over the local store)
        findscu = require_tool("findscu", "dcmtk")
        out = tmp_path / "find"
        out.mkdir()
        base = [findscu, "-S", "-aet", MODALITY_AET, "-aec", NODE_AET, "127.0.0.1", str(port), "-X", "-od", str(out),
                "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-k", "NumberOfStudyRelatedInstances",
                "-k", "ModalitiesInStudy=CR"]
        run = subprocess.run(base + ["-k", "PatientID=PID-DC*", "-k", "StudyDate=20240101-20241231"],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr
        answers = [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
        assert [(a.StudyInstanceUID, int(a.NumberOfStudyRelatedInstances)) for a in answers] == [(study, 2)]
        for p in out.glob("rsp*.dcm"):
            p.unlink()
        run = subprocess.run(base + ["-k", "PatientID=SOMEONE-ELSE"], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0 and not list(out.glob("rsp*.dcm"))
    finally:
        node.stop()
    text = caplog.text
    assert "refused an association from AE 'STRANGER'" in text
    assert "offered only CT Image Storage: refused" in text and "takes CR, DX and chest Secondary Capture" in text
    assert "PID-DCMTK" not in text and "Dcmtk" not in text and study not in text  # no patient identifiers


# -------------------------------------------- Orthanc: Q/R source and results
def test_orthanc_query_retrieve_classify_and_send_back(tmp_path, orthanc, dicom_dir, classifier):
    imgs = radiographs(tmp_path / "src", dicom_dir, 2, patient="QR-001", name="Query^Retrieve")
    for f in imgs:
        assert orthanc.upload(f)["Status"] == "Success"
    study = str(pydicom.dcmread(imgs[0]).StudyInstanceUID)
    pacs = Peer("PACS", ORTHANC_AET, "127.0.0.1", orthanc.dicom_port, (ROLE_QUERY, ROLE_RESULTS))
    cfg = config(tmp_path, peers=[pacs])
    node = Node(cfg, classifier)
    node.start()
    try:
        assert echo(cfg, pacs).ok
        by_id = find_studies(cfg, pacs, StudyQuery(patient_id="QR-001"))
        assert [m.study_uid for m in by_id] == [study] and by_id[0].instances == 2
        by_name = find_studies(cfg, pacs, StudyQuery(patient_name="Query", date_from="20240101", date_to="20241231",
                                                     accession="ACC-QR-001"))
        assert [m.study_uid for m in by_name] == [study]
        assert find_studies(cfg, pacs, StudyQuery(patient_id="QR-001", date_from="20250101")) == []
        steps = []
        got = retrieve_study(cfg, pacs, study, node.store, on_received=lambda p: node._wake.set(),
                             progress=lambda done, total: steps.append((done, total)))
        assert got.completed == 2 and len(got.stored) == 2 and not got.cancelled and steps[-1] == (2, 2)
        wait_for(lambda: len(files(cfg.store, "sent")) == 4, what="2 SR + 2 SC acknowledged by Orthanc")
        assert not files(cfg.store, "outbox")
    finally:
        node.stop()
    there = orthanc.study_instances(study)
    classes = sorted(i["SOPClassUID"] for i in there)
    assert classes == sorted([CR_CLASS] * 2 + [SR_CLASS] * 2 + [SC_CLASS] * 2), there
    assert {i["StudyInstanceUID"] for i in there} == {study}  # results are in the same study


def test_orthanc_c_move_to_the_node(tmp_path, orthanc, dicom_dir, classifier):
    imgs = radiographs(tmp_path / "src", dicom_dir, 1, patient="MOVE-001")
    orthanc.upload(imgs[0])
    study = str(pydicom.dcmread(imgs[0]).StudyInstanceUID)
    pacs = Peer("PACS", ORTHANC_AET, "127.0.0.1", orthanc.dicom_port, (ROLE_QUERY,))
    cfg = config(tmp_path, peers=[pacs], port=orthanc.node_port, auto_send=False)
    node = Node(cfg, classifier)
    node.start()
    try:
        got = retrieve_study(cfg, pacs, study, node.store, method="move")
        assert got.completed == 1
        wait_for(lambda: len(files(cfg.store, "outbox", "_SR.dcm")) == 1, what="the moved image classified")
    finally:
        node.stop()


def test_results_kept_while_destination_is_down_then_retried(tmp_path, orthanc, dicom_dir, classifier, caplog):
    caplog.set_level("INFO", logger="xray_node")
    imgs = radiographs(tmp_path / "src", dicom_dir, 1, patient="RETRY-001")
    ds = pydicom.dcmread(imgs[0])
    down = Peer("PACS", ORTHANC_AET, "127.0.0.1", free_port(), (ROLE_RESULTS,))
    cfg = config(tmp_path, peers=[down])
    # as if received before a restart: an image in the inbox is classified when the node starts
    NodeStore(cfg.store).put(imgs[0].read_bytes(), ds.StudyInstanceUID, ds.SOPInstanceUID)
    node = Node(cfg, classifier)
    node.start()
    key = uid_key(ds.StudyInstanceUID)
    try:
        wait_for(lambda: node.store.send_status(key).attempts >= 2, what="two failed send attempts")
        status = node.store.send_status(key)
        assert "No answer from 127.0.0.1" in status.last_error
        assert len(files(cfg.store, "outbox")) == 2 and not files(cfg.store, "sent")  # nothing dropped
        node.config.peers = [Peer("PACS", ORTHANC_AET, "127.0.0.1", orthanc.dicom_port, (ROLE_RESULTS,))]
        assert not node.sender.send_study(key).failing  # the "Retry" of a study
        assert len(files(cfg.store, "sent")) == 2 and not files(cfg.store, "outbox")
    finally:
        node.stop()
    classes = sorted(i["SOPClassUID"] for i in orthanc.study_instances(str(ds.StudyInstanceUID)))
    assert classes == [SR_CLASS, SC_CLASS] or classes == sorted([SR_CLASS, SC_CLASS])
    assert "not sent to PACS (attempt 1)" in caplog.text and "kept in the outbox" in caplog.text


# ----------------------------------------------------------- restart safety
def test_restart_moves_finished_images_and_redoes_half_finished_ones(tmp_path, dicom_dir, classifier):
    from training.dicom_node.processor import Processor

    imgs = radiographs(tmp_path / "src", dicom_dir, 2, patient="RS-001")
    store = NodeStore(tmp_path / "store")
    done_first = Processor(store, classifier, lung_attention=False)
    dss = [pydicom.dcmread(p) for p in imgs]
    a, _ = store.put(imgs[0].read_bytes(), dss[0].StudyInstanceUID, dss[0].SOPInstanceUID)
    assert done_first.process_pending() == 1
    # simulate "stopped after the SR was written, before the image left the inbox"
    moved = store.root / "images" / a.parent.name / a.name
    os.replace(moved, a)
    b, _ = store.put(imgs[1].read_bytes(), dss[1].StudyInstanceUID, dss[1].SOPInstanceUID)
    orphan = store.results_dir(b) / f"{b.stem}_0000000000_SC.dcm"  # an SC whose SR was never written
    orphan.write_bytes(b"half")
    srs_before = files(store.root, "outbox", "_SR.dcm")
    assert Processor(store, classifier, lung_attention=False).process_pending() == 1  # only b is classified
    assert not orphan.exists() and not store.pending()
    srs = files(store.root, "outbox", "_SR.dcm")
    assert len(srs) == 2 and set(srs_before) < set(srs)
    # a resend of an image already classified is acknowledged but not classified twice
    assert store.put(imgs[0].read_bytes(), dss[0].StudyInstanceUID, dss[0].SOPInstanceUID)[1] is False


def test_malformed_dataset_and_aborted_sender_lose_nothing_else(tmp_path, dicom_dir, classifier, caplog):
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    from pynetdicom import AE

    caplog.set_level("INFO", logger="xray_node")
    cfg = config(tmp_path)
    node = Node(cfg, classifier)
    port = node.start()
    try:
        ae = AE(ae_title=MODALITY_AET)
        ae.add_requested_context(CR_CLASS, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
        assert assoc.is_established
        bad = Dataset()  # no Study Instance UID
        bad.SOPClassUID, bad.SOPInstanceUID, bad.Modality = CR_CLASS, generate_uid(), "CR"
        bad.file_meta = pydicom.dataset.FileMetaDataset()
        bad.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        assert assoc.send_c_store(bad).Status == 0xC000
        good = pydicom.dcmread(radiographs(tmp_path / "src", dicom_dir, 1, patient="MAL-001")[0])
        good.decompress()
        assoc.release()
        # a sender whose connection drops mid-transfer: its socket is shut after 20 PDUs of a ~1 MB image
        cut = good.copy()
        cut.SOPInstanceUID = generate_uid()
        assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
        sock, real_send, calls = assoc.dul.socket, assoc.dul.socket.send, [0]

        def dropping_send(data):
            calls[0] += 1
            if calls[0] == 20:
                sock.socket.shutdown(socket.SHUT_RDWR)
            return real_send(data)

        sock.send = dropping_send
        status = assoc.send_c_store(cut)
        assert calls[0] >= 20 and not status  # never acknowledged
        wait_for(lambda: "dropped the connection" in caplog.text or "aborted" in caplog.text,
                 what="the node's log line about the dropped sender")
        # the node goes on: the next sender is served
        assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
        assert assoc.send_c_store(good).Status == 0x0000
        assoc.release()
        wait_for(lambda: len(files(cfg.store, "outbox", "_SR.dcm")) == 1 and len(files(cfg.store, "images")) == 1,
                 what="the good image classified and moved out of the inbox")
    finally:
        node.stop()
    # nothing half-written left behind (checked once the node has stopped: its sender thread writes
    # send_status.json atomically at any moment, so a temporary file may exist while it runs)
    assert not list(cfg.store.rglob("*.tmp"))
    assert "refused an object" in caplog.text and "(status 0xC000): it has no Study Instance UID" in caplog.text
    assert "aborted" in caplog.text or "dropped the connection" in caplog.text


# --------------------------------------------------------- xray-node (CLI)
def test_xray_node_cli_sigterm_then_restart_loses_nothing(tmp_path, dicom_dir, tiny_model):
    storescu = require_tool("storescu", "dcmtk")
    port = free_port()
    cfg = NodeConfig(ae_title=NODE_AET, port=port, store=tmp_path / "store", allowed_calling_ae_titles=[MODALITY_AET],
                     model=tiny_model, threads=1, lung_attention=False)
    conf = tmp_path / "node.toml"
    conf.write_text(cfg.to_toml())
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def start(log: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "training.cli.node", "--config", str(conf)],
                                stderr=open(log, "wb"), stdout=subprocess.DEVNULL, env=env, cwd=tmp_path)
        wait_for(lambda: "listening on" in log.read_text(errors="replace") or proc.poll() is not None,
                 what="xray-node to listen")
        assert proc.poll() is None, log.read_text()
        return proc

    log1 = tmp_path / "run1.log"
    proc = start(log1)
    imgs = radiographs(tmp_path / "src", dicom_dir, 3, patient="CLI-001", name="Cli^Patient")
    run = subprocess.run([storescu, "-R", "-xy", "-aet", MODALITY_AET, "-aec", NODE_AET, "127.0.0.1", str(port), *map(str, imgs)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    proc.send_signal(signal.SIGTERM)  # at once: some images are not classified yet
    assert proc.wait(180) == 0
    first = log1.read_text()
    assert "SIGTERM received: stopping" in first and "stopped;" in first
    assert len(files(cfg.store, "inbox")) + len(files(cfg.store, "images")) == 3  # every acknowledged image kept
    # however the race went, one more image waits unclassified (as if received just before the SIGTERM)
    extra = radiographs(tmp_path / "extra", dicom_dir, 1, patient="CLI-001", name="Cli^Patient")[0]
    ds = pydicom.dcmread(extra)
    NodeStore(cfg.store).put(extra.read_bytes(), ds.StudyInstanceUID, ds.SOPInstanceUID)
    waiting = len(files(cfg.store, "inbox"))
    log2 = tmp_path / "run2.log"
    proc = start(log2)
    try:
        wait_for(lambda: len(files(cfg.store, "outbox", "_SR.dcm")) == 4, what="all 4 images classified after restart")
        assert f"resuming: {waiting} image(s) received but not classified" in log2.read_text()
        assert not files(cfg.store, "inbox")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(180) == 0
    for text in (first, log2.read_text()):
        assert "CLI-001" not in text and "Cli^Patient" not in text and "Cli" not in text


def test_retrieve_cancel_keeps_what_arrived(tmp_path, orthanc, dicom_dir):
    imgs = radiographs(tmp_path / "src", dicom_dir, 3, patient="CANCEL-001")
    for f in imgs:
        orthanc.upload(f)
    study = str(pydicom.dcmread(imgs[0]).StudyInstanceUID)
    pacs = Peer("PACS", ORTHANC_AET, "127.0.0.1", orthanc.dicom_port, (ROLE_QUERY,))
    cfg = config(tmp_path, peers=[pacs])
    store = NodeStore(cfg.store)
    steps = []
    got = retrieve_study(cfg, pacs, study, store, progress=lambda d, t: steps.append((d, t)),
                         cancel=lambda: len(steps) >= 1)
    assert got.cancelled and "cancelled; images already received are kept" in got.message
    kept = store.pending()
    assert 1 <= len(kept) < 3 and sorted(kept) == sorted(got.stored)
    for p in kept:  # whole files only
        assert pydicom.dcmread(p).StudyInstanceUID == study
    assert not list(cfg.store.rglob("*.tmp"))


def test_xray_node_cli_check_and_bad_config(tmp_path, caplog, capsys):
    from training.cli.node import main

    caplog.set_level("INFO", logger="xray_node")
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nae_title = "THIS_TITLE_IS_TOO_LONG"\n')
    assert main(["--config", str(bad)]) == 2
    assert "is not valid: use 1 to 16" in caplog.text and "Traceback" not in caplog.text
    assert main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "Cannot read the node configuration" in caplog.text
    closed = free_port()
    cfg = NodeConfig(ae_title=NODE_AET, port=0, store=tmp_path / "store", host="0.0.0.0",
                     peers=[Peer("PACS", ORTHANC_AET, "127.0.0.1", closed)])
    good = tmp_path / "node.toml"
    good.write_text(cfg.to_toml())
    caplog.clear()
    assert main(["--config", str(good), "--check"]) == 1  # the peer does not answer
    assert f"No answer from 127.0.0.1:{closed}" in caplog.text
    assert "listening on all network interfaces" in caplog.text  # host 0.0.0.0 is called out


def test_local_store_search_matching(tmp_path, dicom_dir):
    from pydicom.dataset import Dataset

    from training.dicom_node.find_scp import find_local

    store = NodeStore(tmp_path / "store")
    for pid, name in (("P-1", "Doe^Jane"), ("P-2", "Roe^Rick")):
        for f in radiographs(tmp_path / pid, dicom_dir, 2, patient=pid, name=name):
            ds = pydicom.dcmread(f)
            store.put(f.read_bytes(), ds.StudyInstanceUID, ds.SOPInstanceUID)

    def ask(**keys):
        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.PatientID = ""
        ident.NumberOfStudyRelatedInstances = ""
        for k, v in keys.items():
            setattr(ident, k, v)
        return sorted((str(a.PatientID), int(a.NumberOfStudyRelatedInstances)) for a in find_local(store, ident))

    assert ask() == [("P-1", 2), ("P-2", 2)]
    assert ask(PatientName="Doe*") == [("P-1", 2)]
    assert ask(PatientName="Roe^Rick") == [("P-2", 2)]
    assert ask(PatientName="D?e^Jane", StudyDate="20240101-20240331") == [("P-1", 2)]
    assert ask(StudyDate="20250101-") == []
    assert ask(ModalitiesInStudy=["CT", "MR"]) == []
    assert ask(ModalitiesInStudy=["DX", "CR"], AccessionNumber="ACC-P-2") == [("P-2", 2)]
