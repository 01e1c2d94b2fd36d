"""Write files the user keeps atomically: to a temporary name in the same
folder, flushed and fsynced, then renamed into place.  A crash or a cancel
leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Iterator

# mkstemp(prefix=".<name>.", suffix=".tmp"): tempfile's 8 random characters in between
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of :func:`atomic_path`'s temporary names
    (``.<target>.<8 random characters>.tmp``)."""
    return bool(_TEMP_NAME.match(name))


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files an interrupted atomic write left in
    ``folder`` and its sub-folders (only our own name pattern, only regular
    files, symbolic links are not followed); return what was removed.  Call it
    only when no other writer is active there (e.g. when a run resumes)."""
    removed: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for name in names:
            path = Path(root) / name
            if is_temp_name(name) and path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
    return removed


def _final_mode(target: Path) -> int:
    """The mode a plain ``open(target, 'w')`` would give: the old file's, or
    0666 minus the umask (mkstemp's 0600 would hide files from other users)."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _final_mode(target))
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> None:
    """``obj`` as indented JSON (numbers JSON does not know, e.g. numpy floats, as floats), ending in a newline."""
    write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result into place."""
    with atomic_path(path) as tmp:
        writer(tmp)
