"""The node's local store: every received image and every result stays on disk
until its job is done, so a crash, a SIGTERM or a peer that is down loses
nothing.

Layout under the store folder (``<study>`` and ``<image>`` are the first 16
hex digits of the SHA-256 of the Study / SOP Instance UID, so no patient
identifier appears in a file name)::

    inbox/<study>/<image>.dcm     received (C-STORE acknowledged), not yet classified
    images/<study>/<image>.dcm    classified; results are in outbox/ or sent/
    outbox/<study>/*_SR.dcm, *_SC.dcm, send_status.json
                                  results waiting for the results destination
    sent/<study>/*.dcm            results the destination acknowledged
    unprocessable/<study>/<image>.dcm + .txt
                                  images no result could be written for, with the reason

Every file is written atomically (``training.common.atomic``) or moved by rename
within the store, so each stage holds whole files only.  An image in inbox/
whose SR already exists (the process stopped between writing the results and
moving the image) is only moved, not classified again."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from training.common import atomic
from training.common.errors import XrayError

STAGES = ("inbox", "images", "outbox", "sent", "unprocessable")
STATUS_FILE = "send_status.json"


def uid_key(uid: str) -> str:
    """16 hex digits naming a study or image in the store (no identifiers in paths)."""
    return hashlib.sha256(str(uid).strip().encode("ascii", "replace")).hexdigest()[:16]


@dataclass
class SendStatus:
    attempts: int = 0
    last_error: str = ""
    next_try: float = 0.0  # time.time() before which no automatic retry is made
    sent: int = 0  # objects acknowledged so far for this study

    @property
    def failing(self) -> bool:
        return bool(self.last_error)


class NodeStore:
    def __init__(self, root):
        self.root = Path(root)
        try:
            for stage in STAGES:
                (self.root / stage).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise XrayError(f"Cannot create the node's store in {self.root}: {exc.strerror or exc}.",
                            code="store") from None

    # --------------------------------------------------------------- receive
    def image_paths(self, study_uid: str, sop_uid: str) -> tuple[Path, Path]:
        s, i = uid_key(study_uid), uid_key(sop_uid)
        return self.root / "inbox" / s / f"{i}.dcm", self.root / "images" / s / f"{i}.dcm"

    def put(self, data: bytes, study_uid: str, sop_uid: str) -> tuple[Path, bool]:
        """Store a received DICOM file (bytes with File Meta); returns (path, new).

        ``new`` is False for an image this node already holds (a resend): it is
        acknowledged but not classified twice."""
        inbox, done = self.image_paths(study_uid, sop_uid)
        if done.exists():
            return done, False
        atomic.write_bytes(inbox, data)
        return inbox, True

    def pending(self) -> list[Path]:
        """Received images not yet classified, oldest first."""
        found = []
        for p in (self.root / "inbox").glob("*/*.dcm"):
            try:  # the worker may move a file between the listing and the stat
                found.append((p.stat().st_mtime, p.name, p))
            except OSError:
                continue
        return [p for _, _, p in sorted(found)]

    # --------------------------------------------------------------- results
    def results_dir(self, image: Path) -> Path:
        return self.root / "outbox" / image.parent.name

    def has_results(self, image: Path) -> bool:
        """An SR for ``image`` exists (in outbox/ or sent/): its classification is done."""
        study = image.parent.name
        pattern = f"{image.stem}_*_SR.dcm"
        return any(any((self.root / stage / study).glob(pattern)) for stage in ("outbox", "sent"))

    def drop_partial_results(self, image: Path) -> None:
        """Remove an SC written for ``image`` whose SR never followed (stopped in between)."""
        for p in (self.root / "outbox" / image.parent.name).glob(f"{image.stem}_*_SC.dcm"):
            p.unlink(missing_ok=True)

    def finish(self, image: Path) -> Path:
        """inbox -> images (a rename: atomic)."""
        target = self.root / "images" / image.parent.name / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(image, target)  # the empty inbox folder stays: a receive may be writing into it
        return target

    def set_aside(self, image: Path, reason: str) -> Path:
        """inbox -> unprocessable, with the reason next to it."""
        target = self.root / "unprocessable" / image.parent.name / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(target.with_suffix(".txt"), reason + "\n")
        os.replace(image, target)  # the empty inbox folder stays: a receive may be writing into it
        return target

    # ------------------------------------------------------------------ send
    def outbox_studies(self) -> list[str]:
        out = []
        for d in sorted((self.root / "outbox").iterdir()):
            if d.is_dir() and any(d.glob("*.dcm")):
                out.append(d.name)
        return out

    def outbox_files(self, study: str) -> list[Path]:
        """Results of ``study`` waiting to be sent: secondary captures before the SRs that refer to them."""
        files = sorted((self.root / "outbox" / study).glob("*.dcm"))
        return sorted(files, key=lambda p: (not p.name.endswith("_SC.dcm"), p.name))

    def mark_sent(self, result: Path) -> Path:
        target = self.root / "sent" / result.parent.name / result.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(result, target)
        return target

    def send_status(self, study: str) -> SendStatus:
        p = self.root / "outbox" / study / STATUS_FILE
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
            return SendStatus(**{k: raw[k] for k in ("attempts", "last_error", "next_try", "sent") if k in raw})
        except (OSError, ValueError, TypeError):
            return SendStatus()

    def write_send_status(self, study: str, status: SendStatus) -> None:
        folder = self.root / "outbox" / study
        if not any(folder.glob("*.dcm")):  # everything sent: no status to keep
            (folder / STATUS_FILE).unlink(missing_ok=True)
            return
        atomic.write_text(folder / STATUS_FILE, json.dumps(status.__dict__, indent=1))

    def due_studies(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        return [s for s in self.outbox_studies() if self.send_status(s).next_try <= now]

    # --------------------------------------------------------------- summary
    def counts(self) -> dict[str, int]:
        return {stage: sum(1 for _ in (self.root / stage).glob("*/*.dcm")) for stage in STAGES}


__all__ = ["NodeStore", "SendStatus", "uid_key", "STAGES"]
