"""PySide6 desktop app over the Qt-free core package ``training``.

Widgets only move data: image loading, prediction, Grad-CAM and model files
are the core's business (see docs/ARCHITECTURE.md and docs/GUI.md).
"""

from training.common.constants import APP_NAME  # noqa: F401  (one name for the program)

ORG_NAME = "xray-cxr"

RESEARCH_NOTICE = "Research use only — not a diagnosis"
