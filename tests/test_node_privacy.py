"""No patient identifier reaches the node's log (issue 24, item 1).

``xray-node`` runs as a process (its stderr is its whole log); dcmtk's
storescu sends it identifier-rich radiographs with malformed values (a birth
date written as 1970-01-01, over-long strings, Cyrillic bytes without a
Specific Character Set, a non-UID in a UID attribute), findscu searches its
store and echoscu pings it.  Then every identifier value - and every part of
every name - is looked for in the log."""

from __future__ import annotations

import logging
import signal
import subprocess
import warnings
from pathlib import Path

import pydicom
import pytest
from dicom_peers import (
    MODALITY_AET,
    NODE_AET,
    free_port,
    radiographs,
    require_tool,
    start_node_cli,
    tiny_model_file,
    wait_for,
)
from pydicom.dataelem import DataElement

from training.dicom_node.config import NodeConfig

CYRILLIC_NAME = "Иванов^Пётр"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def identifier_rich(tmp_path: Path, dicom_dir: Path) -> tuple[list[Path], list[str]]:
    """Three images with identifiers worth leaking; returns (files, every identifier value)."""
    imgs = radiographs(tmp_path / "src", dicom_dir, 3, patient="PID-7731-SECRET", name="Zyxwvut^Qwertyuiop^Middlename")
    secrets = ["PID-7731-SECRET", "Zyxwvut", "Qwertyuiop", "Middlename", "1970-01-01", "19700101",
               "ACCESSION-NUMBER-9999-TOO-LONG-FOR-SH", "St Obscure Hospital of Nowhere", "Refdoc^Hildegard",
               "Refdoc", "Hildegard", "OTHERID-55501", "STUDYID77", "Long comment about the patient Qwertyuiop",
               "Ivanov", "Иванов", "Пётр", "Иванов".encode("cp1251").decode("latin-1")]
    for i, path in enumerate(imgs):
        ds = pydicom.dcmread(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.PatientBirthDate = "1970-01-01"  # malformed DA: pydicom complains about it, quoting it
            ds.AccessionNumber = "ACCESSION-NUMBER-9999-TOO-LONG-FOR-SH"  # "value length exceeds"
        ds.InstitutionName = "St Obscure Hospital of Nowhere"
        ds.ReferringPhysicianName = "Refdoc^Hildegard"
        ds.OtherPatientIDsSequence = [pydicom.Dataset()]
        ds.OtherPatientIDsSequence[0].PatientID = "OTHERID-55501"
        ds.StudyID = "STUDYID77"
        ds.PatientComments = "Long comment about the patient Qwertyuiop"
        if i == 1:  # a name in Windows-1251 bytes and no Specific Character Set (common in archives)
            if "SpecificCharacterSet" in ds:
                del ds.SpecificCharacterSet
            ds.add(DataElement(0x00080090, "PN", CYRILLIC_NAME.encode("cp1251")))
            ds.OtherPatientNames = "Ivanov^Petr"
        if i == 2:  # not a UID where a UID must be: refused at receive
            ds.SOPInstanceUID = "1.2.3.04.not-a-uid"
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(path, enforce_file_format=True)
        secrets += [str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)]
    return imgs, secrets


def test_node_log_has_no_identifiers(tmp_path, dicom_dir, tiny_model):
    storescu = require_tool("storescu", "dcmtk")
    findscu = require_tool("findscu", "dcmtk")
    echoscu = require_tool("echoscu", "dcmtk")
    port = free_port()
    cfg = NodeConfig(ae_title=NODE_AET, port=port, store=tmp_path / "store", allowed_calling_ae_titles=[MODALITY_AET],
                     model=tiny_model, threads=1, lung_attention=False)
    conf = tmp_path / "node.toml"
    conf.write_text(cfg.to_toml())
    imgs, secrets = identifier_rich(tmp_path, dicom_dir)
    log = tmp_path / "node.log"
    proc = start_node_cli(conf, log, tmp_path)
    try:
        node = ["-aet", MODALITY_AET, "-aec", NODE_AET, "127.0.0.1", str(port)]
        assert subprocess.run([echoscu, *node], capture_output=True, timeout=60).returncode == 0
        for img in imgs:  # one association each: the refused one does not stop the others
            subprocess.run([storescu, "-R", "-xy", *node, str(img)], capture_output=True, timeout=120)
        wait_for(lambda: len(list((cfg.store / "outbox").glob("*/*_SR.dcm"))) == 2, what="2 SRs written")
        out = tmp_path / "find"
        out.mkdir()
        for key in ("PatientName=Zyx*", "PatientID=PID-7731-SECRET", "PatientBirthDate=19700101",
                    "AccessionNumber=ACC*"):
            run = subprocess.run([findscu, "-S", *node, "-X", "-od", str(out), "-k", "QueryRetrieveLevel=STUDY",
                                  "-k", "PatientName", "-k", "PatientID", "-k", "PatientBirthDate",
                                  "-k", "AccessionNumber", "-k", "StudyInstanceUID", "-k", key],
                                 capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, run.stdout + run.stderr
        assert list(out.glob("rsp*.dcm")), "findscu found the received study"
        # a stranger is refused (a log line with its AE title, nothing else)
        subprocess.run([storescu, "-aet", "STRANGER", "-aec", NODE_AET, "127.0.0.1", str(port), str(imgs[0])],
                       capture_output=True, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(180) == 0
    text = log.read_text(encoding="utf-8", errors="replace")
    # the log is not empty: it tells what happened, with hashed keys
    assert "received image" in text and "SR + SC in the outbox" in text and "answered a study search" in text
    assert "refused an association from AE 'STRANGER'" in text
    leaked = sorted({s for s in secrets if s in text})
    assert not leaked, f"identifiers in the node's log: {leaked}\n{text}"
    assert "Invalid value" not in text and "exceeds" not in text and "Traceback" not in text, text


def test_library_loggers_stay_quiet_after_import():
    """pydicom resets its logger to WARNING when imported; the node's import puts it back to ERROR."""
    import importlib

    import training.dicom_node.privacy as privacy

    logging.getLogger("pydicom").setLevel(logging.WARNING)  # as pydicom's own import leaves it
    importlib.reload(privacy)
    for name in privacy.LIBRARY_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() >= logging.ERROR, name
    ds = pydicom.Dataset()
    ds.PatientName = "Secret^Name"
    ds.PatientID = "ID-123456"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    assert privacy.redact("value 'Secret^Name' of ID-123456 in 1.2.826.0.1.3680043.8.498.1 is bad", ds) == \
        "value '<value>' of <value> in <value> is bad"
