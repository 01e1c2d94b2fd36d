"""A one-page PDF report of the current image (QPdfWriter + QTextDocument),
written atomically (temporary file in the same folder, then renamed).

A result that is not valid (the image was refused by the chest-radiograph
gate and classified anyway) gets no COVID / Normal verdict in the report.

A three-class result (model v2) lists P for each class and, with a lesion
map, the lung involvement and a third image: the film with the lesion map
(fill and contour lines at P 0.5) drawn on."""

from __future__ import annotations

import datetime as _dt
import html
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QMarginsF, QSizeF, QUrl
from PySide6.QtGui import QImage, QPageLayout, QPageSize, QPdfWriter, QTextCursor, QTextDocument

from training.inference.result import PNEUMONIA

from . import RESEARCH_NOTICE

IMAGE_WIDTH_PX = 330  # each of the two images, in document pixels
IMAGES_ROW_PX = 660  # the row of images: three share it


@dataclass
class ReportContent:
    file_name: str
    image: QImage                     # the image as displayed (window/level applied)
    overlay: QImage | None            # the same with the heatmap blended in
    label: str
    p_covid: float
    threshold: float
    model_name: str
    model_version: str
    warnings: list[str] = field(default_factory=list)
    metadata: list[tuple[str, str]] = field(default_factory=list)
    patient: dict[str, str] | None = None  # only when the user chose to show identifiers
    created: str = ""
    valid: bool = True                # False: refused, classified anyway: no verdict
    forced_reason: str = ""           # why not valid (Prediction.forced_reason); '' = the gate's usual text
    suitability: str = ""             # the gate's decision: suitable | warning | refused | ''
    heat_in_lungs: float | None = None  # share of the heatmap inside the lungs
    band: tuple[float, float] | None = None  # the model's borderline band ("Indeterminate — review" inside)
    calibrated: bool = False          # the model file carries a calibration (P(COVID) is a probability)
    model_sha256: str = ""            # audit trail: the model file's SHA-256
    app_version: str = ""             # audit trail: this program's version
    probs: dict[str, float] = field(default_factory=dict)  # calibrated P per class name
    lung_involvement: float | None = None  # lesion area inside the lungs / lung area (model v2)
    lesion: QImage | None = None      # the film with the lesion map drawn on (model v2)

    @property
    def three_class(self) -> bool:
        return PNEUMONIA in self.probs

SUITABILITY_TEXT = {"suitable": "looks like a frontal chest radiograph",
                    "warning": "unusual image for this model (see the warnings)",
                    "refused": "does not look like a frontal chest radiograph"}
NOT_VALID_TEXT = ("Not valid — the image does not look like a frontal chest radiograph; it was classified "
                  "only because the user chose “Classify anyway”")


def _rows(pairs) -> str:
    return "".join(f"<tr><td style='color:#555;padding-right:12px'>{html.escape(k)}</td>"
                   f"<td>{html.escape(str(v))}</td></tr>" for k, v in pairs)


def build_document(c: ReportContent) -> QTextDocument:
    doc = QTextDocument()
    created = c.created or _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    imgs = [("img://plain", c.image, "Image")]
    if c.overlay is not None:
        imgs.append(("img://heatmap", c.overlay, "Grad-CAM heatmap"))
    if c.lesion is not None:
        imgs.append(("img://lesion", c.lesion, "Lesion map (P \u2265 0.5, outlined)"))
    for url, img, _ in imgs:
        doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl(url), img)
    width = min(IMAGE_WIDTH_PX, IMAGES_ROW_PX // len(imgs))
    cells = "".join(
        f"<td align='center' style='padding:4px'><img src='{url}' width='{width}'"
        f" height='{int(width * img.height() / max(1, img.width()))}'><br>"
        f"<span style='color:#555'>{cap}</span></td>" for url, img, cap in imgs)
    others = ([("P(Normal)", c.probs.get("Normal")), ("P(Other pneumonia)", c.probs.get(PNEUMONIA))]
              if c.three_class else [])
    if c.valid:
        result = [("Prediction", c.label), ("P(COVID)", f"{c.p_covid:.3f} (calibrated)" if c.band else
                                             f"{c.p_covid:.3f}")]
        result += [(k, f"{v:.3f}") for k, v in others if v is not None]
        if c.band:
            result.append(("Borderline band", f"{c.band[0]:.3f}–{c.band[1]:.3f} (inside: indeterminate, review)"))
    else:
        result = [("Prediction", f"Not valid — {c.forced_reason}" if c.forced_reason else NOT_VALID_TEXT),
                  ("P(COVID)", f"{c.p_covid:.3f} (not valid)")]
        result += [(k, f"{v:.3f} (not valid)") for k, v in others if v is not None]
    result.append(("Decision threshold", f"{c.threshold:.3f}"))
    if c.suitability:
        result.append(("Image check", SUITABILITY_TEXT.get(c.suitability, c.suitability)
                       + ("" if c.valid else " (classified anyway)")))
    if c.heat_in_lungs is not None:
        result.append(("Heatmap inside the lungs", f"{c.heat_in_lungs * 100:.0f} %"))
    if c.lung_involvement is not None:
        result.append(("Lung involvement", f"{c.lung_involvement * 100:.0f} % of the lung area (lesion map)"))
    result += [("Model", f"{c.model_name} (version {c.model_version})")]
    if c.model_sha256:
        result.append(("Model file SHA-256", c.model_sha256))
    if c.app_version:
        result.append(("Program", f"Chest X-ray Assistant {c.app_version}"))
    result.append(("Report created", created))
    parts = [
        "<h2 style='margin-bottom:2px'>Chest X-ray assistant — report</h2>",
        f"<p style='color:#a33;font-weight:bold'>{html.escape(RESEARCH_NOTICE)}. "
        "The output of a research model must not be used on its own for diagnosis or treatment.</p>",
        f"<p><b>File:</b> {html.escape(c.file_name)}</p>",
        f"<table><tr>{cells}</tr></table>",
        f"<h3>Result</h3><table>{_rows(result)}</table>",
    ]
    if not c.valid:
        parts.append("<p style='color:#a33;font-weight:bold'>This result is not valid and must not be read "
                     "as a finding.</p>")
    if c.warnings:
        parts.append("<h3>Warnings</h3><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in c.warnings)
                     + "</ul>")
    if c.metadata:
        parts.append(f"<h3>Image</h3><table>{_rows(c.metadata)}</table>")
    if c.patient:
        parts.append(f"<h3>Patient</h3><table>{_rows(c.patient.items())}</table>")
    what = ("P(COVID) is the model's probability of COVID-19, calibrated on its validation split (temperature "
            "scaling)" if c.calibrated else "P(COVID) is the model's score, not a calibrated probability")
    band = (" Inside the borderline band the result is indeterminate and needs a reader's review." if c.band else "")
    below = (" Below it, the model's P(Other pneumonia) against P(Normal) decides between Other pneumonia "
             "(not a COVID-19 pattern) and Normal." if c.three_class else "")
    lesion = (" The lesion map is the model's estimate of where lung opacities lie (filled and outlined where its "
              "probability is at least 0.5); lung involvement is the share of the lung area (found by the lung "
              "segmenter) inside it. Both are model estimates, not measurements."
              if c.lesion is not None or c.lung_involvement is not None else "")
    parts.append(f"<p style='color:#777;font-size:small'>{what}; "
                 f"images at or above the threshold are labelled COVID.{below}{band} The heatmap shows which regions "
                 "raised the model's COVID score, not where disease is; its share inside the lungs (found "
                 f"by a lung segmenter) says how much of it lies on the lungs.{lesion}</p>")
    doc.setHtml("<html><body style='font-family:sans-serif'>" + "".join(parts) + "</body></html>")
    return doc


def write_report(path, content: ReportContent) -> Path:
    """Render ``content`` to ``path`` (A4 PDF), atomically."""
    return write_pdf(build_document(content), path, f"Chest X-ray report — {content.file_name}", margin_mm=15)


def keep_tables_together(doc: QTextDocument) -> int:
    """Start a table on a new page, with its heading, when it would straddle a
    page break and fits on one page, or when its heading is left at the foot of
    the page before (Qt's rich text ignores CSS ``page-break-inside: avoid``; a
    table taller than a page still splits, its ``<thead>`` row repeated).  Call
    after ``doc.setPageSize``; returns the number of tables moved."""
    from PySide6.QtGui import QTextFormat, QTextTable

    page = doc.pageSize().height()
    if not page > 0:
        return 0
    usable = page - 2 * doc.rootFrame().frameFormat().margin()
    layout = doc.documentLayout()
    before = QTextFormat.PageBreakFlag.PageBreak_AlwaysBefore
    moved = 0
    for frame in doc.rootFrame().childFrames():  # document order: a moved table shifts the later ones
        if not isinstance(frame, QTextTable):
            continue
        r = layout.frameBoundingRect(frame)
        first, last = int(r.top() // page), int((r.bottom() - 1) // page)
        # the table's heading: the nearest heading at most two blocks before it (a short lead-in may sit between)
        heading = None
        block = doc.findBlock(frame.firstPosition()).previous()
        for _ in range(3):
            if not block.isValid():
                break
            if block.blockFormat().headingLevel() > 0:
                heading = block
                break
            block = block.previous()
        head_page = int(layout.blockBoundingRect(heading).top() // page) if heading is not None else first
        if (first != last and r.height() <= usable) or head_page != first:
            if heading is not None:
                cursor = QTextCursor(heading)
                fmt = heading.blockFormat()
                fmt.setPageBreakPolicy(before)
                cursor.setBlockFormat(fmt)
            else:
                fmt = frame.format()
                fmt.setPageBreakPolicy(before)
                frame.setFormat(fmt)
            moved += 1
    return moved


def write_pdf(doc, path, title: str, margin_mm: float = 15) -> Path:
    """Print a QTextDocument to an A4 PDF, atomically (temp file, then rename)."""
    from training.common import atomic

    out = Path(path)

    def render(tmp: Path) -> None:
        writer = QPdfWriter(str(tmp))
        writer.setTitle(title)
        writer.setCreator("Chest X-ray Assistant")
        m = margin_mm
        writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait,
                                         QMarginsF(m, m, m, m), QPageLayout.Unit.Millimeter))
        writer.setResolution(96)
        doc.setPageSize(QSizeF(writer.width(), writer.height()))
        keep_tables_together(doc)
        doc.print_(writer)
        del writer  # closes the file before it is renamed into place

    atomic.write_with(out, render)
    return out
