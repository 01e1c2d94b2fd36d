"""The app's window icon, from ``resources/icons/`` (see packaging/make_icons.py)."""

from __future__ import annotations

from PySide6.QtGui import QIcon

from training.common.resources import resources_dir

ICON_NAME = "xray-assistant"  # also the .desktop file's Icon= and the Wayland app id


def app_icon() -> QIcon:
    """All the PNG sizes that exist (Qt picks the best one); an empty icon if none."""
    icon = QIcon()
    folder = resources_dir() / "icons"
    for png in sorted(folder.glob(f"{ICON_NAME}-*.png")):
        icon.addFile(str(png))
    if icon.isNull() and (folder / f"{ICON_NAME}.svg").is_file():
        icon.addFile(str(folder / f"{ICON_NAME}.svg"))
    return icon
