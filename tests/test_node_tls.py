"""DICOM over TLS (issue 24, item 6) against dcmtk: the node serves mutual TLS
(echoscu / storescu ``+tls`` with a client certificate from the test CA store
and are classified); no certificate, one from another CA, an expired one and a
plain association to the TLS port are each refused with a readable logged
reason; the node sends its results to a TLS peer (dcmtk storescp ``+tls``) and
"Test connection" works over TLS and says why it fails with the wrong CA.
The test CA is made with openssl as docs/DICOM_NODE.md shows
(``dicom_peers.make_test_pki``)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
import torch
from dicom_peers import (
    MODALITY_AET,
    NODE_AET,
    free_port,
    make_test_pki,
    radiographs,
    require_tool,
    storescu_profile,
    tiny_model_file,
    wait_for,
)

from training.dicom_node.config import ROLE_RESULTS, ConfigError, NodeConfig, Peer, load_config
from training.dicom_node.scu import echo
from training.dicom_node.service import Node


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from training.inference.classifier import Classifier

    torch.set_num_threads(1)
    model = tiny_model_file(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    return Classifier.from_file(model, device="cpu", decode_workers=1)


def tls_config(tmp_path: Path, pki, peers=(), **kw) -> NodeConfig:
    return NodeConfig(ae_title=NODE_AET, port=0, store=tmp_path / "store", peers=list(peers),
                      allowed_calling_ae_titles=[MODALITY_AET], tls=True, tls_port=free_port(),
                      tls_certificate=pki["node.pem"], tls_private_key=pki["node.key"], tls_ca_bundle=pki["ca.pem"],
                      retry_seconds=0.5, retry_max_seconds=2, acse_timeout_seconds=5, lung_attention=False, **kw)


def dcmtk_tls(pki, who: str | None, ca: str = "ca.pem") -> list[str]:
    """dcmtk TLS options: a client certificate (``who``) or anonymous TLS, trusting ``ca``."""
    cert = ["+tls", str(pki[f"{who}.key"]), str(pki[f"{who}.pem"])] if who else ["+tla"]
    return [*cert, "+cf", str(pki[ca])]


def test_tls_settings_round_trip_and_plain_errors(tmp_path, pki, caplog):
    cfg = tls_config(tmp_path, pki, peers=[Peer("PACS", "PACS", "10.0.0.5", 2762, (ROLE_RESULTS,), tls=True)])
    path = tmp_path / "node.toml"
    path.write_text(cfg.to_toml())
    back = load_config(path)
    assert (back.tls, back.tls_port, back.tls_require_client_certificate, back.tls_minimum_version) == \
        (True, cfg.tls_port, True, "1.2")  # mutual TLS and TLS 1.2+ by default
    assert back.tls_certificate == pki["node.pem"] and back.peers[0].tls is True
    assert NodeConfig().tls_port == 2762 and NodeConfig().tls is False
    from training.dicom_node.tls import server_context

    with pytest.raises(ConfigError, match="no certificate is set"):
        server_context(replace(cfg, tls_certificate=None))
    with pytest.raises(ConfigError, match="cannot be used together"):
        server_context(replace(cfg, tls_private_key=pki["modality.key"]))
    with pytest.raises(ConfigError, match="minimum_version"):
        replace(cfg, tls_minimum_version="1.0")
    # xray-node stops at start, with one line, when a TLS file is not usable
    from training.cli.node import main

    broken = tmp_path / "broken.toml"
    broken.write_text(replace(cfg, tls_certificate=tmp_path / "missing.pem").to_toml())
    assert main(["--config", str(broken), "--check"]) == 2
    assert "missing.pem does not exist" in caplog.text and "Traceback" not in caplog.text
    # a peer marked tls without a CA bundle: "Test connection" says so instead of failing with a traceback
    got = echo(replace(cfg, tls=False, tls_ca_bundle=None), cfg.peers[0])
    assert not got.ok and "Cannot call PACS over TLS" in got.message, got.message


def test_tls_dcmtk_echo_and_store_with_client_certificate(tmp_path, pki, dicom_dir, classifier, caplog):
    echoscu = require_tool("echoscu", "dcmtk")
    storescu = require_tool("storescu", "dcmtk")
    caplog.set_level("INFO", logger="xray_node")
    cfg = tls_config(tmp_path, pki)
    node = Node(cfg, classifier)
    node.start()
    port = node.server.tls_port
    target = ["-aet", MODALITY_AET, "-aec", NODE_AET, "127.0.0.1", str(port)]
    try:
        run = subprocess.run([echoscu, *dcmtk_tls(pki, "modality"), *target], capture_output=True, text=True,
                             timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr
        imgs = radiographs(tmp_path / "src", dicom_dir, 2, patient="TLS-001")
        run = subprocess.run([storescu, *dcmtk_tls(pki, "modality"), *storescu_profile(tmp_path / "cfg"), *target,
                              *map(str, imgs)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        wait_for(lambda: len(list((cfg.store / "outbox").glob("*/*_SR.dcm"))) == 2, what="2 SRs over TLS")
    finally:
        node.stop()
    assert "(mutual TLS, TLS 1.2+)" in caplog.text
    assert "TLS connection from 127.0.0.1 (certificate of 'MODALITY1')" in caplog.text


def test_tls_refusals_have_readable_reasons(tmp_path, pki, dicom_dir, classifier, caplog):
    echoscu = require_tool("echoscu", "dcmtk")
    caplog.set_level("INFO", logger="xray_node")
    cfg = tls_config(tmp_path, pki)
    node = Node(cfg, classifier)
    node.start()
    target = ["-aet", MODALITY_AET, "-aec", NODE_AET, "127.0.0.1"]
    cases = [  # (dcmtk options, port, what the node's log says)
        (dcmtk_tls(pki, None), node.server.tls_port, "the client sent no certificate"),
        (dcmtk_tls(pki, "stranger"), node.server.tls_port, "not signed by a CA this side trusts"),
        (dcmtk_tls(pki, "expired"), node.server.tls_port, "a certificate has expired"),
        ([], node.server.tls_port, "does not speak TLS here"),  # a plain association to the TLS port
    ]
    try:
        for options, port, said in cases:
            n = len(caplog.records)
            t0 = time.monotonic()
            run = subprocess.run([echoscu, *options, *target, str(port)], capture_output=True, text=True, timeout=60)
            assert run.returncode != 0, (options, run.stdout + run.stderr)
            wait_for(lambda: any("refused a TLS connection" in r.getMessage() for r in caplog.records[n:]),
                     timeout=20, what=f"the node's line about {said}")
            line = next(r.getMessage() for r in caplog.records[n:] if "refused a TLS connection" in r.getMessage())
            assert said in line, (options, line)
            assert time.monotonic() - t0 < 15
        # the node still serves a good caller, on both ports
        ok = subprocess.run([echoscu, *dcmtk_tls(pki, "modality"), *target, str(node.server.tls_port)],
                            capture_output=True, timeout=60)
        assert ok.returncode == 0
        plain = subprocess.run([echoscu, *target, str(node.server.port)], capture_output=True, timeout=60)
        assert plain.returncode == 0
    finally:
        node.stop()
    assert "Traceback" not in caplog.text


def test_tls_node_sends_results_to_a_tls_peer_and_tests_the_connection(tmp_path, pki, dicom_dir, classifier):
    storescp = require_tool("storescp", "dcmtk")
    port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    scp = subprocess.Popen([storescp, "+tls", str(pki["results.key"]), str(pki["results.pem"]), "+cf",
                            str(pki["ca.pem"]), "-aet", "RESULTS", "-od", str(received), str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        peer = Peer("Results", "RESULTS", "127.0.0.1", port, (ROLE_RESULTS,), tls=True)
        cfg = tls_config(tmp_path, pki, peers=[peer])
        wait_for(lambda: echo(cfg, peer).ok, timeout=30, what="storescp over TLS answers an echo")
        got = echo(cfg, peer)
        assert got.message.startswith("Results answered in ")
        # a node that trusts another CA: the check fails and says why
        wrong = echo(replace(cfg, tls_ca_bundle=pki["other_ca.pem"]), peer)
        assert not wrong.ok and "the TLS connection failed" in wrong.message
        assert "not signed by a CA this side trusts" in wrong.message, wrong.message
        # TLS to a plain port: a readable failure too
        plain = echo(cfg, replace(peer, port=free_port()))
        assert not plain.ok and plain.message.startswith("No answer from")
        node = Node(replace(cfg, tls=False), classifier)  # sends over TLS; listens plain (not needed here)
        node.start(listen=False)
        try:
            img = radiographs(tmp_path / "src", dicom_dir, 1, patient="TLS-RES")[0]
            ds = pydicom.dcmread(img, stop_before_pixels=True)
            node.store.put(img.read_bytes(), ds.StudyInstanceUID, ds.SOPInstanceUID)
            node.wake()
            wait_for(lambda: len(list((cfg.store / "sent").glob("*/*.dcm"))) == 2, what="SR + SC sent over TLS")
        finally:
            node.stop()
        classes = sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID) for p in received.iterdir())
        assert classes == ["1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.88.33"]
    finally:
        scp.terminate()
        scp.wait(20)


def test_tls_in_the_network_settings_dialog(tmp_path, pki, classifier, request):
    """The app's settings keep the TLS fields, and "Test connection" works over TLS."""
    pytest.importorskip("pytestqt")
    qtbot = request.getfixturevalue("qtbot")
    from xray_gui.network_settings import NetworkSettingsDialog

    node = Node(tls_config(tmp_path / "node", pki), classifier)
    node.start()
    try:
        mine = replace(tls_config(tmp_path, pki), ae_title=MODALITY_AET, tls=False)
        dlg = NetworkSettingsDialog(mine)
        qtbot.addWidget(dlg)
        dlg.add_peer("Node", NODE_AET, "127.0.0.1", node.server.tls_port, True, True, tls=True)
        dlg.tls.setChecked(True)
        cfg = dlg.config()
        assert cfg.tls and cfg.tls_certificate == pki["node.pem"] and cfg.tls_ca_bundle == pki["ca.pem"]
        assert cfg.tls_require_client_certificate and cfg.peers[-1].tls
        assert NetworkSettingsDialog(cfg).config().peers[-1].tls  # shown again as saved
        dlg.table.selectRow(dlg.table.rowCount() - 1)
        dlg.test_connection()
        assert dlg.result.text().startswith("Node answered in "), dlg.result.text()
        dlg.tls_ca.setText(str(pki["other_ca.pem"]))
        dlg.test_connection()
        assert "the TLS connection failed" in dlg.result.text(), dlg.result.text()
    finally:
        node.stop()
