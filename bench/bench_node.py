"""Throughput and robustness of the DICOM node against real peers (prints
figures; not a test).  Needs Debian's ``orthanc`` and ``dcmtk``.

    .venv/bin/python bench/bench_node.py                  # 200 images, 4 senders, the shipped model
    .venv/bin/python bench/bench_node.py --images 50      # a short run
    .venv/bin/python bench/bench_node.py --model tiny     # an untrained 64 px ResNet50: measures the node, not the model

What it does: starts Orthanc on 127.0.0.1 (temporary configuration and
storage) as the results destination and the node in-process (its Storage SCP,
store, gate + classifier with ``torch.set_num_threads(--threads)``, sender);
4 dcmtk ``storescu`` processes send the images at once (each its own calling
AE title, studies of 5 images made from the real chest samples in
../shared/data/dicom-samples); then waits until every image is classified and
every SR + SC is acknowledged by Orthanc, and checks through Orthanc's REST
API that each study holds its images' results.  Then the robustness cases:
a sender whose connection drops mid-transfer, the results destination down
(and back), a malformed dataset; each must leave a log line and lose nothing.
"""

from __future__ import annotations

import argparse
import logging
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--model", default="shipped", help="'shipped', 'tiny', or a model file")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the classifier (default 1)")
    p.add_argument("--no-lung-attention", action="store_true")
    args = p.parse_args(argv)

    import pydicom
    import torch
    from dicom_peers import NODE_AET, ORTHANC_AET, Orthanc, free_port, radiographs

    from training.dicom_node.config import ROLE_RESULTS, NodeConfig, Peer
    from training.dicom_node.service import Node, load_classifier

    torch.set_num_threads(args.threads)
    logging.getLogger("highdicom").setLevel(logging.ERROR)
    log_lines = Lines()
    log_lines.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.getLogger("xray_node").addHandler(log_lines)
    logging.getLogger("xray_node").setLevel(logging.INFO)
    tmp = Path(tempfile.mkdtemp(prefix="bench_node_"))
    data = ROOT.parent / "shared" / "data" / "dicom-samples"
    storescu = "storescu"
    orthanc_exe = next((e for e in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if Path(e).exists()), None)
    if orthanc_exe is None:
        print("Orthanc is not installed (apt-get install orthanc)", file=sys.stderr)
        return 2
    orthanc = Orthanc(tmp / "orthanc", node_port=free_port())
    (tmp / "orthanc").mkdir()
    orthanc.start(orthanc_exe)
    try:
        senders = [f"MODALITY{i + 1}" for i in range(args.senders)]
        dest = Peer("PACS", ORTHANC_AET, "127.0.0.1", orthanc.dicom_port, (ROLE_RESULTS,))
        model = None
        if args.model == "tiny":
            from training.model.modelfile import ModelInfo, save_model
            from training.model.networks import build_model

            torch.manual_seed(0)
            model = save_model(build_model("resnet50", "scratch", input_size=64),
                               ModelInfo(arch="resnet50", input_size=64), tmp / "tiny.safetensors")
        elif args.model != "shipped":
            model = Path(args.model)
        cfg = NodeConfig(ae_title=NODE_AET, port=0, store=tmp / "store", peers=[dest], allowed_calling_ae_titles=senders,
                         model=model, threads=args.threads, lung_attention=not args.no_lung_attention,
                         retry_seconds=1, retry_max_seconds=2)
        clf = load_classifier(cfg)
        print(f"model: {clf.loaded.display_name}, {args.threads} torch thread(s), lung attention "
              f"{'on' if cfg.lung_attention else 'off'}; {args.images} images, {args.senders} senders")
        # the images: studies of 5, spread over the senders
        per_sender: list[list[Path]] = [[] for _ in senders]
        studies = []
        for k in range(0, args.images, 5):
            n = min(5, args.images - k)
            files = radiographs(tmp / "src" / f"s{k:04d}", data, n, patient=f"BENCH-{k:04d}")
            studies.append((str(pydicom.dcmread(files[0]).StudyInstanceUID), n))
            per_sender[(k // 5) % len(senders)].extend(files)
        node = Node(cfg, clf)
        port = node.start()
        t0 = time.perf_counter()
        procs = [subprocess.Popen([storescu, "-R", "-xy", "-aet", ae, "-aec", NODE_AET, "127.0.0.1", str(port),
                                   *map(str, files)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for ae, files in zip(senders, per_sender) if files]
        rcs = [pr.wait() for pr in procs]
        t_recv = time.perf_counter() - t0
        counts = lambda: node.store.counts()  # noqa: E731
        received = lambda: sum(counts()[s] for s in ("inbox", "images", "unprocessable"))  # noqa: E731
        print(f"received {received()} of {args.images} in {t_recv:.1f} s = {received() / t_recv:.1f} images/s "
              f"(senders' exit codes {rcs}), while classifying")
        while counts()["inbox"]:
            time.sleep(0.5)
        t_cls = time.perf_counter() - t0
        done = counts()["images"]
        print(f"classified {done} in {t_cls:.1f} s from the first byte = {done / t_cls:.2f} images/s end to end "
              f"(SR + SC written for each)")
        deadline = time.time() + 600
        while (counts()["outbox"] or len(list((cfg.store / "sent").glob("*/*.dcm"))) < 2 * done) \
                and time.time() < deadline:
            time.sleep(0.5)
        t_all = time.perf_counter() - t0
        sent = len(list((cfg.store / "sent").glob("*/*.dcm")))
        print(f"results acknowledged by Orthanc: {sent} objects after {t_all:.1f} s")
        missing = 0
        for study, n in studies:
            cls = [i["SOPClassUID"] for i in orthanc.study_instances(study)]
            want = {"1.2.840.10008.5.1.4.1.1.88.33": n, "1.2.840.10008.5.1.4.1.1.7": n}
            missing += sum(max(0, k - cls.count(uid)) for uid, k in want.items())
        print(f"checked in Orthanc (REST): {len(studies)} studies, {missing} result object(s) missing; "
              f"unprocessable {counts()['unprocessable']}")

        # ------------------------------------------------------------ robustness
        print("\nrobustness:")
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, generate_uid
        from pynetdicom import AE

        before = received()
        good = pydicom.dcmread(radiographs(tmp / "src" / "rb", data, 1, patient="ROBUST")[0])
        good.decompress()
        ae = AE(ae_title=senders[0])
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1", ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
        sock, real_send, calls = assoc.dul.socket, assoc.dul.socket.send, [0]

        def dropping_send(b):
            calls[0] += 1
            if calls[0] == 20:
                sock.socket.shutdown(socket.SHUT_RDWR)
            return real_send(b)

        sock.send = dropping_send
        status = assoc.send_c_store(good)
        time.sleep(1)
        print(f"  sender dropped mid-transfer: acknowledged={bool(status)}, images stored {received() - before}; log: "
              + next((ln for ln in log_lines.lines if "dropped the connection" in ln or "aborted" in ln), "NONE"))
        bad = Dataset()
        bad.SOPClassUID, bad.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1", generate_uid()
        bad.file_meta = FileMetaDataset()
        bad.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
        st = assoc.send_c_store(bad)
        assoc.release()
        print(f"  malformed dataset: status 0x{st.Status:04X}; log: "
              + next((ln for ln in log_lines.lines if "malformed" in ln), "NONE"))
        node.config.peers = [Peer("PACS", ORTHANC_AET, "127.0.0.1", free_port(), (ROLE_RESULTS,))]  # down
        assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
        good.SOPInstanceUID = generate_uid()
        st = assoc.send_c_store(good)
        assoc.release()
        while counts()["inbox"] or not any(node.store.send_status(s).failing for s in node.store.outbox_studies()):
            time.sleep(0.5)
        print(f"  results destination down: store {counts()}; log: "
              + next((ln for ln in log_lines.lines if "not sent" in ln), "NONE"))
        node.config.peers = [dest]  # back up: the automatic retry sends it
        while counts()["outbox"]:
            time.sleep(0.5)
        print(f"  destination back: outbox empty after the automatic retry; sent {len(list((cfg.store / 'sent').glob('*/*.dcm')))} objects in all")
        node.stop()
        lost = args.images + 1 - counts()["images"]
        print(f"\nimages lost: {lost}; result objects missing in Orthanc: {missing}")
    finally:
        orthanc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
