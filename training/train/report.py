"""The run report: the paper's Tables 2, 3-5 and 6 beside this run's numbers,
as Markdown (report.md) and JSON (report.json), plus one overview figure."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, NamedTuple, Tuple, Union

from training.common import atomic
from training.common.constants import ARCH_LABELS
from training.common.formatting import ci_text, num_text
from training.train import run_folder
from training.train.paper_reference import CONFUSION, PAPER_CITATION, TABLE2, TABLE6

SCRATCH_NOTE = (
    "This run started from random weights (`init: scratch`): no ImageNet weights can be downloaded on the "
    "machine it ran on. The paper's Keras ResNet50 almost certainly started from ImageNet weights (Keras' "
    "default), which give the backbone ready-made edge and texture detectors; from scratch, {n_train} training "
    "images are far too few to learn them, so the ResNet50-based models reach lower accuracy and their "
    "validation curves swing from epoch to epoch (BatchNorm statistics from few images, lr 1e-3). The LSTM "
    "head in particular passes little gradient to a random backbone. Compare with the paper's numbers with "
    "that in mind, and mind the confidence intervals: with 100 test images one image is one percentage point.")


from training.train.run_results import load_results  # noqa: E402,F401  (the one reader of a run folder)

# -- the report's structure: one list of blocks, rendered to Markdown (report.md) or HTML (the app's export) --

class Code(str):
    """Inline code (`x` in Markdown, <code> in HTML)."""


class Value(str):
    """A figure with its confidence interval: kept on one line (HTML: nowrap, non-breaking spaces)."""


class Link(NamedTuple):
    """A link into the run folder (HTML keeps only the text: the export embeds the figures)."""
    text: str
    href: str


Inline = Union[str, Code, Value, Link, Tuple["Inline", ...]]


class Heading(NamedTuple):
    level: int
    text: Inline


class Para(NamedTuple):
    text: Inline


class Quote(NamedTuple):
    text: Inline


class Bullets(NamedTuple):
    items: tuple[Inline, ...]


class Table(NamedTuple):
    header: tuple[str, ...]
    rows: tuple[tuple[Inline, ...], ...]


Block = Union[Heading, Para, Quote, Bullets, Table]

# For a browser (print / save as PDF); QTextDocument ignores page-break-inside, so the app's PDF writer
# keeps each table on one page itself (xray_gui.report_pdf.keep_tables_together).
REPORT_CSS = ("table { page-break-inside: avoid; break-inside: avoid; } "
              "thead { display: table-header-group; }")


def _md_inline(x: Inline) -> str:
    if isinstance(x, tuple) and not isinstance(x, Link):
        return "".join(_md_inline(p) for p in x)
    if isinstance(x, Link):
        return f"[{x.text}]({x.href})"
    if isinstance(x, Code):
        return f"`{x}`"
    return str(x)


def _html_inline(x: Inline) -> str:
    if isinstance(x, tuple) and not isinstance(x, Link):
        return "".join(_html_inline(p) for p in x)
    if isinstance(x, Link):
        return html.escape(x.text, quote=False)
    if isinstance(x, Code):
        return f"<code>{html.escape(str(x), quote=False)}</code>"
    return html.escape(str(x), quote=False)


def to_markdown(blocks: list[Block]) -> str:
    L: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            L += ["#" * b.level + " " + _md_inline(b.text), ""]
        elif isinstance(b, Para):
            L += [_md_inline(b.text), ""]
        elif isinstance(b, Quote):
            L += ["> " + _md_inline(b.text), ""]
        elif isinstance(b, Bullets):
            L += ["- " + _md_inline(i) for i in b.items] + [""]
        elif isinstance(b, Table):
            L += ["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header)]
            L += ["| " + " | ".join(_md_inline(c) for c in r) + " |" for r in b.rows] + [""]
    while L and not L[-1]:
        L.pop()
    return "\n".join(L) + "\n"


def _html_cell(x: Inline, first: bool = False) -> str:
    # Qt's rich-text tables squeeze columns below their content ("100" became "10" / "0") unless a cell says
    # white-space: nowrap; so every cell keeps its words whole except where the text itself has spaces.
    # A figure with its interval ("0.912 (0.88-0.94)") is the value over its interval, each kept whole.
    nowrap = " style='white-space:nowrap'"
    if isinstance(x, Value) and " (" in x:
        v, ci = x.split(" (", 1)
        return f"<td class='v'{nowrap}>{html.escape(v, quote=False)}<br>{html.escape('(' + ci, quote=False)}</td>"
    text = _html_inline(x)
    # the row's name ("ResNet50-LSTM") and single words / numbers are not broken
    return f"<td{nowrap if first or ' ' not in _md_inline(x) else ''}>{text}</td>"


def to_html(blocks: list[Block], *, skip_sections: tuple[str, ...] = ()) -> str:
    """The blocks as an HTML body fragment; ``skip_sections`` drops level-2 sections by title."""
    out: list[str] = []
    skip = False
    for b in blocks:
        if isinstance(b, Heading) and b.level <= 2:
            skip = b.level == 2 and _md_inline(b.text) in skip_sections
        if skip:
            continue
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_html_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_html_inline(b.text)}</p>")
        elif isinstance(b, Quote):
            out.append(f"<blockquote>{_html_inline(b.text)}</blockquote>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            out.append("<table style='page-break-inside:avoid'><thead><tr>"
                       + "".join(f"<th>{html.escape(h, quote=False)}</th>" for h in b.header) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(_html_cell(c, i == 0) for i, c in enumerate(r)) + "</tr>"
                               for r in b.rows)
                       + "</tbody></table>")
    return "\n".join(out)


# -- the report's content --

def _ci(m: dict, key: str) -> Value:
    return Value(ci_text(m, key))


def _n(v: Any, digits: int = 3) -> str:
    return num_text(v, digits)


def _cm(cm: dict) -> str:
    return f"{cm['tp']}/{cm['fn']}/{cm['fp']}/{cm['tn']}"


def report_blocks(run_dir: str | Path) -> tuple[list[Block], dict[str, Any]]:
    """The report of a run folder as blocks (for :func:`to_markdown` / :func:`to_html`) and report.json's data."""
    run_dir = Path(run_dir)
    cfg = json.loads(run_folder.config_file(run_dir).read_text(encoding="utf-8"))
    data_path = run_folder.data_file(run_dir)
    data = json.loads(data_path.read_text(encoding="utf-8")) if data_path.exists() else {}
    res = load_results(run_dir)
    B = (_intro_blocks(cfg, data) + _paper_table_blocks(res) + _extra_set_blocks(res)
         + _operating_point_blocks(cfg, res) + _figure_blocks(res))
    return B, _report_json(cfg, data, res)


def _intro_blocks(cfg: dict, data: dict) -> list[Block]:
    """Title, paper, data and settings of the run (and the note on a run from scratch)."""
    B: list[Block] = [
        Heading(1, ("Training report: recipe ", Code(cfg["recipe"]))),
        Para(f"Paper: {PAPER_CITATION}."),
        Para(f"Data: {', '.join(Path(d).name for d in cfg['data_dirs'])}; images used {data.get('images_used', '?')} "
             f"({', '.join(f'{k} {v}' for k, v in data.get('class_counts', {}).items())}); skipped "
             f"{len(data.get('skipped', []))}. Split: "
             + "; ".join(f"{n} {sum(c.values())}" for n, c in data.get("split_counts", {}).items())
             + f" (seed {cfg['seed']})."),
        Para((f"Settings: input {cfg['input_size']}x{cfg['input_size']}, batch {cfg['batch_size']}, Adam lr "
              f"{cfg['lr']}, {cfg['epochs']} epochs max, init ", Code(cfg["init"]),
              *((" (ResNet50-LSTM: ", Code(cfg["lstm_init"]), ")") if cfg.get("lstm_init") else ()),
              f", augmentation {'on' if cfg['augment'] else 'off'}, schedule ", Code(cfg["lr_schedule"]),
              f", weight decay {cfg['weight_decay']}, early stopping {cfg['early_stopping'] or 'off'}.")),
    ]
    if cfg["init"] == "scratch":
        n_train = sum(data.get("split_counts", {}).get("train", {}).values()) or "the"
        a, b = SCRATCH_NOTE.format(n_train=n_train).split("`init: scratch`")
        B.append(Quote((a, Code("init: scratch"), b)))
    return B


def _paper_table_blocks(res: dict) -> list[Block]:
    """The paper's Table 2, Tables 3-5 and Table 6, each beside this run's numbers."""
    B: list[Block] = [
        Para("Checkpoint rule: the epoch with the highest validation accuracy; ties go to the lower validation "
             "loss (the paper's \"highest validation accuracy, lowest validation loss\")."),
        Heading(2, "Table 2 - chosen epoch, train vs validation")]
    rows = []
    for arch, r in res.items():
        c, p = r["chosen_epoch"], TABLE2[arch]
        rows.append((ARCH_LABELS[arch], f"{r['best_epoch']}/{r['epochs_run']}", _n(c["train_loss"], 4),
                     _n(c["train_acc"], 4), _n(c["val_loss"], 4), _n(c["val_acc"], 4), f"{p['train_loss']:.4f}",
                     f"{p['train_acc']:.4f}", f"{p['val_loss']:.4f}", f"{p['val_acc']:.4f}"))
    B.append(Table(("model", "epoch", "train loss", "train acc", "val loss", "val acc", "paper train loss",
                    "paper train acc", "paper val loss", "paper val acc"), tuple(rows)))
    B.append(Heading(2, "Tables 3-5 - confusion matrices on the test split (threshold 0.5; COVID positive)"))
    rows = []
    for arch, r in res.items():
        cm, p = r["evaluations"]["test"]["at_0.5"]["confusion"], CONFUSION[arch]
        rows.append((ARCH_LABELS[arch], str(cm["tp"]), str(cm["fn"]), str(cm["fp"]), str(cm["tn"]), _cm(p)))
    B.append(Table(("model", "TP (COVID->COVID)", "FN (COVID->Normal)", "FP (Normal->COVID)", "TN (Normal->Normal)",
                    "paper TP/FN/FP/TN"), tuple(rows)))
    B.append(Heading(2, "Table 6 - test metrics with 95 % confidence intervals (threshold 0.5)"))
    rows = []
    for arch, r in res.items():
        m, p = r["evaluations"]["test"]["at_0.5"], TABLE6[arch]
        rows.append((ARCH_LABELS[arch], str(m["n"]), _ci(m, "accuracy"), _ci(m, "precision"), _ci(m, "recall"),
                     _ci(m, "f1"), _ci(m, "roc_auc"), _n(m.get("ece")),
                     f"{p['accuracy']:.2f} / {p['precision']:.2f} / {p['recall']:.2f} / {p['f1']:.2f}"))
    B.append(Table(("model", "n", "accuracy", "precision", "recall", "F1", "ROC AUC", "ECE",
                    "paper acc / prec / rec / F1"), tuple(rows)))
    return B


def _extra_set_blocks(res: dict) -> list[Block]:
    """One table per evaluation set beyond the run's own validation and test splits."""
    B: list[Block] = []
    extra = sorted({n for r in res.values() for n in r["evaluations"] if n not in ("val", "test")})
    for name in extra:
        B.append(Heading(2, ("Extra evaluation set ", Code(name), " (threshold 0.5)")))
        rows = []
        for arch, r in res.items():
            if name in r["evaluations"]:
                m = r["evaluations"][name]["at_0.5"]
                rows.append((ARCH_LABELS[arch], str(m["n"]), _ci(m, "accuracy"), _ci(m, "precision"),
                             _ci(m, "recall"), _ci(m, "f1"), _ci(m, "roc_auc"), _cm(m["confusion"])))
        B.append(Table(("model", "n", "accuracy", "precision", "recall", "F1", "ROC AUC", "TP/FN/FP/TN"), tuple(rows)))
    return B


def _operating_point_blocks(cfg: dict, res: dict) -> list[Block]:
    """The threshold stored in each model file and the test metrics at it."""
    B: list[Block] = [
        Heading(2, "Operating point"),
        Para(f"Threshold reaching >= {int(cfg['target_sensitivity'] * 100)} % COVID sensitivity on the validation "
             "split, and the test metrics at that threshold:")]
    rows = []
    for arch, r in res.items():
        m = r["evaluations"]["test"]["at_operating_point"]
        rows.append((ARCH_LABELS[arch], _n(r["operating_point_sens"]), _n(r["threshold"]), _ci(m, "recall"),
                     _ci(m, "specificity"), _ci(m, "accuracy")))
    B.append(Table(("model", "threshold", "stored in model file", "test sensitivity", "test specificity",
                    "test accuracy"), tuple(rows)))
    return B


def _figure_blocks(res: dict) -> list[Block]:
    """Links to each model's figures in the run folder."""
    return [Heading(2, "Figures"),
            Bullets(tuple(
                [(f"{ARCH_LABELS[arch]}: ", Link("curves", f"{arch}/{run_folder.CURVES}"), ", ",
                  Link("confusion", f"{arch}/{run_folder.CONFUSION}"), ", ",
                  Link("reliability", f"{arch}/{run_folder.RELIABILITY}"))
                 for arch in res]
                + [("All confusion matrices: ", Link(run_folder.CONFUSION_ALL, run_folder.CONFUSION_ALL))]))]


def _report_json(cfg: dict, data: dict, res: dict) -> dict[str, Any]:
    """report.json's data: the configuration, the data summary, the paper's figures and each model's results."""
    js: dict[str, Any] = {"config": cfg, "data": {k: v for k, v in data.items() if k != "skipped"},
                          "skipped": len(data.get("skipped", [])), "paper": {"table2": TABLE2, "confusion": CONFUSION,
                                                                            "table6": TABLE6}, "models": {}}
    for arch, r in res.items():
        js["models"][arch] = {"best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"],
                              "chosen_epoch": r["chosen_epoch"], "threshold": r["threshold"],
                              "operating_point_sens": r["operating_point_sens"],
                              "evaluations": {n: {k: {kk: vv for kk, vv in v.items() if kk != "reliability"}
                                                  for k, v in e.items()} for n, e in r["evaluations"].items()}}
    return js


def build_report(run_dir: str | Path) -> tuple[str, dict[str, Any]]:
    """(report.md's text, report.json's data) of a run folder."""
    blocks, js = report_blocks(run_dir)
    return to_markdown(blocks), js


def report_html(run_dir: str | Path, *, skip_sections: tuple[str, ...] = ("Figures",)) -> str:
    """The same report as an HTML body fragment (the app's HTML / PDF export), rendered from the run's data,
    not parsed back from report.md.  The "Figures" section (links into the run folder) is left out by
    default: the export embeds the figures.  Style for browsers: :data:`REPORT_CSS`."""
    return to_html(report_blocks(run_dir)[0], skip_sections=skip_sections)


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    md, js = build_report(run_dir)
    res = load_results(run_dir)
    if res:
        from matplotlib.figure import Figure

        from training.train.plots import draw_confusion, save_figure

        fig = Figure(figsize=(3.6 * len(res), 3.4))
        for i, (arch, r) in enumerate(res.items()):
            m = r["evaluations"]["test"]["at_0.5"]
            draw_confusion(fig.add_subplot(1, len(res), i + 1), m["confusion"], f"{ARCH_LABELS[arch]} (n={m['n']})")
        fig.tight_layout()
        save_figure(fig, run_folder.confusion_all(run_dir))
    atomic.write_json(run_folder.report_json(run_dir), js)
    atomic.write_text(run_folder.report_md(run_dir), md)
    return run_folder.report_md(run_dir)
