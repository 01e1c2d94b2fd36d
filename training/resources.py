"""Where the app's resources (icons, the shipped model and its card) live:
``$XRAY_RESOURCES``, a PyInstaller bundle's ``resources/``, or the repository's
``resources/`` next to this package (editable install)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_MODEL_NAME = "covid_cxr_v1.safetensors"


def resources_dir() -> Path:
    env = os.environ.get("XRAY_RESOURCES")
    if env:
        return Path(env)
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def default_model_path() -> Path | None:
    """The shipped default model, or None when none is installed."""
    p = resources_dir() / "models" / DEFAULT_MODEL_NAME
    return p if p.is_file() else None


def model_card_path() -> Path | None:
    p = resources_dir() / "models" / "MODEL_CARD.md"
    return p if p.is_file() else None
