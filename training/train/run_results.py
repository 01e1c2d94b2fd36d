"""Reading a finished (or partly finished) training run folder: its report and per-model results, at the paths
``training.train.run_folder`` gives.  Torch-free, so the app's wizard can read a run on the GUI thread."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.common.constants import ARCHITECTURES
from training.train.run_folder import history_json, metrics_file, report_json


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_results(run_dir: str | Path) -> dict[str, dict]:
    """{arch: metrics.json} for every finished model of the run."""
    return {arch: _json(metrics_file(run_dir, arch)) for arch in ARCHITECTURES
            if metrics_file(run_dir, arch).exists()}


def load_history(run_dir: str | Path, arch: str) -> list[dict]:
    """The epochs a model has finished so far ([] when none)."""
    p = history_json(run_dir, arch)
    try:
        return list(_json(p))
    except (OSError, ValueError):
        return []


def load_run(run_dir: str | Path) -> tuple[dict, dict[str, dict]]:
    """(report.json or {}, {arch: metrics.json}) of a run folder."""
    p = report_json(run_dir)
    return (_json(p) if p.exists() else {}), load_results(run_dir)


__all__ = ["load_results", "load_history", "load_run"]
