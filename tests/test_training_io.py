"""Training run folders that fail under the trainer (issue 13, item 3): a full
disk, an unwritable or read-only folder, a run folder deleted while training,
and the temporary files an interrupted atomic write leaves behind."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from training.common import atomic
from training.common.errors import DataError
from training.train.config import TrainConfig, make_config
from training.train.run_folder import write_error
from training.train.trainer import run_training, train_events

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, cxr1000) -> Path:
    root = tmp_path_factory.mktemp("tinyio")
    for cls in ("COVID", "Normal"):
        (root / cls).mkdir()
        for p in sorted((cxr1000 / cls).glob("*.png"))[:10]:
            shutil.copy(p, root / cls / p.name)
    return root


def _config(data: Path, out: Path, **kw):
    base = dict(input_size=32, epochs=2, batch_size=8, threads=1, models=["lstm"])
    base.update(kw)
    return make_config([data], out, "paper", **base)


# ------------------------------------------------------------------ stale temporary files


def _interrupted_write(target: Path) -> None:
    """A real interrupted atomic write: the process dies inside atomic_path."""
    code = ("import os, sys\nfrom training.common import atomic\n"
            "with atomic.atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_bytes(b'half a checkpoint')\n    os._exit(1)\n")
    subprocess.run([sys.executable, "-c", code, str(target)], env=dict(os.environ, PYTHONPATH=str(REPO)),
                   timeout=60, check=False)


def test_resume_removes_only_our_stale_temp_files(tiny_data, tmp_path):
    out = tmp_path / "run"
    run_training(_config(tiny_data, out, epochs=1))
    _interrupted_write(out / "checkpoints" / "lstm_last.pt")
    _interrupted_write(out / "lstm" / "history.csv")
    stale = sorted(p.name for p in out.rglob("*.tmp"))
    assert len(stale) == 2 and all(atomic.is_temp_name(n) for n in stale)
    keep = [out / "notes.tmp", out / ".hidden.tmp", out / "x.abcd1234.tmp", out / ".x.ABCD1234.tmp",
            out / "lstm" / ".history.csv.abc.tmp"]
    for p in keep:
        p.write_text("a user's file")
    events = []
    run_training(TrainConfig.load(out / "config.json"), on_event=events.append)
    assert not any(atomic.is_temp_name(p.name) for p in out.rglob("*.tmp"))
    assert all(p.read_text() == "a user's file" for p in keep)
    assert any("Removed 2 unfinished temporary file(s)" in e.message for e in events)


# ------------------------------------------------------------------ run folder deleted while training


def test_a_run_folder_deleted_while_training_stops_with_a_clear_reason(tiny_data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(DataError) as info:
        for ev in train_events(_config(tiny_data, out)):
            if ev.kind == "epoch" and ev.epoch == 1:
                shutil.rmtree(out)
    assert "was deleted or moved while training" in info.value.reason
    assert str(out) in info.value.reason
    assert not out.exists()  # not silently re-created by the next save


# ------------------------------------------------------------------ disk full (a real write failure)


def test_a_write_failure_ends_xray_train_with_a_plain_message(tiny_data, tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse the first checkpoint (EFBIG), as a
    full disk refuses it with ENOSPC: exit code 2, one line, no traceback."""
    out = tmp_path / "run"
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (30000, resource.RLIM_INFINITY))\n"
            "from training.cli.train import main\n"
            f"sys.exit(main(['--data', {str(tiny_data)!r}, '--out', {str(out)!r}, '--models', 'lstm',"
            " '--input-size', '32', '--epochs', '1', '--batch-size', '8', '--threads', '1', '--quiet']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "file-size limit" in done.stderr and str(out) in done.stderr
    assert not [p for p in out.rglob("*.tmp")]  # the failed write cleaned up after itself


# ------------------------------------------------------------------ the wording, errno by errno


@pytest.mark.parametrize("err, code, words", [
    (errno.ENOSPC, "disk_full", "is full"),
    (errno.EDQUOT, "disk_full", "quota"),
    (errno.EROFS, "read_only", "read-only disk"),
    (errno.EACCES, "read_only", "permission denied"),
    (errno.EIO, "run_folder", "failed"),
])
def test_write_errors_are_named(tmp_path, err, code, words):
    exc = OSError(err, os.strerror(err), str(tmp_path / "checkpoints" / ".lstm_last.pt.abcd1234.tmp"))
    problem = write_error(exc, tmp_path)
    assert isinstance(problem, DataError) and problem.code == code
    assert words in problem.reason and str(tmp_path) in problem.reason
    assert "Errno" not in problem.reason and "Traceback" not in problem.reason


def test_write_errors_without_errno_are_recognised(tmp_path):
    exc = RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")  # safetensors
    assert write_error(exc, tmp_path).code == "disk_full"


def test_other_failures_are_left_alone(tmp_path):
    assert write_error(RuntimeError("CUDA out of memory"), tmp_path) is None
    assert write_error(PermissionError(errno.EACCES, "Permission denied", "/elsewhere/data.png"), tmp_path) is None


def test_an_output_folder_that_cannot_be_created_is_not_called_deleted(tmp_path):
    run = tmp_path / "ro" / "run"
    exc = OSError(errno.EROFS, os.strerror(errno.EROFS), str(run))
    problem = write_error(exc, run)
    assert problem.code == "read_only" and "deleted" not in problem.reason
