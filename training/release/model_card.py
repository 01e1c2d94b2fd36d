"""Write MODEL_CARD.md for a model file from its own metadata and its run's
``metrics.json`` - the card's figures are never typed by hand.

    python -m training.release.model_card MODEL.safetensors RUN/<arch>/metrics.json OUT.md [--notes NOTES.md]
        [--segmenter lung_segmenter.safetensors --gate-bench gate_bench.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.common import atomic
from training.model.modelfile import file_sha256, read_info
from training.model.networks import ARCH_LABELS
from training.train.paper_reference import TABLE6


def _fmt(m: dict, key: str) -> str:
    from training.common.formatting import ci_text

    return ci_text(m, key, label=True)


def _eval_table(evals: dict, names: dict[str, str]) -> list[str]:
    rows = ["| evaluation set | n | threshold | accuracy | precision | recall (sensitivity) | specificity | F1 | ROC AUC | TP/FN/FP/TN |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for key, title in names.items():
        if key not in evals:
            continue
        for at in ("at_0.5", "at_operating_point"):
            m = evals[key][at]
            cm = m["confusion"]
            rows.append(f"| {title} | {m['n']} | {m['threshold']:.3f} | {_fmt(m, 'accuracy')} | {_fmt(m, 'precision')} | "
                        f"{_fmt(m, 'recall')} | {_fmt(m, 'specificity')} | {_fmt(m, 'f1')} | {_fmt(m, 'roc_auc')} | "
                        f"{cm['tp']}/{cm['fn']}/{cm['fp']}/{cm['tn']} |")
    return rows


def _calibrated_table(ev: dict) -> list[str]:
    """The shipped model's own evaluation (``training.release.ablation``): calibrated P at the stored threshold."""
    names = {"test": "own test split", "paper_test": "paper's 100-image test split",
             "external_dev": "external-dev, COVID vs Normal (other hospitals)"}
    rows = ["| evaluation set | n | accuracy | precision | recall (sensitivity) | specificity | F1 | ROC AUC | "
            "ECE | in borderline band | TP/FN/FP/TN |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, title in names.items():
        m = ev.get(key)
        if not m:
            continue
        cm = m["confusion"]
        rows.append(f"| {title} | {m['n']} | {_fmt(m, 'accuracy')} | {_fmt(m, 'precision')} | {_fmt(m, 'recall')} | "
                    f"{_fmt(m, 'specificity')} | {_fmt(m, 'f1')} | {_fmt(m, 'roc_auc')} | {m['ece']:.3f} | "
                    f"{100 * m.get('band_share', 0):.1f} % | {cm['tp']}/{cm['fn']}/{cm['fp']}/{cm['tn']} |")
    ex = ev.get("external_dev")
    if ex and "pneumonia" in ex:
        pn = ex["pneumonia"]
        rows += ["", f"external-dev's {pn['n']} non-COVID pneumonia films (a class the model never saw): "
                     f"{pn['called_covid']} called COVID at the stored threshold, {pn['in_band']} inside the "
                     f"borderline band. The gate refused {ex.get('gate_refused', 0)} of external-dev's films "
                     "(they were classified anyway for this evaluation)."]
    return rows


def render(model_path: Path, metrics_path: Path, notes: str = "", ablation_dir: Path | None = None) -> str:
    info, _ = read_info(model_path)
    res = json.loads(Path(metrics_path).read_text(encoding="utf-8"))
    ev = rows = None
    if ablation_dir is not None:
        ev = json.loads((ablation_dir / "shipped_evaluation.json").read_text(encoding="utf-8"))
        rows = json.loads((ablation_dir / "ablation.json").read_text(encoding="utf-8"))
    from training.model.lung_input import InputSpec

    spec = InputSpec.from_metadata(info.preprocessing)
    tr = info.training
    paper = TABLE6.get(info.arch, {})
    L = [f"# Model card: {info.title}", "",
         "**Research and teaching only. Not a medical device; not a diagnosis.**", "",
         "| | |", "|---|---|",
         f"| file | `{model_path.name}` (SHA-256 `{file_sha256(model_path)[:16]}...`) |",
         f"| architecture | {ARCH_LABELS[info.arch]} (`{info.arch}`) |",
         f"| input | {spec.describe()}; {info.input_size} x {info.input_size} grey, repeated to 3 channels, values in [0, 1] (no ImageNet normalisation) |",
         f"| output | P(COVID) (sigmoid{f', temperature {info.temperature:.3f}: calibrated on validation' if info.calibration else ''}); classes {info.class_names}, positive `{info.positive_class}` |",
         f"| default decision threshold | {info.threshold:.3f} ({', '.join(f'{k}: {v:.3f}' for k, v in info.operating_points.items())}) |",
         *([f"| borderline band | {info.band[0]:.3f}-{info.band[1]:.3f}: shown as \"Indeterminate \u2014 review\" "
            f"({info.calibration.get('band_rule', '')}) |"] if info.band else []),
         f"| version / created | {info.version} / {info.created} |",
         f"| recipe | `{tr.get('recipe')}`; init `{tr.get('init')}`; {tr.get('epochs_run')} epochs run, chosen epoch {tr.get('best_epoch')}; "
         f"batch {tr.get('batch_size')}; Adam lr {tr.get('lr')}; augmentation {'on' if tr.get('augment') else 'off'}; seed {tr.get('seed')} |",
         f"| data | {', '.join(tr.get('data', []))} |",
         "| split (images) | " + "; ".join(f"{k}: {sum(v.values())} ({', '.join(f'{c} {n}' for c, n in v.items())})"
                                            for k, v in tr.get("split", {}).items()) + " |",
         "", "## Test results", ""]
    if ev is not None:
        from training.release.ablation import render_goals, render_table

        L += ["Calibrated P(COVID) at the stored threshold "
              f"({info.threshold:.3f}: >= 95 % COVID sensitivity on the validation split). `paper_test` = the 100 "
              "test images of the paper reproduction's split of covid-cxr-1000 (seed 42), kept out of this model's "
              "training and validation. external-dev = films from other hospitals, used to choose between models, "
              "never to train or fit anything (`python -m training.release.ablation`).", ""]
        L += _calibrated_table(ev)
        L += ["", "### Goals", "", render_goals(ev), "",
              "### Ablation", "", "Each row is one trained model (run folders in `results/v1/`), "
              "evaluated the same way; 'what changes' is relative to the row above.", "", render_table(rows), ""]
    else:
        L += ["Rows at threshold 0.5 and at the stored operating point (>= "
              f"{int(res.get('target_sensitivity', 0.95) * 100)} % COVID sensitivity on the validation split). "
              "`paper_test` = the 100 test images of the paper reproduction's split of covid-cxr-1000 "
              "(seed 42), kept out of this model's training and validation.", ""]
        L += _eval_table(res["evaluations"], {"test": "own test split", "paper_test": "paper's 100-image test split"})
    if paper:
        L += ["", f"The paper reports for its {ARCH_LABELS[info.arch]}: accuracy {paper['accuracy']:.2f}, precision "
                  f"{paper['precision']:.2f}, recall {paper['recall']:.2f}, F1 {paper['f1']:.2f} (100 test images, "
                  "ImageNet-initialised backbone)."]
    L += ["", "## Data and sources", "",
          "`covid-cxr-1000` (500 COVID + 500 Normal, 299 px) and `covid-cxr-extra-3000` (1,500 + 1,500, 224 px, disjoint "
          "from the first): chest X-rays from a public copy of the Kaggle *COVID-19 Radiography Database* (Qatar "
          "University / University of Dhaka). COVID images come from BIMCV-COVID19+, a German medical school, SIRM / "
          "ieee8023 / Kaggle / Twitter / eurorad / figshare and COVID-CXNet; Normal images from the RSNA Pneumonia "
          "Detection Challenge (NIH ChestX-ray14). Exact and near duplicates removed, one image per similarity group; "
          "see each data set's SOURCES.md for licences and citations (Chowdhury et al., IEEE Access 2020; "
          "Rahman et al., arXiv:2012.02238).", "",
          "## Intended use", "",
          "Research and teaching: reproducing Uly, Hendry, Iriani (2023) and showing how a CNN-RNN classifier and its "
          "Grad-CAM behave on chest radiographs. Not for clinical decisions, triage or screening.", "",
          "## Known limits", "",
          "- **Source bias**: every Normal image comes from one source (RSNA/NIH), COVID images from many hospitals and "
          "web figures (some with arrows, text, photos of screens). The model can separate the classes partly by "
          "source style, not disease; accuracy on films from another hospital will be lower.",
          "- Only two classes: other pneumonias, effusions, tubes and lines were not in training; the model still "
          "answers COVID or Normal for them.",
          "- Frontal (PA/AP) adult-mostly films; lateral views, CT/MR and non-chest images are refused by the loader's "
          "DICOM header checks and by the chest-radiograph gate (section below), which is not perfect.",
          "- Trained from scratch on a 2-core CPU (no ImageNet weights were available); confidence intervals are wide.",
          "- Grad-CAM shows where the network looked, not why, and at this input size its map is coarse.", ""]
    if notes:
        L += ["## Notes", "", notes.strip(), ""]
    return "\n".join(L)


def render_segmenter(seg_path: Path, bench: dict | None = None) -> str:
    """The model card's section on the lung segmenter and the gate, from the
    segmenter file's metadata and (optionally) ``bench/bench_gate.py --json``."""
    from training.gate.segmenter import read_segmenter_info

    info = read_segmenter_info(seg_path)
    m, tr, g = info.metrics, info.training, info.gate or {}
    lo, hi = m["dice_ci95"]
    ilo, ihi = m["dice_inverted_ci95"]
    pairs = tr.get("pairs", {})
    L = ["## Lung segmenter and chest-radiograph gate", "",
         "| | |", "|---|---|",
         f"| file | `{seg_path.name}` (SHA-256 `{file_sha256(seg_path)[:16]}...`) |",
         f"| network | MONAI BasicUNet, features {tuple(info.features)}, {info.input_size} x {info.input_size} grey input, "
         f"one lung logit per pixel (both lungs, heart excluded); trained from scratch |",
         f"| data | `{tr.get('data')}` (COVID-QU-Ex lung masks): {pairs.get('train')} train / {pairs.get('val')} "
         f"validation / {pairs.get('test')} test pairs, stratified by label (COVID-19, Non-COVID, Normal), seed "
         f"{tr.get('seed')} |",
         f"| training | {tr.get('loss')}, {tr.get('optimizer')} lr {tr.get('lr')}, {tr.get('epochs')} epochs, batch "
         f"{tr.get('batch_size')}; augmentation: {tr.get('augmentation')}; chosen epoch {m['best_epoch']} by "
         f"validation Dice |",
         f"| test Dice ({m['test_pairs']} held-out pairs) | **{m['dice_mean']:.4f}** (95 % CI {lo:.4f}-{hi:.4f}, "
         f"bootstrap); median {m['dice_median']:.4f}, worst {m['dice_min']:.4f} |",
         f"| same pairs, grey levels inverted | {m['dice_inverted_mean']:.4f} (95 % CI {ilo:.4f}-{ihi:.4f}) |",
         f"| gate calibration | {g.get('calibration', 'not calibrated')} |", ""]
    if bench:
        L += [f"CPU inference (2 AVX2 cores, batch 1): median {bench['segmenter_ms']:.1f} ms per image at "
              f"{info.input_size} px (`bench/bench_gate.py`, the run below). The gate's figures below are development "
              "figures: its signals and quantile levels were chosen looking at these corpora (its thresholds "
              "themselves come from validation chest X-rays only).", "",
              "| corpus | files | refused by the gate | warned | refused by the app (header checks + gate) | "
              "inverted copies detected | originals flagged inverted |", "|---|---|---|---|---|---|---|"]
        for r in bench["corpora"]:
            n = r["files"]
            ref = r["gate_refused"] + r["unreadable"]
            inv = f"{r['inverted_detected']}/{r['inverted_total']}" if "inverted_total" in r else "-"
            flag = f"{r['originals_flagged']}/{r['decoded']}" if "originals_flagged" in r else "-"
            L.append(f"| {r['corpus']} | {n} | {ref} ({100 * ref / n:.1f} %) | {r['gate_warned']} "
                     f"({100 * r['gate_warned'] / n:.1f} %) | {r['pipeline_refused']} ({100 * r['pipeline_refused'] / n:.1f} %) "
                     f"| {inv} | {flag} |")
        L.append("")
    L += ["Limits: the segmenter was trained on 256 px Kaggle-family films (COVID-QU-Ex); the masks exclude the heart "
          "and the lung behind it, so the heatmap share inside the lungs counts attention on the heart shadow as "
          "outside. The gate's thresholds come from quantiles of real chest X-rays (one-class calibration): an "
          "unusual but real chest film (child, rotated patient, large effusion, collapsed lung) may be refused or "
          "warned, and a non-chest image that the segmenter mistakes for lungs may pass. See docs/GATE.md.", ""]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.release.model_card", description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("metrics")
    ap.add_argument("out")
    ap.add_argument("--notes", help="a Markdown file appended under 'Notes'")
    ap.add_argument("--segmenter", help="lung segmenter file: adds its section")
    ap.add_argument("--gate-bench", help="bench/bench_gate.py --json output for the segmenter section")
    ap.add_argument("--ablation", help="training.release.ablation's output folder: calibrated results, goals, ablation")
    a = ap.parse_args(argv)
    notes = Path(a.notes).read_text(encoding="utf-8") if a.notes else ""
    text = render(Path(a.model), Path(a.metrics), notes, Path(a.ablation) if a.ablation else None)
    if a.segmenter:
        bench = json.loads(Path(a.gate_bench).read_text(encoding="utf-8")) if a.gate_bench else None
        text = text.rstrip("\n") + "\n\n" + render_segmenter(Path(a.segmenter), bench)
    atomic.write_text(a.out, text)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
