"""How figures and failures are written for people: one place for each.

Torch-free, so the GUI, reports, model cards and command lines share it.

* :func:`ci_text` - a metric with its 95 % confidence interval.
* :func:`num_text` - a number, or a dash when it is missing or undefined (NaN).
* :func:`duration_text` - seconds as "42 s", "3 min 07 s", "1 h 05 min".
* :func:`sentence` / :func:`sentence_join` - messages and warnings with
  exactly one final full stop, clauses joined with "; " (never ".." or ".;").
* :func:`exception_text` - an exception as one bounded line: a typed core
  error's ``reason``, anything else as ``Type: first line``.
* :func:`version_label` - a model's name and version: "name vVERSION".
"""

from __future__ import annotations

import math
from typing import Any, Mapping

DASH = "\u2013"


def ci_text(m: Mapping[str, Any], key: str, *, label: bool = False, digits: int = 3) -> str:
    """``m[key]`` with ``m['ci95'][key]``: ``0.912 (0.88-0.94)``; ``label``
    adds "95 % CI"; a missing value is a dash, an undefined interval is left out."""
    v = m.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return DASH
    lo, hi = (m.get("ci95") or {}).get(key, (None, None))
    if lo is None or hi is None or lo != lo or hi != hi:  # NaN: undefined (e.g. no positive prediction)
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} ({'95 % CI ' if label else ''}{lo:.2f}-{hi:.2f})"


_END = ".;:, \t\n"


def sentence(text: str) -> str:
    """``text`` ending in exactly one full stop ('?' and '!' are kept; '' stays '')."""
    t = str(text).strip()
    if not t or t.endswith(("?", "!")):
        return t
    return t.rstrip(_END) + "."


def clause(text: str) -> str:
    """``text`` without its trailing punctuation, to be followed by more words."""
    return str(text).strip().rstrip(_END)


def sentence_join(parts, sep: str = "; ") -> str:
    """Non-empty ``parts`` joined with ``sep`` into one sentence with one final full stop."""
    items = [clause(p) for p in parts if p and clause(p)]
    return sentence(sep.join(items)) if items else ""


def num_text(v: Any, digits: int = 3) -> str:
    """``v`` with ``digits`` decimals; None or NaN (undefined, e.g. a loss that diverged) is a dash."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return DASH
    return f"{v:.{digits}f}"


def version_label(name: Any, version: Any) -> str:
    """A model as users see it named: ``name vVERSION`` (the app, CSV audit columns, PDF, DICOM SR/SC)."""
    return f"{name} v{version}"


def duration_text(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def exception_text(exc: BaseException, limit: int = 240) -> str:
    """One line for a user: a typed error's ``reason``, else ``Type: first line`` (bounded)."""
    reason = getattr(exc, "reason", None)
    if reason:
        msg = str(reason)
    else:
        text = str(exc).strip().splitlines()
        msg = f"{type(exc).__name__}: {text[0]}" if text and text[0] else type(exc).__name__
    return msg if len(msg) <= limit else msg[: limit - 1] + "\u2026"


__all__ = ["ci_text", "num_text", "duration_text", "exception_text", "sentence", "clause", "sentence_join", "version_label"]
