"""Send results (SR + secondary capture) from the store's outbox to the results
destination, on the sender's own thread (``ResultSender.run``), apart from
classification: a PACS that is down, slow or hung (it accepts the TCP
connection and never answers) costs the sender at most the short connect /
ACSE / DIMSE timeouts of ``NodeConfig`` per attempt and never delays the
classifier.

The outbox is the queue that survives a restart; ``enqueue`` only wakes the
sender when a result was written.  A result leaves the outbox only when the
destination acknowledged it; a failure is recorded per study (attempts, the
reason, when to try again: ``retry_seconds`` doubling up to
``retry_max_seconds``) and the files stay where they are.  When the
destination cannot be reached at all, the whole round stops there (the other
studies wait for the same back-off instead of each paying the timeout)."""

from __future__ import annotations

import logging
import queue
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
        self._lock = threading.Lock()  # the node's sender and the app's "Send" never send one study twice at once
        self._queue: queue.Queue = queue.Queue()
        self._peer_retry_at = 0.0  # the destination did not answer: no automatic try before this (time.time())
        self._peer_failures = 0
        self._unreachable = False  # the last attempt could not reach the destination at all

    def destination(self) -> Peer | None:
        try:
            return self.config.peer(ROLE_RESULTS)
        except ConfigError:
            return None

    def _delay(self, attempts: int) -> float:
        return min(self.config.retry_seconds * 2 ** max(0, attempts - 1), self.config.retry_max_seconds)

    # ------------------------------------------------------------- sending
    def send_study(self, study: str, peer: Peer | None = None) -> SendStatus:
        """Send everything of ``study`` in the outbox now (a retry ignores the back-off)."""
        with self._lock:
            return self._send_study(study, peer)

    def _send_study(self, study: str, peer: Peer | None) -> SendStatus:
        self._unreachable = False
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
            self._peer_failures, self._peer_retry_at = 0, 0.0
        else:
            status.attempts += 1
            why = outcome.error or "; ".join(f"{p.name}: {r}" for p, r in outcome.failed[:3])
            delay = self._delay(status.attempts)
            status.last_error = why
            status.next_try = time.time() + delay
            left = len(files) - len(outcome.sent)
            if outcome.error and not outcome.sent:  # nothing got through: the destination itself is the problem
                self._unreachable = True
                self._peer_failures += 1
                self._peer_retry_at = time.time() + self._delay(self._peer_failures)
            elif outcome.sent:
                self._peer_failures, self._peer_retry_at = 0, 0.0
            log.warning("results of study %s not sent to %s (attempt %d): %s; %d object(s) kept in the outbox, "
                        "next try in %.0f s", study, peer.name, status.attempts, why.rstrip("."), left, delay)
        self.store.write_send_status(study, status)
        return status

    def send_due(self, stop: threading.Event | None = None) -> int:
        """Send every study whose back-off has passed; returns how many studies were tried.  When the
        destination cannot be reached, the round ends: the other studies wait for its back-off."""
        if time.time() < self._peer_retry_at:
            return 0
        due = self.store.due_studies()
        tried = 0
        for i, study in enumerate(due):
            if stop is not None and stop.is_set():
                break
            status = self.send_study(study)
            tried += 1
            if self._unreachable:
                self._hold(due[i + 1:], status.last_error)
                break
        return tried

    def _hold(self, studies: list[str], why: str) -> None:
        """Studies not tried because the destination did not answer: say so, and when the next try is."""
        for study in studies:
            status = self.store.send_status(study)
            status.last_error = f"waiting: the results destination did not answer ({why})"
            status.next_try = max(status.next_try, self._peer_retry_at)
            self.store.write_send_status(study, status)
        if studies:
            log.info("results of %d other study(ies) wait until the results destination answers again "
                     "(next try in %.0f s)", len(studies), max(0.0, self._peer_retry_at - time.time()))

    # ------------------------------------------------------------- the thread
    def enqueue(self, study: str | None = None) -> None:
        """A result of ``study`` was written (or, with None, just look at the outbox now)."""
        self._queue.put(study)

    def _next_wait(self) -> float:
        now = time.time()
        wait = 1.0  # results written while the node was stopped, a status edited: looked at every second
        if self._peer_retry_at > now:
            wait = min(wait, self._peer_retry_at - now)
        return max(0.05, wait)

    def run(self, stop: threading.Event) -> None:
        """The sender's loop (its own thread) until ``stop`` is set; it never dies on an error."""
        while not stop.is_set():
            try:
                self.send_due(stop)
            except Exception as exc:  # pragma: no cover - defensive: the files stay in the outbox
                log.error("the node's sender hit an error (%s) and will try again", type(exc).__name__)
                stop.wait(5.0)
            try:
                self._queue.get(timeout=self._next_wait())
                while True:  # several results at once: one round
                    self._queue.get_nowait()
            except queue.Empty:
                pass


__all__ = ["ResultSender"]
