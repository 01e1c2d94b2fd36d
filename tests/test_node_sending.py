"""Sending apart from classifying (issue 24, item 2): a results destination that
is down, or hung (Orthanc stopped with SIGSTOP: its kernel still accepts the
TCP connection, nothing answers), never delays classification; each failure
is logged with its real cause; nothing is lost or sent twice."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pydicom
import pytest
import torch
from dicom_peers import MODALITY_AET, NODE_AET, ORTHANC_AET, free_port, orthanc, radiographs, tiny_model_file, wait_for  # noqa: F401
from pynetdicom import AE

from training.dicom_node.config import ROLE_RESULTS, NodeConfig, Peer
from training.dicom_node.scu import echo
from training.dicom_node.sender import ResultSender
from training.dicom_node.service import Node
from training.dicom_node.store import NodeStore, uid_key
from training.inference.classifier import Classifier

CR_CLASS = "1.2.840.10008.5.1.4.1.1.1"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    torch.set_num_threads(1)
    model = tiny_model_file(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    return Classifier.from_file(model, device="cpu", decode_workers=1)


def fast(tmp_path: Path, peers=(), **kw) -> NodeConfig:
    """Short timeouts, as a site with a flaky PACS would set them."""
    return NodeConfig(ae_title=NODE_AET, port=0, store=tmp_path / "store", peers=list(peers),
                      allowed_calling_ae_titles=[MODALITY_AET], retry_seconds=1.0, retry_max_seconds=2.0,
                      connect_timeout_seconds=2.0, acse_timeout_seconds=2.0, dimse_timeout_seconds=3.0,
                      timeout_seconds=10.0, lung_attention=False, **kw)


class Silent:
    """A TCP port that accepts connections and never says a word (a hung PACS)."""

    def __init__(self, mode: str = "silent"):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.conns = []
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            if self.mode == "close":
                conn.close()
            else:
                self.conns.append(conn)

    def close(self):
        self._stop = True
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


def test_failures_name_the_real_cause(tmp_path, classifier):
    cfg = fast(tmp_path)
    hung = Silent()
    closer = Silent("close")
    node = Node(fast(tmp_path / "n", peers=[]), classifier)
    node_port = node.start()
    try:
        t0 = time.monotonic()
        got = echo(cfg, Peer("PACS", "PACS", "127.0.0.1", hung.port))
        took = time.monotonic() - t0
        assert not got.ok and took < 5.0, (took, got.message)
        assert got.message == (f"PACS at 127.0.0.1:{hung.port} accepted the TCP connection but did not answer the "
                               "association request within 2 s (ACSE timeout): it may be hung or overloaded.")
        got = echo(cfg, Peer("PACS", "PACS", "127.0.0.1", closer.port))
        assert "closed the connection without answering the association request" in got.message, got.message
        closed = free_port()
        got = echo(cfg, Peer("PACS", "PACS", "127.0.0.1", closed))
        assert got.message == f"No answer from 127.0.0.1:{closed} - is the port right, and is PACS running?"
        # the node itself: a wrong called AE title, an unknown calling AE title - each says which
        modality = NodeConfig(ae_title=MODALITY_AET, store=tmp_path / "m")
        got = echo(modality, Peer("node", "NOT_THE_NODE", "127.0.0.1", node_port))
        assert "its AE title is not 'NOT_THE_NODE' (called AE title not recognised)" in got.message, got.message
        got = echo(NodeConfig(ae_title="STRANGER", store=tmp_path / "s"), Peer("node", NODE_AET, "127.0.0.1", node_port))
        assert "does not accept this node's AE title 'STRANGER'" in got.message and "refused the connection" in \
            got.message, got.message
        assert echo(modality, Peer("node", NODE_AET, "127.0.0.1", node_port)).ok
    finally:
        node.stop()
        hung.close()
        closer.close()


def test_a_hung_destination_costs_one_timeout_per_round_not_one_per_study(tmp_path, dicom_dir, classifier, caplog):
    """Three studies wait; the destination hangs: one round costs one ACSE timeout, the others wait."""
    caplog.set_level("INFO", logger="xray_node")
    hung = Silent()
    cfg = fast(tmp_path, peers=[Peer("PACS", ORTHANC_AET, "127.0.0.1", hung.port, (ROLE_RESULTS,))])
    store = NodeStore(cfg.store)
    from training.dicom_node.processor import Processor

    for i in range(3):
        f = radiographs(tmp_path / f"s{i}", dicom_dir, 1, patient=f"RND-{i}")[0]
        ds = pydicom.dcmread(f)
        store.put(f.read_bytes(), ds.StudyInstanceUID, ds.SOPInstanceUID)
    Processor(store, classifier, lung_attention=False).process_pending()
    assert len(store.outbox_studies()) == 3
    sender = ResultSender(cfg, store)
    try:
        t0 = time.monotonic()
        assert sender.send_due() == 1
        assert time.monotonic() - t0 < 4.5
        statuses = [store.send_status(s) for s in store.outbox_studies()]
        assert sum(s.attempts for s in statuses) == 1
        assert all("ACSE timeout" in s.last_error for s in statuses), [s.last_error for s in statuses]
        assert sum(s.last_error.startswith("waiting: ") for s in statuses) == 2
        assert sender.send_due() == 0  # within the back-off: nothing is tried, nothing blocks
    finally:
        hung.close()
    assert "did not answer the association request within 2 s (ACSE timeout)" in caplog.text
    assert "broke off the connection" not in caplog.text


def _send(port: int, path: Path) -> float:
    ae = AE(ae_title=MODALITY_AET)
    ds = pydicom.dcmread(path)
    ae.add_requested_context(CR_CLASS, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
    assert assoc.is_established
    status = assoc.send_c_store(ds)
    acked = time.time()
    assoc.release()
    assert status.Status == 0x0000
    return acked


def test_hung_pacs_never_delays_classification_and_loses_nothing(tmp_path, orthanc, dicom_dir, classifier, caplog):
    caplog.set_level("INFO", logger="xray_node")
    pacs = Peer("PACS", ORTHANC_AET, "127.0.0.1", orthanc.dicom_port, (ROLE_RESULTS,))
    classified: dict[str, float] = {}
    node = Node(fast(tmp_path, peers=[pacs]), classifier,
                on_result=lambda path, pred, written: classified.setdefault(path.stem, time.time()))
    port = node.start()
    imgs = radiographs(tmp_path / "src", dicom_dir, 4, patient="HUNG-001")
    study = str(pydicom.dcmread(imgs[0]).StudyInstanceUID)
    sent = lambda: sorted((node.store.root / "sent").glob("*/*.dcm"))  # noqa: E731
    try:
        _send(port, imgs[0])  # warm-up (the gate's models load once), results reach Orthanc
        wait_for(lambda: len(sent()) == 2, what="the first SR + SC acknowledged by Orthanc")
        orthanc.pause()
        try:
            delays = []
            for img in imgs[1:]:
                acked = _send(port, img)
                key = uid_key(pydicom.dcmread(img).SOPInstanceUID)
                wait_for(lambda: key in classified, timeout=30, what="the image classified")
                delays.append(classified[key] - acked)
                time.sleep(3.0)  # the sender is now stuck on the hung PACS
            assert max(delays) < 5.0, delays
            assert len(sent()) == 2  # nothing got through meanwhile, nothing dropped
            assert len(list((node.store.root / "outbox").glob("*/*.dcm"))) == 6
        finally:
            orthanc.resume()
        wait_for(lambda: len(sent()) == 8, timeout=60, what="every result sent after SIGCONT")
        assert not list((node.store.root / "outbox").glob("*/*.dcm"))
    finally:
        node.stop()
    ours = sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in sent())
    there = sorted(i["SOPInstanceUID"] for i in orthanc.study_instances(study)
                   if i["SOPClassUID"] != CR_CLASS)
    assert there == ours and len(set(ours)) == 8  # none lost, none twice
    text = caplog.text
    assert "(ACSE timeout)" in text or "(DIMSE timeout)" in text, text
    assert "broke off the connection while it was being set up" not in text
