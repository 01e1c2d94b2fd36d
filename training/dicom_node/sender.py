"""Send results (SR + secondary capture) from the store's outbox to the results
destination.  A result leaves the outbox only when the destination
acknowledged it; a failure is recorded per study (attempts, the reason, when
to try again: ``retry_seconds`` doubling up to ``retry_max_seconds``) and the
files stay where they are."""

from __future__ import annotations

import logging
import threading
import time

from .config import ROLE_RESULTS, ConfigError, NodeConfig, Peer
from .scu import send_files
from .store import NodeStore, SendStatus

log = logging.getLogger("xray_node")


class ResultSender:
    def __init__(self, config: NodeConfig, store: NodeStore):
        self.config = config
        self.store = store
        self._lock = threading.Lock()  # the node's worker and the app's "Send" never send one study twice at once

    def destination(self) -> Peer | None:
        try:
            return self.config.peer(ROLE_RESULTS)
        except ConfigError:
            return None

    def send_study(self, study: str, peer: Peer | None = None) -> SendStatus:
        """Send everything of ``study`` in the outbox now (a retry ignores the back-off)."""
        with self._lock:
            return self._send_study(study, peer)

    def _send_study(self, study: str, peer: Peer | None) -> SendStatus:
        peer = peer or self.destination()
        status = self.store.send_status(study)
        files = self.store.outbox_files(study)
        if not files:
            return status
        if peer is None:
            status.last_error = "no results destination is configured"
            status.next_try = time.time() + self.config.retry_max_seconds
            self.store.write_send_status(study, status)
            return status
        outcome = send_files(self.config, peer, files)
        for f in outcome.sent:
            self.store.mark_sent(f)
        status.sent += len(outcome.sent)
        if outcome.ok:
            log.info("sent %d result object(s) of study %s to %s", len(outcome.sent), study, peer.name)
            status.attempts, status.last_error, status.next_try = 0, "", 0.0
        else:
            status.attempts += 1
            why = outcome.error or "; ".join(f"{p.name}: {r}" for p, r in outcome.failed[:3])
            delay = min(self.config.retry_seconds * 2 ** (status.attempts - 1), self.config.retry_max_seconds)
            status.last_error = why
            status.next_try = time.time() + delay
            left = len(files) - len(outcome.sent)
            log.warning("results of study %s not sent to %s (attempt %d): %s; %d object(s) kept in the outbox, "
                        "next try in %.0f s", study, peer.name, status.attempts, why, left, delay)
        self.store.write_send_status(study, status)
        return status

    def send_due(self) -> int:
        """Send every study whose back-off has passed; returns how many studies were tried."""
        due = self.store.due_studies()
        for study in due:
            self.send_study(study)
        return len(due)


__all__ = ["ResultSender"]
