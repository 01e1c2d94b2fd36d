"""``xray-node``: the DICOM node without a window.

    xray-node --config node.toml

Receives CR/DX images (Storage SCP), classifies each through the
chest-radiograph gate and the model, writes a Comprehensive SR and a secondary
capture into new series of the image's study and sends them to the results
destination; see docs/DICOM_NODE.md.  Logs go to stderr without patient
identifiers.  SIGTERM or Ctrl-C stops it cleanly (exit 0); what it received
but did not classify yet is classified after the next start.  Exit code 2 on
a configuration, model or port problem."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

PROG = "xray-node"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="DICOM node: receive chest radiographs, classify them "
                                "(research use only), send DICOM SR + secondary capture results back.")
    p.add_argument("--config", required=True, metavar="FILE", help="node configuration (TOML, docs/DICOM_NODE.md)")
    p.add_argument("--check", action="store_true", help="check the configuration and C-ECHO each peer, then exit")
    p.add_argument("--verbose", action="store_true", help="more log lines")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # only the node's own lines (written without patient identifiers) at INFO; libraries that may print
    # dataset contents (highdicom, pydicom, pynetdicom) are held at ERROR (training.dicom_node.privacy)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    # Python warnings (a library's remark about a header value may quote it) go through logging and are dropped
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.ERROR)
    from training.dicom_node.privacy import quiet_dicom_libraries

    quiet_dicom_libraries()  # after pydicom's import, which resets its logger to WARNING
    log = logging.getLogger("xray_node")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from training.common.errors import XrayError
    from training.dicom_node.config import load_config

    try:
        config = load_config(args.config)
        from training.dicom_node.tls import check_tls

        check_tls(config)  # TLS on, or a TLS peer: its certificate, key and CA bundle must be usable
    except XrayError as exc:
        log.error("%s", exc.reason)
        return 2
    if config.listens_on_all_interfaces:
        log.warning("listening on all network interfaces (host %s): any computer that can reach this one may "
                    "connect; only the allowed calling AE titles may send", config.host)
    if config.accept_any_calling_ae:
        log.warning("accept_any_calling_ae is on: any calling AE title may send images to this node")
    if args.check:
        from training.dicom_node.scu import echo

        ok = True
        for peer in config.peers:
            res = echo(config, peer)
            log.info("%s (%s, %s): %s", peer.name, peer.ae_title, peer.address, res.message)
            ok &= res.ok
        return 0 if ok else 1

    from training.dicom_node.service import Node

    stop = threading.Event()

    def on_signal(signum, frame):
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        node = Node(config)
        node.start()
    except XrayError as exc:
        log.error("%s", exc.reason)
        return 2
    while not stop.wait(0.5):
        pass
    node.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
