"""What the app remembers between runs (QSettings).

``$XRAY_SETTINGS`` names an ini file to use instead of the platform's store
(tests and screenshots use it so they never touch the user's settings).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings

MAX_RECENT = 10
from training.common.constants import APP_DEVICES as DEVICES  # noqa: E402  (the core's list)
from training.common.constants import PRECISION_LABELS  # noqa: E402

from .display_state import DEFAULT_HEATMAP_COLOURS, HEATMAP_COLOURS, HEATMAP_FLOOR, HEATMAP_FLOORS  # noqa: E402


def _open_store() -> QSettings:
    env = os.environ.get("XRAY_SETTINGS")
    if env:
        return QSettings(env, QSettings.Format.IniFormat)
    return QSettings()  # organisation / application names are set by app.py


class _Setting:
    """One typed value under one key.  Reading gives ``default`` for a value
    that is missing, unreadable or refused by ``clean``; writing stores the
    value as ``kind``, cleaned the same way, so a bad value is never kept."""

    def __init__(self, key: str, default, kind, clean=None, doc: str = ""):
        self.key, self.default, self.kind, self.clean = key, default, kind, clean
        self.__doc__ = doc

    def _cleaned(self, value):
        return self.clean(value, self.default) if self.clean else value

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return self._cleaned(obj._get(self.key, self.default, self.kind))

    def __set__(self, obj, value) -> None:
        obj._set(self.key, self._cleaned(self.default if value is None else self.kind(value)))


def _one_of(choices):
    return lambda value, default: value if value in choices else default


def _percent(value, default):
    return max(0, min(100, value))


def _near_one_of(choices):
    return lambda value, default: value if any(abs(value - c) < 1e-6 for c in choices) else default


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
    model_path = _Setting("model/path", "", str, doc="The model file opened at start-up (empty: the shipped one).")
    device = _Setting("model/device", "auto", str, _one_of(DEVICES))
    precision = _Setting("model/precision", "fp32", str, _one_of(tuple(PRECISION_LABELS)),
                         doc="fp32, or fast: the model file's validated int8 mode where the CPU has VNNI / AMX.")

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
    overlay_opacity = _Setting("view/overlay_opacity", 45, int, _percent)
    heatmap_colours = _Setting("view/heatmap_colours", DEFAULT_HEATMAP_COLOURS, str, _one_of(HEATMAP_COLOURS))
    show_heatmap = _Setting("view/show_heatmap", True, bool)
    heatmap_floor = _Setting("view/heatmap_floor", HEATMAP_FLOOR, float, _near_one_of(HEATMAP_FLOORS),
                             doc="The heatmap's lower level (fraction of its maximum; below it: transparent).")
    heatmap_for_normal = _Setting("view/heatmap_for_normal", False, bool,
                                  doc="Show the heatmap by default for Normal results too (off: H shows it per image).")
    show_overlays = _Setting("view/show_overlays", True, bool,
                             doc="The viewer's corner texts (W/L, zoom, orientation, size, file).")
    show_lung_outline = _Setting("view/show_lung_outline", False, bool)
    show_lesion_map = _Setting("view/show_lesion_map", True, bool,
                               doc="The lesion map of a model-v2 result (M); off: hidden until M shows it.")

    # -- files ---------------------------------------------------------------
    last_folder = _Setting("files/last_folder", "", str)

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

    side_panel_visible = _Setting("window/side_panel", True, bool)


def _key(model_key: str) -> str:
    """A QSettings-safe key for a model file path."""
    import hashlib

    return hashlib.sha1(model_key.encode("utf-8")).hexdigest()[:16]
