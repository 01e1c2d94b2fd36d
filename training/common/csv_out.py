"""The core's one CSV writer: result CSVs that lose nothing (rows written as they are produced), and whole tables written atomically.

One dialect (a header row, ``\\n`` line ends, keys that are not columns
ignored): :class:`CsvResults` streams rows to a file as they come;
:func:`write_csv` writes a whole table at once, atomically (the run folder's
history and split, the evaluation's per-file predictions); :func:`csv_text`
gives the same table as text.

``CsvResults(path, columns)`` checks the target before any image is read
(a folder, or a folder that cannot be created or written, is refused at once
with a reason),
writes the header and then each row to ``.<name>.partial`` next to the
target, flushed row by row, and ``close()`` renames it into place.  Whatever
stops a batch - Ctrl-C, SIGTERM, a closed pipe, a crash - the rows done so
far are in the CSV (or, after ``kill -9``, in the ``.partial`` file).

Cells are made safe for spreadsheets (:func:`csv_cell`): a cell starting
with ``=``, ``+``, ``-`` or ``@`` gets a leading apostrophe (OWASP's
CSV-injection advice), and file names with bytes that are not UTF-8 are
written with ``\\xNN`` escapes instead of crashing the writer.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from training.common.atomic import _final_mode, write_text
from training.common.errors import XrayError

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A text cell: invalid UTF-8 (surrogate-escaped file names) as ``\\xNN``,
    formula-like text prefixed with an apostrophe."""
    text = "" if value is None else str(value)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "'" + text if text.startswith(FORMULA_START) else text


def _writer(fh, columns: Sequence[str]) -> csv.DictWriter:
    """The one dialect: the given columns, ``\\n`` line ends, keys not in ``columns`` ignored."""
    return csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> str:
    """A whole CSV (header, then ``rows``) as text."""
    buf = io.StringIO()
    w = _writer(buf, columns)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_csv(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> None:
    """Write a whole CSV at once, atomically (``training.common.atomic``)."""
    write_text(path, csv_text(columns, rows))


class CsvResults:
    def __init__(self, path: str | os.PathLike, columns: Sequence[str]):
        self.path = Path(path)
        if self.path.is_dir():
            raise XrayError(f"{self.path} is a folder; give a file name for the CSV.", code="output")
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise XrayError(f"Cannot create the folder {parent} for the CSV: {exc.strerror or exc}.",
                            code="output") from None
        self.partial = parent / f".{self.path.name}.partial"
        try:
            self._fh = open(self.partial, "w", newline="", encoding="utf-8", errors="backslashreplace")
        except OSError as exc:
            raise XrayError(f"Cannot write the CSV {self.path}: {exc.strerror or exc}.", code="output") from None
        self._writer = _writer(self._fh, columns)
        self._writer.writeheader()
        self._fh.flush()
        self.rows = 0

    def write(self, row: dict[str, str]) -> None:
        self._writer.writerow(row)
        self._fh.flush()
        self.rows += 1

    def close(self) -> Path:
        """Finish: the CSV holds every row written; returns its path."""
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            os.chmod(self.partial, _final_mode(self.path))
            os.replace(self.partial, self.path)
        return self.path

    def discard(self) -> None:
        """Nothing was classified (a usage error): leave no file behind."""
        if not self._fh.closed:
            self._fh.close()
        try:
            self.partial.unlink()
        except OSError:
            pass


__all__ = ["CsvResults", "csv_cell", "csv_text", "write_csv"]
