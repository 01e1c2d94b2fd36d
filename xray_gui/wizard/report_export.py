"""Export a run's report for filing: copies of report.md and report.json plus
one self-contained HTML page (figures embedded) or an A4 PDF (QPdfWriter +
QTextDocument).  Every file is written atomically with ``training.common.atomic``.

The report's HTML comes from the core (``training.train.report.report_html``), built
from the same run data as report.md; this module only adds the page around it
(research notice, run folder, the figures embedded)."""

from __future__ import annotations

import base64
import datetime as _dt
import html
from pathlib import Path

from training.train import run_folder

from .. import RESEARCH_NOTICE
from .common import MODEL_LABELS

CSS = """
body { font-family: sans-serif; max-width: 60em; margin: 1.5em auto; color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 3px 7px; text-align: center; }
th { background: #eee; }
td:first-child { text-align: left; }
blockquote { border-left: 4px solid #c9a227; margin: 0.8em 0; padding: 0.3em 0.8em; background: #fbf7e9; }
.notice { color: #a33; font-weight: bold; }
.meta { color: #666; font-size: 0.9em; }
img { max-width: 100%; }
"""  # + training.train.report.REPORT_CSS (tables kept on one page, values unwrapped)


def report_figures(run_dir: Path) -> list[tuple[str, Path]]:
    """(caption, png) of the figures the trainer saved, in report order."""
    figs = []
    p = run_folder.confusion_all(run_dir)
    if p.exists():
        figs.append(("Confusion matrices on the test split", p))
    for arch, label in MODEL_LABELS.items():
        for name, cap in ((run_folder.CURVES, "loss and accuracy per epoch"),
                          (run_folder.RELIABILITY, "reliability (test)")):
            f = run_folder.arch_dir(run_dir, arch) / name
            if f.exists():
                figs.append((f"{label}: {cap}", f))
    return figs


def build_html(run_dir: str | Path, *, image_src=None) -> str:
    """The whole report page.  ``image_src(path) -> str`` gives each figure's
    ``src`` (default: a base64 data URI, so the file stands alone)."""
    from training.train.report import REPORT_CSS, report_html

    run_dir = Path(run_dir)
    body = report_html(run_dir, skip_sections=("Figures",))
    if image_src is None:
        def image_src(p: Path) -> str:
            return "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii")
    created = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    figs = "".join(f"<h3>{html.escape(cap)}</h3><p><img src='{image_src(p)}' alt='{html.escape(cap)}'></p>"
                   for cap, p in report_figures(run_dir))
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Chest X-ray Assistant - training report"
            f"</title><style>{CSS}{REPORT_CSS}</style></head><body>"
            f"<p class='notice'>{html.escape(RESEARCH_NOTICE)}. These models are research models; their output "
            "must not be used on its own for diagnosis or treatment.</p>"
            f"<p class='meta'>Run folder: {html.escape(str(run_dir))}<br>Report exported: {created}</p>"
            + body + (f"<h2>Figures</h2>{figs}" if figs else "") + "</body></html>")


def export_report(run_dir: str | Path, target: str | Path) -> list[Path]:
    """Write ``target`` (.html, or .pdf) plus ``<stem>.md`` and ``<stem>.json``
    next to it; returns the files written."""
    from training.common import atomic

    run_dir, target = Path(run_dir), Path(target)
    if target.suffix.lower() not in (".html", ".htm", ".pdf"):
        target = target.with_suffix(".html")
    written = []
    for src, suffix in ((run_folder.report_md(run_dir), ".md"), (run_folder.report_json(run_dir), ".json")):
        dst = target.with_suffix(suffix)
        atomic.write_bytes(dst, src.read_bytes())
        written.append(dst)
    if target.suffix.lower() == ".pdf":
        _write_pdf(run_dir, target)
    else:
        atomic.write_text(target, build_html(run_dir))
    written.insert(0, target)
    return written


def _write_pdf(run_dir: Path, target: Path) -> None:
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QFont, QImage, QTextDocument

    from ..report_pdf import write_pdf

    doc = QTextDocument()
    font = QFont("sans-serif")
    font.setPointSizeF(8.0)  # the report's wide tables fit an A4 page
    doc.setDefaultFont(font)
    width = 640  # document pixels at 96 dpi: A4 minus margins

    def src(p: Path) -> str:
        url = f"fig://{p.parent.name}/{p.name}"
        img = QImage(str(p))
        if img.width() > width:
            img = img.scaledToWidth(width)
        doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl(url), img)
        return url

    doc.setHtml(build_html(run_dir, image_src=src))
    write_pdf(doc, target, "Chest X-ray Assistant - training report", margin_mm=12)
