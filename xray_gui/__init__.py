"""PySide6 desktop app over the Qt-free core package ``training``.

Widgets only move data: image loading, prediction, Grad-CAM and model files
are the core's business (see docs/ARCHITECTURE.md and docs/GUI.md).
"""

ORG_NAME = "xray-cxr"
APP_NAME = "Chest X-ray Assistant"
RESEARCH_NOTICE = "Research use only — not a diagnosis"
