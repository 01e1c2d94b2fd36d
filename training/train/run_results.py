"""Reading a finished (or partly finished) training run folder: the one place
that knows where a run keeps its report and per-model results.  Torch-free,
so the app's wizard can read a run on the GUI thread."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.common.constants import ARCHITECTURES


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_results(run_dir: str | Path) -> dict[str, dict]:
    """{arch: metrics.json} for every finished model of the run."""
    run_dir = Path(run_dir)
    return {arch: _json(run_dir / arch / "metrics.json") for arch in ARCHITECTURES
            if (run_dir / arch / "metrics.json").exists()}


def load_history(run_dir: str | Path, arch: str) -> list[dict]:
    """The epochs a model has finished so far ([] when none)."""
    p = Path(run_dir) / arch / "history.json"
    try:
        return list(_json(p))
    except (OSError, ValueError):
        return []


def load_run(run_dir: str | Path) -> tuple[dict, dict[str, dict]]:
    """(report.json or {}, {arch: metrics.json}) of a run folder."""
    run_dir = Path(run_dir)
    p = run_dir / "report.json"
    return (_json(p) if p.exists() else {}), load_results(run_dir)


__all__ = ["load_results", "load_history", "load_run"]
