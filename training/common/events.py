"""Training progress events: what the one trainer (``training.train.trainer.
train_events``) reports, by kind.  Torch-free, so a front end can compare
kinds without importing the trainer on its GUI thread."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class EventKind:
    """The kinds of :class:`Event`, by name (front ends compare with these, never with message text)."""

    LOG = "log"  # free text for the log view
    DATA = "data"  # the data set was read; metrics = data.json's summary
    MODEL_SKIPPED = "model_skipped"  # already finished in this run folder; metrics = {"result", "history"}
    MODEL_RESUMED = "model_resumed"  # a checkpoint was found; metrics = {"history"} (the finished epochs)
    MODEL_STARTED = "model_started"  # training begins (or resumes); metrics = {"history", "resumed_after"}
    BATCH = "batch"
    EPOCH = "epoch"
    EARLY_STOP = "early_stop"
    EVALUATING = "evaluating"  # testing the chosen epoch (``epoch``)
    MODEL_DONE = "model_done"  # metrics = the model's metrics.json
    DONE = "done"


@dataclass
class Event:
    """A progress report; ``kind`` is one of :class:`EventKind`."""

    kind: str
    message: str = ""
    model: str = ""
    model_index: int = 0
    model_count: int = 0
    epoch: int = 0
    epochs: int = 0
    batch: int = 0
    batches: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", 0, {}) or k == "kind"}


__all__ = ["Event", "EventKind"]
