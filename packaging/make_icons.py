"""Render resources/icons/xray-assistant.svg to the PNG sizes the launcher and
the window use (16 … 256 px), plus a Windows .ico and a macOS .icns.

    .venv/bin/python packaging/make_icons.py

The PNGs, the .ico and the .icns are committed; run this again only after
changing the SVG.  Rendering uses Qt's QSvgRenderer (offscreen platform: no
display needed); the .ico/.icns are packed by Pillow from the PNGs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"
NAME = "xray-assistant"
SIZES = (16, 32, 48, 64, 128, 256)


def render(svg: Path, size: int):
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"cannot read {svg}")
    img = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(Qt.GlobalColor.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(p)
    p.end()
    return img


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 (fonts, image plugins)
    svg = ICONS / f"{NAME}.svg"
    for size in SIZES:
        out = ICONS / f"{NAME}-{size}.png"
        if not render(svg, size).save(str(out), "PNG"):
            raise SystemExit(f"cannot write {out}")
        print(out.relative_to(ICONS.parents[1]))
    # Windows: one .ico with every size (Pillow picks the frames from the largest image)
    big = ICONS / f"{NAME}-1024.tmp.png"
    render(svg, 1024).save(str(big), "PNG")
    try:
        with Image.open(big) as im:
            im.load()
            im.save(ICONS / f"{NAME}.ico", sizes=[(s, s) for s in SIZES])
            im.save(ICONS / f"{NAME}.icns")  # Pillow writes all the standard ICNS sizes from 1024 px
    finally:
        big.unlink(missing_ok=True)
    print(f"resources/icons/{NAME}.ico, resources/icons/{NAME}.icns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
