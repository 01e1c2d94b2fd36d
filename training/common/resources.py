"""Where the app's resources (icons, the shipped model and its card) live:
``$XRAY_RESOURCES``, a PyInstaller bundle's ``resources/``, or the repository's
``resources/`` next to this package (editable install)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_MODEL_NAME = "covid_cxr_v2.safetensors"  # three classes + lesion map (model v2)
V1_MODEL_NAME = "covid_cxr_v1.safetensors"  # the previous default, still offered (File > Open Model)


def resources_dir() -> Path:
    env = os.environ.get("XRAY_RESOURCES")
    if env:
        return Path(env)
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def default_model_path() -> Path | None:
    """The shipped default model, or None when none is installed."""
    p = resources_dir() / "models" / DEFAULT_MODEL_NAME
    return p if p.is_file() else None


def v1_model_path() -> Path | None:
    """Model v1 (two classes, ResNet50), or None when it is not installed."""
    p = resources_dir() / "models" / V1_MODEL_NAME
    return p if p.is_file() else None


def model_card_path() -> Path | None:
    p = resources_dir() / "models" / "MODEL_CARD.md"
    return p if p.is_file() else None
