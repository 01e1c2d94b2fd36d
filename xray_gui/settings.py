"""What the app remembers between runs (QSettings).

``$XRAY_SETTINGS`` names an ini file to use instead of the platform's store
(tests and screenshots use it so they never touch the user's settings).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings

MAX_RECENT = 10
from training.names import APP_DEVICES as DEVICES  # noqa: E402  (the core's list)


def _open_store() -> QSettings:
    env = os.environ.get("XRAY_SETTINGS")
    if env:
        return QSettings(env, QSettings.Format.IniFormat)
    return QSettings()  # organisation / application names are set by app.py


class AppSettings:
    """Typed accessors over one QSettings store."""

    def __init__(self, store: QSettings | None = None):
        self.store = store or _open_store()

    # -- helpers ---------------------------------------------------------
    def _get(self, key: str, default, kind):
        value = self.store.value(key, default)
        try:
            if kind is bool:
                if isinstance(value, str):
                    return value.strip().lower() in ("1", "true", "yes", "on")
                return bool(value)
            return kind(value)
        except (TypeError, ValueError):
            return default

    def _set(self, key: str, value) -> None:
        self.store.setValue(key, value)

    def sync(self) -> None:
        self.store.sync()

    # -- model / device --------------------------------------------------
    @property
    def model_path(self) -> str:
        return self._get("model/path", "", str)

    @model_path.setter
    def model_path(self, value: str) -> None:
        self._set("model/path", str(value or ""))

    @property
    def device(self) -> str:
        d = self._get("model/device", "auto", str)
        return d if d in DEVICES else "auto"

    @device.setter
    def device(self, value: str) -> None:
        self._set("model/device", value if value in DEVICES else "auto")

    def threshold_for(self, model_key: str) -> float | None:
        """The user's threshold for one model file (None: use the file's)."""
        v = self.store.value(f"thresholds/{_key(model_key)}", None)
        try:
            return None if v in (None, "") else float(v)
        except (TypeError, ValueError):
            return None

    def set_threshold_for(self, model_key: str, value: float | None) -> None:
        k = f"thresholds/{_key(model_key)}"
        if value is None:
            self.store.remove(k)
        else:
            self._set(k, float(value))

    # -- view --------------------------------------------------------------
    @property
    def overlay_opacity(self) -> int:
        return max(0, min(100, self._get("view/overlay_opacity", 45, int)))

    @overlay_opacity.setter
    def overlay_opacity(self, value: int) -> None:
        self._set("view/overlay_opacity", int(value))

    @property
    def heatmap_colours(self) -> str:
        from .display_state import DEFAULT_HEATMAP_COLOURS, HEATMAP_COLOURS

        name = self._get("view/heatmap_colours", DEFAULT_HEATMAP_COLOURS, str)
        return name if name in HEATMAP_COLOURS else DEFAULT_HEATMAP_COLOURS

    @heatmap_colours.setter
    def heatmap_colours(self, value: str) -> None:
        self._set("view/heatmap_colours", str(value))

    @property
    def show_heatmap(self) -> bool:
        return self._get("view/show_heatmap", True, bool)

    @show_heatmap.setter
    def show_heatmap(self, value: bool) -> None:
        self._set("view/show_heatmap", bool(value))

    @property
    def heatmap_floor(self) -> float:
        """The heatmap's lower level (fraction of its maximum; below it: transparent)."""
        from .display_state import HEATMAP_FLOOR, HEATMAP_FLOORS

        v = self._get("view/heatmap_floor", HEATMAP_FLOOR, float)
        return v if any(abs(v - f) < 1e-6 for f in HEATMAP_FLOORS) else HEATMAP_FLOOR

    @heatmap_floor.setter
    def heatmap_floor(self, value: float) -> None:
        self._set("view/heatmap_floor", float(value))

    @property
    def heatmap_for_normal(self) -> bool:
        """Show the heatmap by default for Normal results too (off: H shows it per image)."""
        return self._get("view/heatmap_for_normal", False, bool)

    @heatmap_for_normal.setter
    def heatmap_for_normal(self, value: bool) -> None:
        self._set("view/heatmap_for_normal", bool(value))

    @property
    def show_overlays(self) -> bool:
        """The viewer's corner texts (W/L, zoom, orientation, size, file)."""
        return self._get("view/show_overlays", True, bool)

    @show_overlays.setter
    def show_overlays(self, value: bool) -> None:
        self._set("view/show_overlays", bool(value))

    @property
    def show_lung_outline(self) -> bool:
        return self._get("view/show_lung_outline", False, bool)

    @show_lung_outline.setter
    def show_lung_outline(self, value: bool) -> None:
        self._set("view/show_lung_outline", bool(value))

    # -- files ---------------------------------------------------------------
    @property
    def last_folder(self) -> str:
        return self._get("files/last_folder", "", str)

    @last_folder.setter
    def last_folder(self, value: str) -> None:
        self._set("files/last_folder", str(value))

    @property
    def recent_files(self) -> list[str]:
        v = self.store.value("files/recent", [])
        if isinstance(v, str):
            v = [v] if v else []
        return [str(x) for x in (v or []) if x][:MAX_RECENT]

    def add_recent(self, path: str | Path) -> list[str]:
        p = str(path)
        items = [p] + [x for x in self.recent_files if x != p]
        items = items[:MAX_RECENT]
        self._set("files/recent", items)
        return items

    def clear_recent(self) -> None:
        self._set("files/recent", [])

    # -- window ----------------------------------------------------------------
    def window_state(self) -> tuple[bytes | None, bytes | None]:
        return self.store.value("window/geometry", None), self.store.value("window/state", None)

    def save_window_state(self, geometry, state) -> None:
        self._set("window/geometry", geometry)
        self._set("window/state", state)

    def splitter_state(self, name: str) -> bytes | None:
        """A QSplitter.saveState() kept under ``window/split_<name>`` (None: never saved)."""
        v = self.store.value(f"window/split_{name}", None)
        return v if v else None

    def set_splitter_state(self, name: str, state) -> None:
        self._set(f"window/split_{name}", state)

    @property
    def side_panel_visible(self) -> bool:
        return self._get("window/side_panel", True, bool)

    @side_panel_visible.setter
    def side_panel_visible(self, value: bool) -> None:
        self._set("window/side_panel", bool(value))


def _key(model_key: str) -> str:
    """A QSettings-safe key for a model file path."""
    import hashlib

    return hashlib.sha1(model_key.encode("utf-8")).hexdigest()[:16]
