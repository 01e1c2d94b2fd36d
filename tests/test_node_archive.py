"""What a chest archive holds (issue 24, items 3 and 4): Secondary Capture chest
films (the RSNA / NIH exports) are received, classified and answered; an
image no result could refer to (an invalid UID, a missing one) is refused at
once with 0xC000 and the reason; a C-FIND answer says what a retrieve will and
will not bring, and a retrieve that fails says why; the node's log lines say
what happened (no "refused" for an echo, no "offered 57 more" for a C-MOVE,
no "transfer cut off" for a refused association)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest
import torch
from dicom_peers import (  # noqa: F401
    MODALITY_AET,
    NODE_AET,
    ORTHANC_AET,
    orthanc,
    radiographs,
    require_tool,
    storescu_profile,
    tiny_model_file,
    wait_for,
)
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

from training.dicom_node.config import ROLE_QUERY, ROLE_RESULTS, NodeConfig, Peer
from training.dicom_node.scu import StudyQuery, find_studies, retrieve_study
from training.dicom_node.service import Node
from training.dicom_out.sr import read_sr_values

SC_CLASS, CR_CLASS, SR_CLASS = "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.88.33"
SC_SAMPLES = ("cxr01_rsna_normal-2_jpegbaseline.dcm", "cxr03_rsna_viral-2_jpegbaseline.dcm",
              "cxr07_nih_udacity_test1_nofinding.dcm")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from training.inference.classifier import Classifier

    torch.set_num_threads(1)
    model = tiny_model_file(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    return Classifier.from_file(model, device="cpu", decode_workers=1)


def config(tmp_path: Path, peers=(), **kw) -> NodeConfig:
    kw.setdefault("port", 0)
    return NodeConfig(ae_title=NODE_AET, host="127.0.0.1", store=tmp_path / "store", peers=list(peers),
                      allowed_calling_ae_titles=[MODALITY_AET], retry_seconds=0.5, retry_max_seconds=2,
                      acse_timeout_seconds=5, dimse_timeout_seconds=15, lung_attention=False, **kw)


def files(store: Path, stage: str, suffix: str = ".dcm") -> list[Path]:
    return sorted((store / stage).glob(f"*/*{suffix}"))


def reuid(src: Path, out: Path, **attrs) -> Path:
    """A copy of ``src`` with new Study / Series / SOP Instance UIDs and ``attrs`` set."""
    ds = pydicom.dcmread(src)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for k, v in attrs.items():
        setattr(ds, k, v)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out


def test_secondary_capture_chest_films_received_classified_and_answered(tmp_path, orthanc, dicom_dir, classifier,
                                                                       caplog):
    storescu = require_tool("storescu", "dcmtk")
    caplog.set_level("INFO", logger="xray_node")
    pacs = Peer("PACS", ORTHANC_AET, "127.0.0.1", orthanc.dicom_port, (ROLE_RESULTS,))
    cfg = config(tmp_path, peers=[pacs])
    node = Node(cfg, classifier)
    port = node.start()
    sources = [dicom_dir / name for name in SC_SAMPLES]
    # the NIH sample's header says Modality CT (edited course file): taken (body part CHEST), the header
    # check refuses it, and a "Refused" SR answers it
    sources.append(reuid(dicom_dir / "cxr11_nih_udacity_test5_modality-CT.dcm", tmp_path / "ct_sc.dcm"))
    profile = storescu_profile(tmp_path / "cfg")  # the docs' storescu profile: every transfer syntax
    try:
        for src in sources:
            run = subprocess.run([storescu, *profile, "-aet", MODALITY_AET, "-aec", NODE_AET, "127.0.0.1", str(port),
                                  str(src)], capture_output=True, text=True, timeout=120)
            assert run.returncode == 0 and "error" not in (run.stdout + run.stderr).lower(), run.stdout + run.stderr
        wait_for(lambda: len(files(cfg.store, "sent", "_SR.dcm")) == 4, what="4 SRs acknowledged by Orthanc")
    finally:
        node.stop()
    by_study = {}
    for sr in files(cfg.store, "sent", "_SR.dcm"):
        ds = pydicom.dcmread(sr)
        by_study[str(ds.StudyInstanceUID)] = read_sr_values(ds).category
    for src in sources:
        study = str(pydicom.dcmread(src, stop_before_pixels=True).StudyInstanceUID)
        assert study in by_study, src.name
        there = {i["SOPClassUID"] for i in orthanc.study_instances(study)}
        assert SR_CLASS in there, (src.name, there)  # the answer is in the film's study in the PACS
    assert by_study[str(pydicom.dcmread(sources[-1], stop_before_pixels=True).StudyInstanceUID)] == "Refused"
    assert len(files(cfg.store, "sent", "_SC.dcm")) == sum(c != "Refused" for c in by_study.values())
    assert not files(cfg.store, "unprocessable")
    assert not [r for r in caplog.records if r.name == "xray_node" and "refused" in r.getMessage()]


def _store(port: int, ds, sop_class: str):
    ae = AE(ae_title=MODALITY_AET)
    ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
    assert assoc.is_established
    try:
        return assoc.send_c_store(ds)
    finally:
        assoc.release()


def test_images_no_result_could_refer_to_are_refused_with_the_reason(tmp_path, dicom_dir, classifier, caplog):
    caplog.set_level("INFO", logger="xray_node")
    cfg = config(tmp_path)
    node = Node(cfg, classifier)
    port = node.start()
    try:
        def cr(**attrs):
            ds = pydicom.dcmread(radiographs(tmp_path / generate_uid()[-8:], dicom_dir, 1)[0])
            ds.decompress()
            for k, v in attrs.items():
                if v is None:
                    delattr(ds, k)
                else:
                    setattr(ds, k, v)
            return ds

        # a real archive's file: SOP Instance UID "999.999.01.23.45.6789" (a component with a leading zero)
        real = pydicom.dcmread(dicom_dir / "other04_fodicom_CR-ModalityLUT_teeth_jpegll.dcm")
        real.decompress(generate_instance_uid=False)  # keep the archive's (invalid) UID
        got = _store(port, real, CR_CLASS)
        assert got.Status == 0xC000 and "SOP Instance UID is not a valid UID" in got.ErrorComment, got
        got = _store(port, cr(SeriesInstanceUID=None), CR_CLASS)
        assert got.Status == 0xC000 and got.ErrorComment == "no Series Instance UID"
        got = _store(port, cr(StudyInstanceUID="1.2.840.abc"), CR_CLASS)
        assert got.Status == 0xC000 and "Study Instance UID is not a valid UID" in got.ErrorComment
        # a Secondary Capture whose header says neither CR/DX nor chest: not a chest film
        sc = cr(SOPClassUID=SC_CLASS, Modality="OT", BodyPartExamined="HAND")
        got = _store(port, sc, SC_CLASS)
        assert got.Status == 0xC001 and "not a chest radiograph" in got.ErrorComment
        # a result of this program that comes back (a PACS forwarding everything) is not classified again
        own = cr(SOPClassUID=SC_CLASS, Modality="OT", BodyPartExamined="CHEST",
                 Manufacturer="covid-cxr-assistant research project")
        got = _store(port, own, SC_CLASS)
        assert got.Status == 0xC002 and "a result of this program" in got.ErrorComment
        assert _store(port, cr(), CR_CLASS).Status == 0x0000
        wait_for(lambda: len(files(cfg.store, "outbox", "_SR.dcm")) == 1, what="the good image answered")
        time.sleep(1.0)
    finally:
        node.stop()
    assert len(files(cfg.store, "images")) == 1 and not files(cfg.store, "unprocessable")
    text = caplog.text
    assert text.count("(status 0xC000)") == 3 and "SOP Instance UID is not a valid UID" in text
    assert "999.999" not in text and "1.2.840.abc" not in text  # the values themselves are not logged


def _orthanc_post(orthanc, path: str, body) -> dict:
    req = urllib.request.Request(orthanc.url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else {}


def test_query_retrieve_says_what_it_will_and_will_not_bring(tmp_path, orthanc, dicom_dir, classifier, caplog):
    caplog.set_level("INFO", logger="xray_node")
    cr_study = radiographs(tmp_path / "cr", dicom_dir, 1, patient="QRW-CR")
    ct = reuid(dicom_dir / "other01_pydicom_CT_small.dcm", tmp_path / "ct" / "ct.dcm", PatientID="QRW-CT")
    sc = reuid(dicom_dir / "cxr07_nih_udacity_test1_nofinding.dcm", tmp_path / "sc" / "sc.dcm", PatientID="QRW-SC")
    for f in [*cr_study, ct, sc]:
        assert orthanc.upload(f)["Status"] == "Success"
    pacs = Peer("PACS", ORTHANC_AET, "127.0.0.1", orthanc.dicom_port, (ROLE_QUERY, ROLE_RESULTS))
    cfg = config(tmp_path, peers=[pacs])
    matches = {m.patient_id: m for m in find_studies(cfg, pacs, StudyQuery(patient_id="QRW-*", modalities=()))}
    assert set(matches) == {"QRW-CR", "QRW-CT", "QRW-SC"}
    assert matches["QRW-CR"].will_retrieve and matches["QRW-CR"].retrieve_note.startswith("Will retrieve: CR image")
    assert not matches["QRW-CT"].will_retrieve and matches["QRW-CT"].retrieve_note.startswith("Nothing to retrieve")
    assert "CT Image Storage" in matches["QRW-CT"].retrieve_note or "CT" in matches["QRW-CT"].retrieve_note
    assert matches["QRW-SC"].will_retrieve and "Secondary Capture" in matches["QRW-SC"].retrieve_note
    node = Node(cfg, classifier)
    node.start(listen=False)
    try:
        study = matches["QRW-CR"].study_uid
        got = retrieve_study(cfg, pacs, study, node.store, on_received=lambda p: node.wake())
        assert got.completed == 1 and not got.refused
        wait_for(lambda: len(files(cfg.store, "sent")) == 2, what="SR + SC of the CR study in Orthanc")
        # the study now holds this node's own SR and SC as well: a second retrieve says why they are not taken
        again = retrieve_study(cfg, pacs, study, node.store)
        assert again.completed == 1 and len(again.refused) == 2, again
        assert "2 object(s) not taken by this node: 2 x it is a result this program wrote" in again.message
        got = retrieve_study(cfg, pacs, matches["QRW-SC"].study_uid, node.store, on_received=lambda p: node.wake())
        assert got.completed == 1 and len(got.stored) == 1  # a Secondary Capture chest film
        with pytest.raises(Exception) as failed:
            retrieve_study(cfg, pacs, matches["QRW-CT"].study_uid, node.store)
        text = str(getattr(failed.value, "reason", failed.value))
        assert text.startswith("PACS could not send the study (status 0x") and "this node does not take" in text
    finally:
        node.stop()


def test_log_lines_say_what_happened(tmp_path, orthanc, dicom_dir, classifier, caplog):
    getscu = require_tool("getscu", "dcmtk")
    findscu = require_tool("findscu", "dcmtk")
    caplog.set_level("DEBUG", logger="xray_node")
    img = radiographs(tmp_path / "src", dicom_dir, 1, patient="LOG-001")[0]
    orthanc.upload(img)
    pacs = Peer("PACS", ORTHANC_AET, "127.0.0.1", orthanc.dicom_port, (ROLE_QUERY,))
    cfg = config(tmp_path, peers=[pacs], port=orthanc.node_port, auto_send=False)
    node = Node(cfg, classifier)
    node.start()

    def lines(since: int) -> list[str]:
        return [r.getMessage() for r in caplog.records[since:] if r.name == "xray_node" and r.levelname != "DEBUG"]

    try:
        n = len(caplog.records)  # Orthanc echoes the node (it offers more than Verification)
        _orthanc_post(orthanc, "/modalities/xraynode/echo", {})  # raises unless the node answered
        time.sleep(1.0)
        assert not [m for m in lines(n) if "refused" in m or "offered" in m], lines(n)
        n = len(caplog.records)  # a C-MOVE: Orthanc's sub-association offers many storage classes
        study = str(pydicom.dcmread(img, stop_before_pixels=True).StudyInstanceUID)
        assert retrieve_study(cfg, pacs, study, node.store, method="move").completed == 1
        wait_for(lambda: len(files(cfg.store, "outbox", "_SR.dcm")) == 1, what="the moved image classified")
        time.sleep(1.0)
        assert not [m for m in lines(n) if "offered" in m or "refused" in m or "cut off" in m], lines(n)
        for tool in (findscu, getscu):  # a caller that is not allowed: one line, and no "transfer cut off"
            n = len(caplog.records)
            subprocess.run([tool, "-S", "-aet", "STRANGER", "-aec", NODE_AET, "127.0.0.1", str(cfg.port),
                            "-k", "QueryRetrieveLevel=STUDY"], capture_output=True, timeout=60)
            time.sleep(1.0)
            said = lines(n)
            assert len(said) == 1 and "refused an association from AE 'STRANGER'" in said[0], said
        n = len(caplog.records)  # an allowed caller asking for C-GET, which the node does not offer
        subprocess.run([getscu, "-S", "-aet", MODALITY_AET, "-aec", NODE_AET, "127.0.0.1", str(cfg.port),
                        "-k", "QueryRetrieveLevel=STUDY"], capture_output=True, timeout=60)
        time.sleep(1.0)
        said = lines(n)
        assert any("asked for Study Root Query/Retrieve Information Model - GET, which this node does not offer"
                   in m for m in said), said
        assert not [m for m in said if "cut off" in m or "in the middle of a transfer" in m], said
        assert len(said) <= 2, said  # that line, and at most one about how the caller left
    finally:
        node.stop()
