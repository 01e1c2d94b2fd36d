"""Evaluate a model file the way the app runs it, on every held-out set, and
write per-file predictions plus the figures computed from them (model v2's ablation).

    python -m training.release.evaluate_v2 MODEL.safetensors --out results/v2/NAME [--no-explain]
    python -m training.release.evaluate_v2 --table results/v2 ROW_DIR... > results/v2/ablation.md

Sets (``--data-root``, default ``../shared/data``), each through
:class:`training.inference.classifier.Classifier` (loader, chest-radiograph gate with its
refusals classified anyway and counted, lung crop, model, calibration stored in
the file, the file's own threshold, band and pneumonia cut):

* ``new_test``: the test split of ``cxr-infection-3class`` (``results/v2/split.csv``),
  COVID / Normal / pneumonia, with the source's infected-region and lung masks;
* ``kaggle_test``: the test split of covid-cxr-1000 + covid-cxr-extra-3000 (shipped split);
* ``paper_test``: the paper's 100 test images;
* ``external_dev``: films from other hospitals (COVID, Normal, pneumonia) -
  evaluation and model choice only: nothing is fitted on it.

``predictions.csv`` (one row per film) is the record; :func:`figures` turns it into
every number of the ablation, so a test can recompute the committed figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from training.common import atomic
from training.common.csv_out import write_csv
from training.model.metrics import macro_f1

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"
SETS = ("new_test", "kaggle_test", "paper_test", "external_dev")
SET_LABELS = {"new_test": "own test (new set, 3 classes)", "kaggle_test": "own test (Kaggle)",
              "paper_test": "paper's 100", "external_dev": "external-dev"}
LABELS = {"Normal": 0, "COVID": 1, "Pneumonia": 2}
COLUMNS = ("set", "file", "label", "status", "gate", "p_normal", "p_covid", "p_pneumonia", "predicted", "category",
           "heat_in_lungs", "lung_involvement", "true_involvement", "lesion_dice")


def set_files(data_root: Path, split_file: Path) -> list[tuple[str, Path, str, dict]]:
    """(set, path, label, extra) for every evaluation film; extra holds the new set's mask paths."""
    out: list[tuple[str, Path, str, dict]] = []
    new_manifest = {r["file"]: r for r in csv.DictReader(open(data_root / "cxr-infection-3class" / "manifest.csv"))}
    for r in csv.DictReader(open(split_file, newline="")):
        root = data_root / r["dataset"]
        if r["dataset"] == "cxr-infection-3class" and r["split"] == "test":
            m = new_manifest[r["file"]]
            out.append(("new_test", root / r["file"], r["label"], {
                "lung": root / m["lung_mask"], "lesion": root / m["infection_mask"] if m["infection_mask"] else None,
                "involvement": m["infection_fraction_of_lungs"]}))
        elif r["dataset"] != "cxr-infection-3class" and r["split"] == "test":
            out.append(("kaggle_test", root / r["file"], r["label"], {}))
        elif r["split"] == "paper_test":
            out.append(("paper_test", root / r["file"], r["label"], {}))
    ext = data_root / "external-dev"
    for label in LABELS:
        d = ext / label
        if d.is_dir():
            out += [("external_dev", p, label, {}) for p in sorted(d.iterdir())
                    if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm")]
    return out


def _mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L")) >= 128


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else float(2 * int((a & b).sum()) / s)


EXPLAINED_SETS = ("external_dev",)  # Grad-CAM (the share inside the lungs) costs a second pass: external-dev only


def _classified(clf, files, explain_sets):
    """Predictions in ``files`` order, each set with or without Grad-CAM."""
    for name in dict.fromkeys(f[0] for f in files):
        paths = [p for n, p, _, _ in files if n == name]
        yield from clf.classify_paths(paths, enforce_gate=False, explain=name in explain_sets)


def predict_all(model_file: Path, data_root: Path, split_file: Path, explain: bool = True,
                sets: tuple[str, ...] = SETS, *, precision: str = "fp32",
                fast_mode: dict | None = None) -> list[dict[str, str]]:
    """Per-file rows for ``sets``; ``precision`` / ``fast_mode``: the fast-mode validation's int8 run
    (``training.release.fast_mode``: the record under test, not yet in the file)."""
    from training.inference.classifier import Classifier
    from training.inference.result import result_category

    clf = Classifier.from_file(model_file, device="cpu", batch_size=16, mixed_precision=False,
                               precision=precision)
    if fast_mode is not None:
        clf.info.fast_mode = fast_mode
    files = [f for f in set_files(data_root, split_file) if f[0] in sets]
    files.sort(key=lambda f: SETS.index(f[0]))
    rows = []
    t0 = time.time()
    preds = _classified(clf, files, EXPLAINED_SETS if explain else ())
    if precision != "fp32":
        clf.fast_engine()
        print(f"engine: {clf.engine_note}", flush=True)
    for (name, path, label, extra), pred in zip(files, preds):
        fmt = lambda v, d=4: "" if v is None else f"{float(v):.{d}f}"  # noqa: E731
        row = {"set": name, "file": str(path.relative_to(data_root)), "label": label, "status": pred.status,
               "gate": pred.suitability, "p_normal": fmt(pred.probs.get("Normal"), 6),
               "p_covid": fmt(pred.p_covid, 6), "p_pneumonia": fmt(pred.probs.get("Pneumonia"), 6),
               "predicted": pred.label or "", "category": result_category(pred) if pred.ok else "Refused",
               "heat_in_lungs": fmt(pred.heat_in_lungs), "lung_involvement": fmt(pred.lung_involvement),
               "true_involvement": str(extra.get("involvement", "")), "lesion_dice": ""}
        if extra.get("lesion") is not None and pred.has_lesion_map:
            truth = _mask(extra["lesion"])
            row["lesion_dice"] = fmt(_dice(pred.lesion_map(truth.shape) >= 0.5, truth))
        rows.append(row)
        if len(rows) % 100 == 0:
            print(f"{len(rows)}/{len(files)} films ({time.time() - t0:.0f} s)", flush=True)
    return rows


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    write_csv(path, COLUMNS, rows)


def read_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(path, newline="")))


# ---------------------------------------------------------------- figures from rows

def _f(v: str) -> float:
    return float(v) if v not in ("", None) else float("nan")


def set_figures(rows: list[dict[str, str]], threshold: float, band: list[float] | None) -> dict[str, Any]:
    """Every figure for one set's rows (``threshold`` / ``band`` on P(COVID): the model's stored ones)."""
    from training.model.metrics import calibration, evaluate, wilson

    ok = [r for r in rows if r["status"] == "ok"]
    y = np.array([LABELS[r["label"]] for r in ok])
    p = np.array([_f(r["p_covid"]) for r in ok])
    cat = np.array([r["category"] for r in ok])
    out: dict[str, Any] = {"n": len(rows), "not_classified": len(rows) - len(ok),
                           "gate_refused": sum(1 for r in rows if r["gate"] == "refused")}
    cn = y != 2
    if cn.any() and len(set(y[cn].tolist())) == 2:
        m = evaluate(y[cn], p[cn], threshold)
        m.pop("reliability", None)
        out["covid_vs_normal"] = m
    indet = cat == "Indeterminate"
    out["indeterminate"] = {"k": int(indet.sum()), "n": len(ok), "share": float(indet.mean()) if len(ok) else 0.0,
                            "ci95": list(wilson(int(indet.sum()), len(ok)))}
    out["ece_covid"] = calibration((y == 1).astype(int), p)["ece"] if len(ok) else float("nan")
    pn = y == 2
    if pn.any():
        called = int((cat[pn] == "COVID-19").sum())
        out["pneumonia"] = {"n": int(pn.sum()), "called_covid": called, "ci95": list(wilson(called, int(pn.sum()))),
                            "indeterminate": int(indet[pn].sum()),
                            "called_pneumonia": int((cat[pn] == "Other pneumonia").sum())}
        if any(r["p_pneumonia"] for r in ok):
            pred = np.array([{"Normal": 0, "COVID": 1, "Pneumonia": 2}.get(r["predicted"], -1) for r in ok])
            out["macro_f1_3class"] = macro_f1(y, pred)
            out["accuracy_3class"] = float((pred == y).mean())
            out["macro_f1_3class_decided"] = macro_f1(y[~indet], pred[~indet])
    # a verdict given (not Indeterminate) that was right, COVID and Normal films
    dec = cn & ~indet
    right = ((cat == "COVID-19") & (y == 1)) | ((cat == "Normal") & (y == 0))
    out["decided_right"] = {"k": int((right & dec).sum()), "n": int(dec.sum()), "of": int(cn.sum())}
    heat = np.array([_f(r["heat_in_lungs"]) for r in ok])
    hb = cn & np.isfinite(heat)
    if hb.any():
        out["heat_in_lungs_median"] = float(np.median(heat[hb]))
        out["heat_n"] = int(hb.sum())
    dice = np.array([_f(r["lesion_dice"]) for r in ok])
    if np.isfinite(dice).any():
        d = dice[np.isfinite(dice)]
        rng = np.random.default_rng(0)
        boots = [float(np.mean(rng.choice(d, len(d)))) for _ in range(2000)]
        out["lesion_dice"] = {"mean": float(d.mean()), "median": float(np.median(d)), "n": int(len(d)),
                              "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]}
        inv = np.array([_f(r["lung_involvement"]) for r in ok])
        tru = np.array([_f(r["true_involvement"]) for r in ok])
        both = np.isfinite(dice) & np.isfinite(inv) & np.isfinite(tru)
        within = int((np.abs(inv[both] - tru[both]) <= 0.10).sum())
        out["involvement_within_10"] = {"k": within, "n": int(both.sum()),
                                        "share": within / max(1, int(both.sum())),
                                        "ci95": list(wilson(within, int(both.sum())))}
    return out


def figures(rows: list[dict[str, str]], threshold: float, band: list[float] | None) -> dict[str, Any]:
    return {name: set_figures([r for r in rows if r["set"] == name], threshold, band)
            for name in SETS if any(r["set"] == name for r in rows)}


def _ci(m: dict | None, key: str) -> str:
    from training.common.formatting import ci_text

    return "-" if not m else ci_text(m, key)


def _share(d: dict | None) -> str:
    if not d:
        return "-"
    lo, hi = d["ci95"]
    return f"{100 * d['share']:.1f} % ({100 * lo:.0f}-{100 * hi:.0f})"


def render_table(rows: list[dict]) -> str:
    """The ablation table: one line per model, with 95 % CIs."""
    head = ("| model | what changes | set | COVID vs Normal AUC | acc / sens / spec at the stored threshold | "
            "pneumonia called COVID | Indeterminate (all films) | ECE P(COVID) | 3-class macro-F1 | "
            "Grad-CAM in lungs (median) | lesion Dice (COVID films) | involvement within 10 points |")
    L = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        for name in SETS:
            f = r["figures"].get(name)
            if not f:
                continue
            cv = f.get("covid_vs_normal")
            pn = f.get("pneumonia")
            L.append("| " + " | ".join([
                r["name"], r["what"], SET_LABELS[name], _ci(cv, "roc_auc"),
                (f"{_ci(cv, 'accuracy')} / {cv['recall']:.3f} / {cv['specificity']:.3f}" if cv else "-"),
                (f"{pn['called_covid']}/{pn['n']}" if pn else "-"), _share(f.get("indeterminate")),
                f"{f['ece_covid']:.3f}", (f"{f['macro_f1_3class']:.3f}" if "macro_f1_3class" in f else "-"),
                (f"{100 * f['heat_in_lungs_median']:.0f} % (n {f['heat_n']})" if "heat_in_lungs_median" in f else "-"),
                (f"{f['lesion_dice']['mean']:.3f} ({f['lesion_dice']['ci95'][0]:.2f}-{f['lesion_dice']['ci95'][1]:.2f})"
                 if "lesion_dice" in f else "-"),
                _share(f.get("involvement_within_10"))]) + " |")
    return "\n".join(L)


def goals(summary: dict) -> list[tuple[str, str, bool | None]]:
    """The model-v2 issue's goals: (goal, measured with its 95 % CI, met / missed / None = reported only)."""
    f = summary["figures"]
    ex, pt, new, kg = (f.get(k) or {} for k in ("external_dev", "paper_test", "new_test", "kaggle_test"))
    out: list[tuple[str, str, bool | None]] = []
    cv = ex.get("covid_vs_normal")
    if cv:
        out.append(("external-dev COVID vs Normal: ROC AUC >= 0.95", _ci(cv, "roc_auc"), cv["roc_auc"] >= 0.95))
    pn = ex.get("pneumonia")
    if pn:
        out.append(("external-dev: non-COVID pneumonia films called COVID <= 10 / 76",
                    f"{pn['called_covid']} / {pn['n']} ({100 * pn['ci95'][0]:.0f}-{100 * pn['ci95'][1]:.0f} %)",
                    pn["called_covid"] <= 10 * pn["n"] / 76))
    if ex.get("indeterminate"):
        out.append(("external-dev: Indeterminate <= 15 % of all its films", _share(ex["indeterminate"]),
                    ex["indeterminate"]["share"] <= 0.15))
    if pt.get("covid_vs_normal"):
        out.append(("paper's 100 test images: accuracy >= 0.95 at the stored threshold",
                    _ci(pt["covid_vs_normal"], "accuracy"), pt["covid_vs_normal"]["accuracy"] >= 0.95))
    for name, d in (("new set", new), ("Kaggle", kg)):
        if d:
            out.append((f"own test split ({name}): ECE of P(COVID) <= 0.05", f"{d['ece_covid']:.3f}",
                        d["ece_covid"] <= 0.05))
    if "macro_f1_3class" in new:
        out.append(("own test split (new set): three-class macro-F1 (reported)",
                    f"{new['macro_f1_3class']:.3f} (accuracy {new['accuracy_3class']:.3f})", None))
    if "lesion_dice" in new:
        d = new["lesion_dice"]
        out.append(("new set's test COVID films: lesion Dice >= 0.75",
                    f"{d['mean']:.3f} ({d['ci95'][0]:.2f}-{d['ci95'][1]:.2f}), n {d['n']}", d["mean"] >= 0.75))
        w = new["involvement_within_10"]
        out.append(("lung involvement within 10 points of the mask's for >= 90 % of them", _share(w),
                    w["share"] >= 0.90))
    if "heat_in_lungs_median" in ex:
        out.append(("external-dev: median Grad-CAM share inside the lungs >= 60 %",
                    f"{100 * ex['heat_in_lungs_median']:.0f} % (n {ex['heat_n']})", ex["heat_in_lungs_median"] >= 0.60))
    return out


def render_goals(summary: dict) -> str:
    L = ["| goal | measured (95 % CI) | |", "|---|---|---|"]
    L += [f"| {g} | {v} | {'reported' if ok is None else 'met' if ok else '**missed**'} |"
          for g, v, ok in goals(summary)]
    return "\n".join(L)


ROW_ORDER = ("v1", "ab_linear_3class", "ab_linear_lesion", "ab_lstm_lesion", "v2_linear_lesion", "v2_lstm_lesion",
             "v2_lstm_lesion_16", "v2_lstm_lesion_masked")
SHIPPED_ROW = "v2_lstm_lesion_16"


def row_dirs(results: Path) -> list[Path]:
    """The ablation's row folders in ablation order (those that exist)."""
    return [results / n for n in ROW_ORDER if (results / n / "evaluation.json").is_file()]


def render_card(results: Path, model_file: Path, notes: str, segmenter_section: str) -> str:
    """MODEL_CARD.md for the shipped v2: its metadata, goals, ablation, notes and the gate's section."""
    from training.model.modelfile import file_sha256, read_info

    info, _ = read_info(model_file)
    ship = json.loads((results / SHIPPED_ROW / "evaluation.json").read_text())
    tr = info.training or {}
    cfg = tr.get("config", {})
    band = info.band or [float("nan")] * 2
    head = [
        f"# Model card: {info.name} (v{info.version})", "",
        "**Research and teaching only. Not a medical device; not a diagnosis.**", "",
        "| | |", "|---|---|",
        f"| file | `{model_file.name}` (SHA-256 `{file_sha256(model_file)[:16]}...`) |",
        f"| architecture | ResNet50-LSTM (`{info.arch}`): ResNet50 trunk, its 2048-channel last map read as a "
        f"{(info.input_size // 32) ** 2}-step sequence ({info.sequence_order} order) by LSTMs of 32, 16 and 8 units, "
        f"dropout {info.dropout}, "
        f"dense softmax over three classes; a lesion decoder (FPN on stages 3-5) gives a lesion probability map "
        f"at 1/8 of the input |",
        f"| input | the lungs' box (+10 % margin, lung segmenter), CLAHE; {info.input_size} x {info.input_size} "
        "grey repeated to 3 channels, values in [0, 1] |",
        f"| output | calibrated P for {', '.join(info.class_names)} (softmax, temperature "
        f"{info.temperature:.3f} fitted on validation); P(COVID) is the headline score; the lesion map; lung "
        "involvement = lesion area (P >= 0.5) inside the segmented lungs / lung area |",
        f"| decision rule | COVID-19 when P(COVID) >= {info.threshold:.3f} (>= 95 % COVID sensitivity on "
        f"validation); below it \"Other pneumonia (not a COVID-19 pattern)\" when P(Pneumonia) / (P(Pneumonia) + "
        f"P(Normal)) >= {info.pneumonia_threshold:.3f} (best balanced accuracy on validation), else Normal; "
        f"P(COVID) in {band[0]:.3f}-{band[1]:.3f}: \"Indeterminate \u2014 review\" |",
        f"| version / created | {info.version} / {info.created} |",
        f"| recipe | `python -m training.train.model_v2` (`tools/train_shipped.sh`): warm start from v1's backbone; "
        f"{cfg.get('epochs')} epochs x {cfg.get('samples_per_epoch')} source-balanced films, batch "
        f"{cfg.get('batch_size')}, AdamW (backbone {cfg.get('lr')}, head and decoder {cfg.get('head_lr')}), "
        f"cosine schedule, stem + stage 2 frozen, source augmentation; chosen epoch {tr.get('best_epoch')} "
        "(lowest validation classification loss) |",
        "| data | covid-cxr-1000 (without the paper's 100 test images), covid-cxr-extra-3000 (shipped split), "
        "cxr-infection-3class (70/15/15, seed 20261206; `results/v2/split.csv`) |", "",
        "## Goals (issue: model v2)", "",
        f"Every figure: the model file as the app runs it (`python -m training.release.evaluate_v2`), at the stored "
        f"threshold and band, from the per-file predictions in `results/v2/{SHIPPED_ROW}/predictions.csv`.", "",
        render_goals(ship), "",
        "## Ablation", "",
        "Each row is one model file evaluated the same way (figures with 95 % CIs: Wilson for proportions, "
        "bootstrap for AUC and Dice). 'Indeterminate' counts every classified film of the set; 'pneumonia called "
        "COVID' counts non-COVID pneumonia films given the COVID-19 verdict (not those in the band). ECE: P(COVID) "
        "against COVID / not COVID, 10 bins. Grad-CAM in lungs: external-dev's COVID and Normal films.", "",
        render_table([json.loads((d / "evaluation.json").read_text()) for d in row_dirs(results)]), "",
        notes.strip(), "", segmenter_section.strip(), ""]
    return "\n".join(head)


def ship(model_file: Path, results: Path, dest: Path) -> Path:
    """Copy the evaluated run model to ``dest`` with its test figures in the metadata (the weights,
    calibration, threshold and band stay exactly as evaluated)."""
    from training.model.modelfile import load_model, read_verified_tensors, save_model, weights_digest

    ev = json.loads((results / SHIPPED_ROW / "evaluation.json").read_text())
    loaded = load_model(model_file)
    info = loaded.info
    assert abs(info.threshold - ev["threshold"]) < 1e-12, "the model file is not the evaluated one"
    m = ev["figures"]["new_test"]["covid_vs_normal"]
    info.metrics = {k: m[k] for k in ("n", "accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "ece",
                                      "ci95", "confusion", "threshold")}
    info.metrics["evaluated_on"] = ("own test split of cxr-infection-3class, COVID vs Normal, calibrated P(COVID) "
                                    f"at the stored threshold (results/v2/{SHIPPED_ROW})")
    info.operating_points = {"sensitivity_95_val": info.threshold, "band_low": info.band[0],
                             "band_high": info.band[1]}
    save_model(loaded.model, info, dest, half=True)
    assert weights_digest(read_verified_tensors(dest)) == ev["weights_sha256"], "weights changed while shipping"
    return dest


def evaluate_file(model_file: Path, out: Path, name: str, what: str, data_root: Path, split_file: Path,
                  explain: bool = True) -> dict:
    from training.model.modelfile import file_sha256, read_info

    info, _ = read_info(model_file)
    t0 = time.time()
    rows = predict_all(model_file, data_root, split_file, explain=explain)
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / "predictions.csv", rows)
    from training.model.modelfile import read_verified_tensors, weights_digest

    summary = {"name": name, "what": what, "model_file": model_file.name, "model_sha256": file_sha256(model_file),
               "weights_sha256": weights_digest(read_verified_tensors(model_file)),
               "threshold": info.threshold, "band": info.band, "pneumonia_threshold": info.pneumonia_threshold,
               "classes": info.class_names, "seconds": round(time.time() - t0, 1),
               "command": f"python -m training.release.evaluate_v2 {model_file.name} --out {out} --name {name!r}",
               "figures": figures(rows, info.threshold, info.band)}
    atomic.write_json(out / "evaluation.json", summary)
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.release.evaluate_v2", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", help="model file to evaluate")
    ap.add_argument("--out", help="results folder of this row (predictions.csv, evaluation.json)")
    ap.add_argument("--name", default="")
    ap.add_argument("--what", default="")
    ap.add_argument("--no-explain", action="store_true", help="skip Grad-CAM (no 'in lungs' figure)")
    ap.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    ap.add_argument("--split", default=str(REPO / "results" / "v2" / "split.csv"))
    ap.add_argument("--table", nargs="+", help="row folders (evaluation.json) -> print the ablation table")
    ap.add_argument("--ship", help="the evaluated v2 run's model.safetensors -> resources/models/covid_cxr_v2.safetensors")
    ap.add_argument("--card", help="results/v2 -> write resources/models/MODEL_CARD.md for the shipped v2")
    ap.add_argument("--goals", help="a row folder (evaluation.json) -> print its goals table")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    if a.ship:
        print(ship(Path(a.ship), REPO / "results" / "v2", REPO / "resources" / "models" / "covid_cxr_v2.safetensors"))
        return 0
    if a.card:
        models = REPO / "resources" / "models"
        seg = (models / "MODEL_CARD_v1.md").read_text(encoding="utf-8")
        seg = "## Lung segmenter" + seg.split("## Lung segmenter", 1)[1]
        notes = (Path(a.card) / "card_notes.md").read_text(encoding="utf-8")
        text = render_card(Path(a.card), models / "covid_cxr_v2.safetensors", notes, seg)
        atomic.write_text(models / "MODEL_CARD.md", text)
        print(text)
        return 0
    if a.goals:
        print(render_goals(json.loads((Path(a.goals) / "evaluation.json").read_text())))
        return 0
    if a.table:
        rows = [json.loads((Path(d) / "evaluation.json").read_text()) for d in a.table]
        print(render_table(rows))
        return 0
    if not a.model or not a.out:
        ap.error("give a model file and --out, or --table")
    import torch

    torch.set_num_threads(a.threads)
    s = evaluate_file(Path(a.model), Path(a.out), a.name or Path(a.model).stem, a.what, Path(a.data_root),
                      Path(a.split), explain=not a.no_explain)
    print(render_table([s]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
