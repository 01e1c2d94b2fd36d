"""The training run folder: the one module that knows its layout (every file name), and its file-system failures in words a user can act on.

Layout (the classifier trainer, ``training.train.trainer``; every other
module asks the functions here for a path)::

    config.json  split.csv  data.json  events.jsonl
    checkpoints/<arch>_last.pt   (each epoch, atomic: resume point)
    checkpoints/<arch>_best.pt   (best epoch by the paper's rule)
    <arch>/history.csv|json  predictions.json  metrics.json (written last: the model is finished)
    <arch>/curves.png  confusion.png  reliability.png
    models/<arch>.safetensors    (written once a model is finished and tested)
    report.md  report.json  confusion_all.png

A full disk, a read-only or unwritable output folder, or a run folder deleted
while training runs surface deep inside ``torch.save``, safetensors or
matplotlib as ``OSError`` (or as a ``RuntimeError`` / ``SafetensorError``
that only carries the OS error in its text).  :func:`write_error` turns such an
exception into a :class:`training.common.errors.DataError` with one plain line;
:func:`require` stops a run whose folder has disappeared (the atomic writers
would otherwise silently re-create an empty one).
"""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path
from typing import Callable, Union

from training.common.errors import DataError

__all__ = ["write_error", "require", "config_file", "split_file", "data_file", "events_file", "report_md",
           "report_json", "confusion_all", "checkpoint_files", "model_file", "arch_dir", "history_csv",
           "history_json", "predictions_file", "metrics_file", "CONFIG", "SPLIT", "DATA", "EVENTS", "REPORT_MD",
           "REPORT_JSON", "CONFUSION_ALL", "HISTORY_CSV", "HISTORY_JSON", "PREDICTIONS", "METRICS", "CURVES",
           "CONFUSION", "RELIABILITY"]

# -- layout: the file names, and the path of each file in a run folder ``run_dir`` --
CONFIG, SPLIT, DATA, EVENTS = "config.json", "split.csv", "data.json", "events.jsonl"
REPORT_MD, REPORT_JSON, CONFUSION_ALL = "report.md", "report.json", "confusion_all.png"
CHECKPOINTS, MODELS = "checkpoints", "models"
# in <arch>/ (metrics.json is written last: its presence marks the model finished)
HISTORY_CSV, HISTORY_JSON, PREDICTIONS, METRICS = "history.csv", "history.json", "predictions.json", "metrics.json"
CURVES, CONFUSION, RELIABILITY = "curves.png", "confusion.png", "reliability.png"

RunPath = Callable[[Union[str, Path]], Path]
ModelPath = Callable[[Union[str, Path], str], Path]


def _in_run(name: str) -> RunPath:
    return lambda run_dir: Path(run_dir) / name


def _in_model(name: str) -> ModelPath:
    return lambda run_dir, arch: arch_dir(run_dir, arch) / name


config_file, split_file, data_file, events_file = map(_in_run, (CONFIG, SPLIT, DATA, EVENTS))
report_md, report_json, confusion_all = map(_in_run, (REPORT_MD, REPORT_JSON, CONFUSION_ALL))
history_csv, history_json, predictions_file, metrics_file = map(_in_model, (HISTORY_CSV, HISTORY_JSON, PREDICTIONS,
                                                                           METRICS))


def arch_dir(run_dir: str | Path, arch: str) -> Path:
    """The folder of one model's results (history, predictions, metrics, figures)."""
    return Path(run_dir) / arch


def model_file(run_dir: str | Path, arch: str) -> Path:
    return Path(run_dir) / MODELS / f"{arch}.safetensors"


def checkpoint_files(run_dir: str | Path, arch: str) -> tuple[Path, Path]:
    """(last epoch, best epoch) checkpoints of ``arch``."""
    ck = Path(run_dir) / CHECKPOINTS
    return ck / f"{arch}_last.pt", ck / f"{arch}_best.pt"


# -- failures ----------------------------------------------------------------

_RESUME = "finished epochs are kept in the run folder, and the run can be resumed once this is fixed"


def _free_text(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f", {free / 1e6:.0f} MB free" if free < 1e9 else f", {free / 1e9:.1f} GB free"


def require(run_dir: str | Path) -> None:
    """Raise ``DataError`` when the run folder no longer exists."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"The run folder {run_dir} was deleted or moved while training; training stopped. "
                        "Start again with a new run folder.", code="run_folder")


def _errno_of(exc: BaseException) -> int | None:
    err = getattr(exc, "errno", None)
    if isinstance(err, int):
        return err
    m = re.search(r"os error (\d+)", str(exc))  # safetensors (Rust): "I/O error: No space left (os error 28)"
    return int(m.group(1)) if m else None


def write_error(exc: BaseException, run_dir: str | Path) -> DataError | None:
    """A ``DataError`` describing ``exc`` when it is a failure to write the run
    folder; ``None`` for anything else (the caller re-raises it unchanged)."""
    run_dir = Path(run_dir)
    err = _errno_of(exc)
    filename = getattr(exc, "filename", None)
    name = Path(filename).name if filename else ""
    inside = False
    if filename:
        try:
            Path(filename).resolve().relative_to(run_dir.resolve())
            inside = True
        except (ValueError, OSError):
            inside = False
    about = f" ({name})" if name else ""
    if err in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        what = "is full" if err == errno.ENOSPC else "has reached its quota"
        return DataError(f"The disk holding the run folder {run_dir} {what}{_free_text(run_dir)}; training stopped "
                         f"while saving{about}. Free some space: {_RESUME}.", code="disk_full")
    if err == errno.EFBIG:
        return DataError(f"Saving{about} in the run folder {run_dir} hit the system's file-size limit; training "
                         f"stopped. Raise the limit or use another disk: {_RESUME}.", code="disk_full")
    if err == errno.EROFS:
        return DataError(f"The run folder {run_dir} is on a read-only disk; training cannot save anything there. "
                         "Choose an output folder on a writable disk.", code="read_only")
    if err in (errno.EACCES, errno.EPERM) and (inside or not filename):
        return DataError(f"This program may not write in the run folder {run_dir} (permission denied{', ' + name if name else ''}). "
                         "Choose another output folder or fix its permissions.", code="read_only")
    if not run_dir.is_dir():  # checked after the causes above: a folder that could not be created is not "deleted"
        return DataError(f"The run folder {run_dir} was deleted or moved while training; training stopped. "
                         "Start again with a new run folder.", code="run_folder")
    if err == errno.ENOENT and inside:
        return DataError(f"A file or folder inside the run folder {run_dir} disappeared while training{about}; "
                         "training stopped. Start again with a new run folder.", code="run_folder")
    if err is not None and inside:
        reason = getattr(exc, "strerror", None) or str(exc)
        return DataError(f"Saving{about} in the run folder {run_dir} failed ({reason}); training stopped: "
                         f"{_RESUME}.", code="run_folder")
    return None
