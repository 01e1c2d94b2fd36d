"""The node's loop without a window: Storage SCP -> store -> gate + classifier
-> SR/SC in the outbox -> results destination.  Used by ``xray-node``
(``training.cli.node``) and by the benchmark; the app runs the same pieces in
its workers.

``start()`` first finishes what a previous run left (images received but not
classified, results not yet sent), then listens.  Classification (the worker
thread) and sending (the sender thread, ``sender.ResultSender.run``) run
apart: a hung results destination never delays a classification.  ``stop()`` stops listening
first (an image cut off mid-transfer was never acknowledged, so its sender
still has it), then lets the worker finish the image in hand; images still in
the inbox are classified after the next start."""

from __future__ import annotations

import logging
import threading

from .config import NodeConfig
from .processor import Processor
from .scp import StorageServer
from .sender import ResultSender
from .store import NodeStore

log = logging.getLogger("xray_node")


def load_classifier(config: NodeConfig):
    """The classifier the node uses: the configured (or shipped) model with the shipped gate."""
    import torch

    from training.common.errors import XrayError
    from training.common.resources import default_model_path
    from training.inference.classifier import Classifier

    torch.set_num_threads(int(config.threads))
    path = config.model or default_model_path()
    if path is None:
        raise XrayError("No model file is configured and no shipped model is installed: set [classifier] model "
                        "in the node configuration.", code="model")
    clf = Classifier.from_file(path, device="cpu", decode_workers=1)
    if config.threshold is not None:
        clf.threshold = config.threshold
    return clf


class Node:
    def __init__(self, config: NodeConfig, classifier=None, *, on_result=None, lock=None):
        self.config = config
        self.lock = lock
        self.store = NodeStore(config.store)
        self.classifier = classifier
        self.on_result = on_result
        self.server = StorageServer(config, self.store, on_received=lambda _p: self._wake.set())
        self.sender = ResultSender(config, self.store)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sender_thread: threading.Thread | None = None
        self.processed = 0
        self.idle = threading.Event()  # set while nothing is waiting in the inbox

    @property
    def port(self) -> int | None:
        return self.server.port

    def start(self, *, listen: bool = True) -> int | None:
        """Start the worker (and, with ``listen``, the Storage SCP); returns the port listened on."""
        if self.classifier is None:
            self.classifier = load_classifier(self.config)
        self.processor = Processor(self.store, self.classifier, lung_attention=self.config.lung_attention,
                                   on_result=self._on_result, lock=self.lock)
        left = self.store.counts()
        if left["inbox"] or left["outbox"]:
            log.info("resuming: %d image(s) received but not classified, %d result object(s) not yet sent",
                     left["inbox"], left["outbox"])
        port = self.server.start() if listen else None
        self._thread = threading.Thread(target=self._run, name="xray-node-worker", daemon=True)
        self._thread.start()
        if self.config.auto_send:  # sending has its own thread: a hung PACS never holds up classification
            self._sender_thread = threading.Thread(target=self.sender.run, args=(self._stop,),
                                                   name="xray-node-sender", daemon=True)
            self._sender_thread.start()
        return port

    def _on_result(self, path, pred, written) -> None:
        self.sender.enqueue(path.parent.name)
        if self.on_result is not None:
            self.on_result(path, pred, written)

    def stop(self, timeout: float | None = 120.0) -> None:
        self.server.stop()
        self._stop.set()
        self._wake.set()
        self.sender.enqueue(None)
        for thread in (self._thread, self._sender_thread):  # a send in hand ends within the network timeouts
            if thread is not None:
                thread.join(timeout)
        counts = self.store.counts()
        log.info("stopped; %d image(s) wait in the inbox and %d result object(s) in the outbox for the next start",
                 counts["inbox"], counts["outbox"])

    def wake(self) -> None:
        """Look at the inbox now (images were added by a retrieve)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.store.pending():
                    self.idle.clear()
                    self.processed += self.processor.process_pending(self._stop)
                if self._stop.is_set():
                    break
                if not self.store.pending():
                    self.idle.set()
            except Exception as exc:  # the loop never dies; the images stay in the store
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
                log.error("the node's worker hit an error (%s) and will try again", why)
                self._stop.wait(5.0)
            self._wake.wait(1.0)
            self._wake.clear()


__all__ = ["Node", "load_classifier"]
