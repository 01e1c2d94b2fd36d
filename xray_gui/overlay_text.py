"""What the viewer's corner overlays say (like Weasis / OHIF): plain functions
of the image's metadata and display state, no widgets.

* top left: file name, modality and view; patient identifiers only while
  "Show patient identifiers" is ticked;
* top right: image size and pixel spacing (when the file records it);
* bottom left: window/level (and the preset) - the viewer adds the zoom;
* edges: orientation markers, only when known: from DICOM Patient Orientation
  (0020,0020) when present, else from View Position PA/AP (a frontal chest film
  is hung with the patient's right on the viewer's left: "R" on the left edge,
  "L" on the right edge).  Nothing is shown when neither is recorded.
"""

from __future__ import annotations

from pathlib import Path

_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H"}
_IDENTIFIER_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyDate")


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _extra(meta) -> dict:
    return dict(getattr(meta, "extra", None) or {})


def orientation_markers(meta, turn: tuple[int, bool] = (0, False)) -> dict[str, str]:
    """Edge markers ``{"left", "right", "top", "bottom"}`` (only those known), turned with
    the image when it was rotated or flipped (``ImageMeta.turn``)."""
    from training.imaging.turn import turn_markers

    return turn_markers(_file_markers(meta), turn) if any(turn) else _file_markers(meta)


def _file_markers(meta) -> dict[str, str]:
    """Edge markers of the image as stored in the file."""
    if meta is None:
        return {}
    po = _extra(meta).get("PatientOrientation", "")
    parts = [p.strip().upper() for p in str(po).split("\\")] if po else []
    if len(parts) == 2 and all(p and set(p) <= set(_OPPOSITE) for p in parts):
        row, col = parts  # direction of the rows (left -> right) and columns (top -> bottom)
        return {"right": row, "left": "".join(_OPPOSITE[c] for c in row),
                "bottom": col, "top": "".join(_OPPOSITE[c] for c in col)}
    if getattr(meta, "kind", "") == "dicom" and (getattr(meta, "view", None) or "").upper() in ("PA", "AP"):
        return {"left": "R", "right": "L"}
    return {}


def _spacing(meta) -> str:
    ex = _extra(meta)
    for key, note in (("PixelSpacing", ""), ("ImagerPixelSpacing", " (detector)")):
        text = ex.get(key)
        if not text:
            continue
        try:
            values = [float(v) for v in str(text).split("\\")]
        except ValueError:
            continue
        if len(values) == 2 and all(v > 0 for v in values):  # (row spacing, column spacing)
            return f"Pixel {values[1]:.3g} × {values[0]:.3g} mm{note}"
    return ""


def top_left(meta, *, identifiers: dict | None = None) -> list[str]:
    """File name, modality / view; ``identifiers`` (only when the user shows them)."""
    if meta is None:
        return []
    lines = [Path(str(meta.path)).name]
    kind = (getattr(meta, "kind", "") or "").upper()
    desc = " · ".join(x for x in (getattr(meta, "modality", None) or kind, getattr(meta, "view", None)) if x)
    if desc:
        lines.append(desc)
    for key in _IDENTIFIER_KEYS:
        value = (identifiers or {}).get(key)
        if value:
            lines.append(str(value))
    return lines


def top_right(meta) -> list[str]:
    if meta is None:
        return []
    lines = []
    size = getattr(meta, "original_size", None)
    if size and size[0] and size[1]:
        lines.append(f"{size[1]} × {size[0]} px")
    spacing = _spacing(meta)
    if spacing:
        lines.append(spacing)
    return lines


def window_line(display, preset: str = "") -> str:
    """``W 1000  L 500 (Lung)``; empty when the image has no window."""
    if display is None or not display.has_raw or display.center is None:
        return ""
    text = f"W {_num(display.width)}  L {_num(display.center)}"
    return text + (f" ({preset})" if preset else "")


def zoom_line(scale: float) -> str:
    return f"Zoom {scale * 100:.0f} %"
