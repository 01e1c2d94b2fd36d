"""The run report: the paper's Tables 2, 3-5 and 6 beside this run's numbers,
as Markdown (report.md) and JSON (report.json), plus one overview figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from . import atomic
from .models import ARCHITECTURES, ARCH_LABELS
from .paper_reference import CONFUSION, PAPER_CITATION, TABLE2, TABLE6
from .plots import draw_confusion, save_figure

SCRATCH_NOTE = (
    "This run started from random weights (`init: scratch`): no ImageNet weights can be downloaded on the "
    "machine it ran on. The paper's Keras ResNet50 almost certainly started from ImageNet weights (Keras' "
    "default), which give the backbone ready-made edge and texture detectors; from scratch, {n_train} training "
    "images are far too few to learn them, so the ResNet50-based models reach lower accuracy and their "
    "validation curves swing from epoch to epoch (BatchNorm statistics from few images, lr 1e-3). The LSTM "
    "head in particular passes little gradient to a random backbone. Compare with the paper's numbers with "
    "that in mind, and mind the confidence intervals: with 100 test images one image is one percentage point.")


from .run_results import load_results  # noqa: E402,F401  (the one reader of a run folder)


def _ci(m: dict, key: str) -> str:
    from .formatting import ci_text

    return ci_text(m, key)


def build_report(run_dir: str | Path) -> tuple[str, dict[str, Any]]:
    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    data = json.loads((run_dir / "data.json").read_text(encoding="utf-8")) if (run_dir / "data.json").exists() else {}
    res = load_results(run_dir)
    js: dict[str, Any] = {"config": cfg, "data": {k: v for k, v in data.items() if k != "skipped"},
                          "skipped": len(data.get("skipped", [])), "paper": {"table2": TABLE2, "confusion": CONFUSION,
                                                                            "table6": TABLE6}, "models": {}}
    L = [f"# Training report: recipe `{cfg['recipe']}`", "",
         f"Paper: {PAPER_CITATION}.", "",
         f"Data: {', '.join(Path(d).name for d in cfg['data_dirs'])}; images used {data.get('images_used', '?')} "
         f"({', '.join(f'{k} {v}' for k, v in data.get('class_counts', {}).items())}); skipped "
         f"{len(data.get('skipped', []))}. Split: "
         + "; ".join(f"{n} {sum(c.values())}" for n, c in data.get("split_counts", {}).items())
         + f" (seed {cfg['seed']}).", "",
         f"Settings: input {cfg['input_size']}x{cfg['input_size']}, batch {cfg['batch_size']}, Adam lr {cfg['lr']}, "
         f"{cfg['epochs']} epochs max, init `{cfg['init']}`"
         + (f" (ResNet50-LSTM: `{cfg['lstm_init']}`)" if cfg.get("lstm_init") else "")
         + f", augmentation {'on' if cfg['augment'] else 'off'}, schedule `{cfg['lr_schedule']}`, weight decay "
         f"{cfg['weight_decay']}, early stopping {cfg['early_stopping'] or 'off'}.", ""]
    if cfg["init"] == "scratch":
        n_train = sum(data.get("split_counts", {}).get("train", {}).values()) or "the"
        L += ["> " + SCRATCH_NOTE.format(n_train=n_train), ""]
    L += ["Checkpoint rule: the epoch with the highest validation accuracy; ties go to the lower validation loss "
          "(the paper's \"highest validation accuracy, lowest validation loss\").", "",
          "## Table 2 - chosen epoch, train vs validation", "",
          "| model | epoch | train loss | train acc | val loss | val acc | paper train loss | paper train acc | paper val loss | paper val acc |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for arch, r in res.items():
        c, p = r["chosen_epoch"], TABLE2[arch]
        L.append(f"| {ARCH_LABELS[arch]} | {r['best_epoch']}/{r['epochs_run']} | {c['train_loss']:.4f} | "
                 f"{c['train_acc']:.4f} | {c['val_loss']:.4f} | {c['val_acc']:.4f} | {p['train_loss']:.4f} | "
                 f"{p['train_acc']:.4f} | {p['val_loss']:.4f} | {p['val_acc']:.4f} |")
    L += ["", "## Tables 3-5 - confusion matrices on the test split (threshold 0.5; COVID positive)", "",
          "| model | TP (COVID->COVID) | FN (COVID->Normal) | FP (Normal->COVID) | TN (Normal->Normal) | paper TP/FN/FP/TN |",
          "|---|---|---|---|---|---|"]
    for arch, r in res.items():
        cm, p = r["evaluations"]["test"]["at_0.5"]["confusion"], CONFUSION[arch]
        L.append(f"| {ARCH_LABELS[arch]} | {cm['tp']} | {cm['fn']} | {cm['fp']} | {cm['tn']} | "
                 f"{p['tp']}/{p['fn']}/{p['fp']}/{p['tn']} |")
    L += ["", "## Table 6 - test metrics with 95 % confidence intervals (threshold 0.5)", "",
          "| model | n | accuracy | precision | recall | F1 | ROC AUC | ECE | paper acc / prec / rec / F1 |",
          "|---|---|---|---|---|---|---|---|---|"]
    for arch, r in res.items():
        m, p = r["evaluations"]["test"]["at_0.5"], TABLE6[arch]
        L.append(f"| {ARCH_LABELS[arch]} | {m['n']} | {_ci(m, 'accuracy')} | {_ci(m, 'precision')} | "
                 f"{_ci(m, 'recall')} | {_ci(m, 'f1')} | {_ci(m, 'roc_auc')} | {m['ece']:.3f} | "
                 f"{p['accuracy']:.2f} / {p['precision']:.2f} / {p['recall']:.2f} / {p['f1']:.2f} |")
    extra = sorted({n for r in res.values() for n in r["evaluations"] if n not in ("val", "test")})
    for name in extra:
        L += ["", f"## Extra evaluation set `{name}` (threshold 0.5)", "",
              "| model | n | accuracy | precision | recall | F1 | ROC AUC | TP/FN/FP/TN |", "|---|---|---|---|---|---|---|---|"]
        for arch, r in res.items():
            if name in r["evaluations"]:
                m = r["evaluations"][name]["at_0.5"]
                cm = m["confusion"]
                L.append(f"| {ARCH_LABELS[arch]} | {m['n']} | {_ci(m, 'accuracy')} | {_ci(m, 'precision')} | "
                         f"{_ci(m, 'recall')} | {_ci(m, 'f1')} | {_ci(m, 'roc_auc')} | "
                         f"{cm['tp']}/{cm['fn']}/{cm['fp']}/{cm['tn']} |")
    L += ["", "## Operating point", "",
          f"Threshold reaching >= {int(cfg['target_sensitivity'] * 100)} % COVID sensitivity on the validation "
          "split, and the test metrics at that threshold:", "",
          "| model | threshold | stored in model file | test sensitivity | test specificity | test accuracy |",
          "|---|---|---|---|---|---|"]
    for arch, r in res.items():
        m = r["evaluations"]["test"]["at_operating_point"]
        L.append(f"| {ARCH_LABELS[arch]} | {r['operating_point_sens']:.3f} | {r['threshold']:.3f} | "
                 f"{_ci(m, 'recall')} | {_ci(m, 'specificity')} | {_ci(m, 'accuracy')} |")
    L += ["", "## Figures", ""]
    for arch in res:
        L.append(f"- {ARCH_LABELS[arch]}: [curves]({arch}/curves.png), [confusion]({arch}/confusion.png), "
                 f"[reliability]({arch}/reliability.png)")
    L.append("- All confusion matrices: [confusion_all.png](confusion_all.png)")
    for arch, r in res.items():
        js["models"][arch] = {"best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"],
                              "chosen_epoch": r["chosen_epoch"], "threshold": r["threshold"],
                              "operating_point_sens": r["operating_point_sens"],
                              "evaluations": {n: {k: {kk: vv for kk, vv in v.items() if kk != "reliability"}
                                                  for k, v in e.items()} for n, e in r["evaluations"].items()}}
    return "\n".join(L) + "\n", js


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    md, js = build_report(run_dir)
    res = load_results(run_dir)
    if res:
        fig = Figure(figsize=(3.6 * len(res), 3.4))
        for i, (arch, r) in enumerate(res.items()):
            m = r["evaluations"]["test"]["at_0.5"]
            draw_confusion(fig.add_subplot(1, len(res), i + 1), m["confusion"], f"{ARCH_LABELS[arch]} (n={m['n']})")
        fig.tight_layout()
        save_figure(fig, run_dir / "confusion_all.png")
    atomic.write_text(run_dir / "report.json", json.dumps(js, indent=2, default=float) + "\n")
    atomic.write_text(run_dir / "report.md", md)
    return run_dir / "report.md"
