"""Typed errors a user can cause.  Each carries a one-line reason meant for a
radiologist, not a traceback.  Front ends show ``str(err)``."""

from __future__ import annotations


class XrayError(Exception):
    """Base class: ``reason`` is one plain-language line; ``code`` a stable tag."""

    code = "error"

    def __init__(self, reason: str, *, code: str | None = None):
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.reason


class ImageRefused(XrayError):
    """An input file that cannot or must not be classified.

    ``code`` is one of: ``unreadable`` (path missing / no permission / a folder),
    ``empty`` (zero bytes), ``not_image`` (unknown format), ``corrupt``
    (truncated or damaged), ``no_pixels`` (DICOM without pixel data),
    ``multiframe``, ``modality`` (CT, MR, US ...), ``body_part`` (not chest),
    ``view`` (lateral), ``decoder`` (missing decompression plug-in),
    ``too_small``, ``too_large``, ``blank`` (every pixel about the same grey),
    ``invalid_pixels`` (NaN / infinite values), ``aspect`` (absurdly narrow
    or wide), ``timeout`` (decoding compressed pixel data ran past its time
    limit), ``cancelled`` (the program closed during the decode);
    ``not_chest_xray`` is the chest-radiograph gate's refusal
    (``training.inference.result.GATE_CODE``).
    """

    code = "refused"


class ModelFileError(XrayError):
    """A model file that cannot be used (truncated, tampered, incompatible);
    code ``self_test`` when the model loads but fails its start-up run."""

    code = "model_file"


class DataError(XrayError):
    """A training data folder that cannot be used, or a run folder that cannot
    be written (codes ``disk_full``, ``read_only``, ``run_folder``)."""

    code = "data"


class TrainingCancelled(XrayError):
    """Raised inside the trainer when the user cancels between batches."""

    code = "cancelled"
