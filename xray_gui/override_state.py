"""The "Classify anyway" state of the current image, without Qt: the refusal
shown for it (a DICOM header refusal or the chest-radiograph gate's) and which
of the two the user overrode.

One at a time: after a header refusal is overridden the gate still applies
(and may refuse in its turn); after a gate refusal is overridden the result
is not valid (no verdict, here or in the PDF report)."""

from __future__ import annotations

from training.inference.result import GATE_CODE

GATE_TIP = ("Classify this image all the same. The result is marked “not valid” and shows no "
            "COVID / Normal verdict.")
HEADER_TIP = "Ignore the header check (modality / body part / view) and classify this image."


class Reason:
    """A refusal that is not an ``ImageRefused`` (the gate's, or a batch row's), shaped like one."""

    def __init__(self, reason: str, code: str):
        self.reason, self.code = reason or "not classified", code or ""


class OverrideState:
    """``refusal``: the ``ImageRefused`` (or :class:`Reason`) shown for the current
    image, None when none is; ``header``: the header refusal was overridden;
    ``gate``: the gate's refusal was overridden (results are then not valid)."""

    def __init__(self):
        self.refusal = None
        self.header = False
        self.gate = False

    def reset(self, *, header_overridden: bool = False) -> None:
        """A new image (or none): nothing refused, nothing overridden except, when
        asked, the header check (an image opened with "Classify anyway")."""
        self.refusal = None
        self.header = bool(header_overridden)
        self.gate = False

    @property
    def gate_refused(self) -> bool:
        """The refusal shown is the gate's."""
        return getattr(self.refusal, "code", "") == GATE_CODE

    def may_classify(self) -> bool:
        """A (new) model may classify the image: nothing refused, the header refusal
        overridden, or a gate refusal (the gate judges the image again)."""
        return self.refusal is None or self.header or self.gate_refused

    def override(self) -> bool:
        """The user overrode the shown refusal; True when it was the gate's."""
        gate = self.gate_refused
        if gate:
            self.gate = True
        else:
            self.header = True
        self.refusal = None
        return gate

    def key(self) -> tuple[bool, bool]:
        """What a result depends on: (header overridden, gate overridden)."""
        return self.header, self.gate

    @staticmethod
    def tip(code: str) -> str:
        """The tooltip of "Classify anyway" for a refusal with ``code``."""
        return GATE_TIP if code == GATE_CODE else HEADER_TIP
