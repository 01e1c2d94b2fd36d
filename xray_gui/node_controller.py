"""The app's DICOM node: receive images (Storage SCP), classify them with the
loaded model through the gate (the node's processor, under the app's model
lock), show them in the worklist grouped by study, and send the results to the
results destination, with per-study failures shown and a retry.  The network
and store work is the core's (``training.dicom_node``); this is the Qt glue."""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal


class NodeController(QObject):
    imageClassified = Signal(object, object)  # image path in the store, Prediction
    receivingChanged = Signal(bool)
    sendProblems = Signal(object)  # {study key: reason} of results not yet acknowledged
    sent = Signal(object)  # a "Send" finished: {study key: reason} still failing

    def __init__(self, settings, notifier, classifier_fn, parent=None):
        super().__init__(parent)
        self.settings, self.notifier, self.classifier_fn = settings, notifier, classifier_fn
        self.node = None
        self.listening = False
        self._known_problems: dict[str, str] = {}
        self._poll = QTimer(self)
        self._poll.setInterval(2000)
        self._poll.timeout.connect(self.check_outbox)

    @property
    def config(self):
        from .network_settings import load_network_config

        return load_network_config(self.settings)

    @property
    def store(self):
        return None if self.node is None else self.node.store

    def _start(self, listen: bool) -> bool:
        from training.common.errors import XrayError

        from .workers import MODEL_LOCK

        clf = self.classifier_fn()
        if clf is None:
            self.notifier.warning("No model loaded yet: received images are classified once a model is loaded.")
            return False
        self.stop()
        from training.dicom_node.service import Node

        node = Node(self.config, clf, lock=MODEL_LOCK,
                    on_result=lambda path, pred, _written: self.imageClassified.emit(path, pred))
        try:
            node.start(listen=listen)
        except XrayError as exc:
            self.notifier.error(exc.reason)
            return False
        self.node, self.listening = node, listen
        self._poll.start()
        return True

    def start_receiving(self) -> bool:
        ok = self._start(listen=True)
        if ok:
            cfg = self.node.config
            where = "this computer only" if cfg.host in ("127.0.0.1", "localhost", "::1") else cfg.host
            self.notifier.info(f"Receiving DICOM images as '{cfg.ae_title}' on port {self.node.port} ({where}).")
        self.receivingChanged.emit(self.listening)
        return ok

    def ensure_worker(self) -> bool:
        """A running node (listening or not) to classify retrieved images."""
        return self.node is not None or self._start(listen=False)

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop(timeout=30)
            self.node = None
        was, self.listening = self.listening, False
        self._poll.stop()
        if was:
            self.receivingChanged.emit(False)

    def model_changed(self, _classifier) -> None:
        """A new model: restart the node with it (the store keeps everything)."""
        if self.node is not None:
            self._start(listen=self.listening)

    def check_outbox(self) -> dict[str, str]:
        if self.node is None:
            return {}
        store = self.node.store
        problems = {s: st.last_error for s in store.outbox_studies() if (st := store.send_status(s)).failing}
        new = {s: why for s, why in problems.items() if self._known_problems.get(s) != why}
        if new:
            self.notifier.warning(f"Results of {len(problems)} study(ies) not sent yet (kept, retried "
                                  f"automatically; DICOM → Retry Sending Results): {next(iter(new.values()))}")
        self._known_problems = problems
        self.sendProblems.emit(problems)
        return problems

    def send(self, jobs, study: str | None = None) -> bool:
        """Send one study's results (``study``) or every study waiting, off the GUI thread.
        ``sent`` is emitted with {study: reason} of what still failed."""
        if self.node is None and not self.ensure_worker():
            return False
        studies = [study] if study is not None else self.node.store.outbox_studies()

        def on_item(item):
            problems = self.check_outbox()
            if study is not None:
                why = problems.get(study)
                if why:
                    self.notifier.warning(f"The results of this study were not sent (kept, to retry): {why}")
                else:
                    self.notifier.info("The results of this study were sent to the results destination.")
            elif not problems:
                self.notifier.info("All results were sent to the results destination.")
            self.sent.emit(problems)

        jobs.start("dicom_send", send_task, self.node.sender, studies, on_yield=on_item, context="Send results")
        return True


def send_task(sender, studies):
    for s in studies:
        sender.send_study(s)
    yield ("sent",)
