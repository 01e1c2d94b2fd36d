"""Real DICOM peers for the node's tests: an Orthanc PACS (Debian package
``orthanc``) started on 127.0.0.1 with a temporary configuration and storage
folder, and dcmtk's ``echoscu`` / ``storescu`` (Debian package ``dcmtk``)
standing in for a modality.

A missing tool or an Orthanc that does not start makes a test FAIL under
``CI=true`` (``.ci/run`` installs both) and skip with the reason otherwise."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ORTHANC_AET = "ORTHANC"
NODE_AET = "XRAYNODE"
MODALITY_AET = "MODALITY1"
CHEST_SOURCES = ("cxr01_rsna_normal-2_jpegbaseline.dcm", "cxr07_nih_udacity_test1_nofinding.dcm",
                 "cxr03_rsna_viral-2_jpegbaseline.dcm")
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def missing(msg: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def require_tool(name: str, package: str) -> str:
    exe = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not exe:
        missing(f"{name} (Debian package {package}) is not installed: apt-get install {package}")
    return exe


def wait_for(cond, timeout: float = 180.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def tiny_model_file(path: Path) -> Path:
    """A small untrained model file (ResNet-50 at 64 px): fast enough for the node's tests."""
    import torch

    from training.model.modelfile import ModelInfo, save_model
    from training.model.networks import build_model

    torch.manual_seed(0)
    return save_model(build_model("resnet50", "scratch", input_size=64),
                      ModelInfo(arch="resnet50", input_size=64, threshold=0.5), path)


def start_node_cli(conf: Path, log: Path, cwd: Path) -> subprocess.Popen:
    """``xray-node --config conf`` with its stderr (its whole log) in ``log``; returns once it listens."""
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "training.cli.node", "--config", str(conf)],
                            stderr=open(log, "wb"), stdout=subprocess.DEVNULL, env=env, cwd=cwd)
    wait_for(lambda: "listening on" in log.read_text(errors="replace") or proc.poll() is not None,
             what="xray-node to listen")
    assert proc.poll() is None, log.read_text()
    return proc


def storescu_profile(out: Path) -> list[str]:
    """storescu options for the profile printed in docs/DICOM_NODE.md (the doc's own text, so it is tested)."""
    repo = Path(__file__).resolve().parents[1]
    doc = (repo / "docs" / "DICOM_NODE.md").read_text(encoding="utf-8")
    start = doc.index("```ini\n# xray-node-storescu.cfg") + len("```ini\n")
    cfg = out / "xray-node-storescu.cfg"
    out.mkdir(parents=True, exist_ok=True)
    cfg.write_text(doc[start:doc.index("```", start)], encoding="utf-8")
    return ["-xf", str(cfg), "XrayNode"]


def _openssl(*args, cwd: Path) -> None:
    exe = require_tool("openssl", "openssl")
    run = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"openssl {' '.join(args)}: {run.stderr}"


_LEAF_EXT = ("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
             "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n")


def make_test_pki(out: Path) -> dict[str, Path]:
    """A test CA made with openssl, as docs/DICOM_NODE.md shows: ``ca.pem``; certificates and keys
    (``<name>.pem`` / ``<name>.key``) for ``node`` and ``modality`` signed by it; ``stranger`` signed by
    another CA (``other_ca.pem``); ``expired`` signed by the CA but valid only in 2020."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "leaf.ext").write_text(_LEAF_EXT.replace("\\n", "\n"))
    for ca in ("ca", "other_ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                 "-days", "30", "-subj", f"/CN=xray-node test {ca}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=out)
    for name, ca, cn in (("node", "ca", NODE_AET), ("modality", "ca", MODALITY_AET), ("stranger", "other_ca", "STRANGER"),
                         ("results", "ca", "RESULTS"), ("expired", "ca", MODALITY_AET)):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", cwd=out)
        if name != "expired":
            _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                     "-CAcreateserial", "-out", f"{name}.pem", "-days", "30", "-extfile", "leaf.ext", cwd=out)
    # an expired certificate: "openssl ca" can set the validity dates
    (out / "db").mkdir(exist_ok=True)
    (out / "db" / "index.txt").write_text("")
    (out / "db" / "serial").write_text("1000\n")
    (out / "ca.cnf").write_text(
        "[ca]\ndefault_ca = test\n[test]\ndir = db\ndatabase = db/index.txt\nserial = db/serial\n"
        "new_certs_dir = db\ndefault_md = sha256\npolicy = any\ncopy_extensions = none\nunique_subject = no\n"
        "[any]\ncommonName = supplied\n[leaf]\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage = serverAuth,clientAuth\n")
    _openssl("ca", "-config", "ca.cnf", "-batch", "-notext", "-in", "expired.csr", "-cert", "ca.pem", "-keyfile",
             "ca.key", "-out", "expired.pem", "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
             "-extensions", "leaf", cwd=out)
    return {p.name: p for p in out.iterdir() if p.suffix in (".pem", ".key")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def radiographs(out: Path, dicom_dir: Path, n: int = 2, *, patient: str = "NODE-001", name: str = "Node^Test",
                study_uid: str | None = None, sources=CHEST_SOURCES) -> list[Path]:
    """``n`` real chest radiographs rewritten as CR images of one new study
    (the samples are Secondary Capture objects with modality CR/DX)."""
    import pydicom
    from pydicom.uid import generate_uid

    out.mkdir(parents=True, exist_ok=True)
    study = study_uid or generate_uid()
    series = generate_uid()
    files = []
    for i in range(n):
        ds = pydicom.dcmread(dicom_dir / sources[i % len(sources)])
        ds.SOPClassUID = CR_STORAGE
        ds.Modality = "CR"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = name, patient, "19700101"
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.AccessionNumber = study, "20240301", "101500", "ACC-" + patient
        ds.StudyID = "1"
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series, 1, i + 1
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = CR_STORAGE
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = out / f"img{i:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


class Orthanc:
    def __init__(self, root: Path, node_port: int):
        self.root = root
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.node_port = node_port  # where Orthanc sends a C-MOVE to XRAYNODE
        self.proc: subprocess.Popen | None = None
        self.log = root / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, exe: str) -> None:
        storage = self.root / "db"
        storage.mkdir(parents=True, exist_ok=True)
        cfg = {
            "Name": "xray-node-tests", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
            "DicomAet": ORTHANC_AET, "DicomPort": self.dicom_port, "HttpPort": self.http_port,
            "HttpServerEnabled": True, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomServerEnabled": True, "DicomCheckCalledAet": False, "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True, "Plugins": [], "StorageCompression": False,
            "DicomModalities": {"xraynode": [NODE_AET, "127.0.0.1", self.node_port]},
            "ConcurrentJobs": 1, "HttpDescribeErrors": True,
        }
        conf = self.root / "orthanc.json"
        conf.write_text(json.dumps(cfg, indent=1))
        self.proc = subprocess.Popen([exe, str(conf)], stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
                                     cwd=self.root)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                self.get("/system")
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        self.stop()
        missing(f"Orthanc did not start on 127.0.0.1:{self.http_port} (DICOM {self.dicom_port}); its log ends:\n{tail}")

    def pause(self) -> None:
        """SIGSTOP: Orthanc hangs - its kernel still accepts TCP connections, nothing answers."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    # ------------------------------------------------------------- REST API
    def _call(self, method: str, path: str, data: bytes | None = None, ctype: str = "application/json"):
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": ctype})
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def get(self, path: str):
        return self._call("GET", path)

    def upload(self, path: Path) -> dict:
        return self._call("POST", "/instances", Path(path).read_bytes(), "application/dicom")

    def find(self, level: str, query: dict) -> list[dict]:
        return self._call("POST", "/tools/find", json.dumps({"Level": level, "Query": query, "Expand": True}).encode())

    def study_instances(self, study_uid: str) -> list[dict]:
        """[{SOPClassUID, Modality, SeriesDescription, StudyInstanceUID, SOPInstanceUID}] of one study."""
        out = []
        for study in self.find("Study", {"StudyInstanceUID": study_uid}):
            for inst in self.get(f"/studies/{study['ID']}/instances"):
                tags = self.get(f"/instances/{inst['ID']}/simplified-tags")
                out.append({k: tags.get(k, "") for k in ("SOPClassUID", "Modality", "SeriesDescription",
                                                           "StudyInstanceUID", "SOPInstanceUID")})
        return out

    def clear(self) -> None:
        for pid in self.get("/patients"):
            self._call("DELETE", f"/patients/{pid}")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """One Orthanc per test module that imports this fixture, stopped when the module is done."""
    exe = require_tool("Orthanc", "orthanc")
    server = Orthanc(tmp_path_factory.mktemp("orthanc"), node_port=free_port())
    server.start(exe)
    yield server
    server.stop()
