"""The training report has one renderer in the core (training.train.report): report.md
and the app's HTML / PDF export come from the same blocks; an undefined CI is
left out (never "nan"), a CI never wraps inside itself, a table keeps to one
page with its heading."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from training.train.report import Table, Value, build_report, report_blocks, report_html, to_html

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "results" / "v1" / "v1_resnet50_224"  # a committed run folder (one model: resnet50)

pytestmark = pytest.mark.skipif(not (RUN / "resnet50" / "metrics.json").exists(), reason="no committed run")


def test_markdown_is_the_committed_report():
    md, js = build_report(RUN)
    assert md == (RUN / "report.md").read_text(encoding="utf-8")
    assert js["models"]["resnet50"]["best_epoch"] == json.loads((RUN / "report.json").read_text())["models"][
        "resnet50"]["best_epoch"]


@pytest.fixture
def undefined_run(tmp_path):
    """The committed run with precision undefined on the test split (no positive prediction: NaN value and
    interval), an undefined recall interval, and a diverged loss."""
    run = tmp_path / "run"
    shutil.copytree(RUN, run, ignore=shutil.ignore_patterns("*.png", "events.jsonl"))
    p = run / "resnet50" / "metrics.json"
    m = json.loads(p.read_text())
    test = m["evaluations"]["test"]["at_0.5"]
    test["precision"] = float("nan")
    test["ci95"]["precision"] = [float("nan"), float("nan")]
    test["ci95"]["recall"] = [float("nan"), float("nan")]
    test["ece"] = float("nan")
    m["chosen_epoch"]["val_loss"] = float("nan")
    p.write_text(json.dumps(m))
    return run


def test_undefined_intervals_are_left_out(undefined_run):
    md, _ = build_report(undefined_run)
    html = report_html(undefined_run)
    for text in (md, html):
        assert "nan" not in text.lower()
    assert "\u2013" in html  # the undefined value is a dash
    m = json.loads((undefined_run / "resnet50" / "metrics.json").read_text())["evaluations"]["test"]["at_0.5"]
    assert math.isnan(m["ci95"]["recall"][0])
    assert f"<br>({m['ci95']['accuracy'][0]:.2f}-" in html  # defined intervals are still shown


def test_html_comes_from_the_same_blocks():
    blocks, _ = report_blocks(RUN)
    html = to_html(blocks, skip_sections=("Figures",))
    assert html == report_html(RUN)
    assert "<h2>Figures</h2>" not in html and "<h2>Figures</h2>" in to_html(blocks)
    tables = [b for b in blocks if isinstance(b, Table)]
    assert html.count("<table") == len(tables) and html.count("<thead>") == len(tables)
    # every interval: value, line break, the whole bracket in a cell that does not wrap
    values = [c for t in tables for r in t.rows for c in r if isinstance(c, Value) and " (" in c]
    assert values
    for v in values:
        a, b = v.split(" (")
        assert f"<td class='v' style='white-space:nowrap'>{a}<br>({b}</td>" in html
    assert "page-break-inside:avoid" in html
    assert "`" not in html and "<code>shipped</code>" in html


def test_pdf_keeps_intervals_whole_and_tables_on_one_page(qapp):
    from PySide6.QtCore import QSizeF
    from PySide6.QtGui import QFont, QTextDocument, QTextTable

    from xray_gui.report_pdf import keep_tables_together

    filler = "<p>" + "words " * 120 + "</p>"
    doc = QTextDocument()
    font = QFont("sans-serif")
    font.setPointSizeF(8.0)
    doc.setDefaultFont(font)
    doc.setHtml(filler * 9 + report_html(RUN))
    doc.setPageSize(QSizeF(703, 1032))  # A4 at 96 dpi less 12 mm margins, as the export
    page = doc.pageSize().height()
    layout = doc.documentLayout()

    def pages(frame):
        r = layout.frameBoundingRect(frame)
        return int(r.top() // page), int((r.bottom() - 1) // page)

    tables = [f for f in doc.rootFrame().childFrames() if isinstance(f, QTextTable)]
    # pad until some table straddles a page break
    for extra in range(40):
        if any(a != b for a, b in map(pages, tables)):
            break
        doc.setHtml(filler * 9 + "<p>line</p>" * extra + report_html(RUN))
        tables = [f for f in doc.rootFrame().childFrames() if isinstance(f, QTextTable)]
    else:
        pytest.skip("no layout straddled a page break")
    assert keep_tables_together(doc) >= 1
    for t in tables:
        a, b = pages(t)
        assert a == b
        # the table's heading is on the table's page
        block = doc.findBlock(t.firstPosition()).previous()
        while block.isValid() and block.blockFormat().headingLevel() == 0:
            block = block.previous()
        assert int(layout.blockBoundingRect(block).top() // page) == a
        for i in range(1, t.rows()):
            for j in range(t.columns()):
                blk = t.cellAt(i, j).firstCursorPosition().block()
                text, lay = blk.text(), blk.layout()
                for k in range(lay.lineCount()):
                    line = lay.lineAt(k)
                    s = text[line.textStart():line.textStart() + line.textLength()]
                    assert s.count("(") == s.count(")"), (text, s)
