"""Why is the ResNet50-LSTM head worse than a linear head?  Validation figures of model v2 run files.

    python -m training.release.head_study NAME=MODEL_FILE [NAME=MODEL_FILE ...] --reference NAME
                                          [--cache-dir DIR] [--out study.json]

Every model file (a ``training.train.model_v2`` run's ``model.safetensors``, three classes, same input size)
classifies the **validation** split of ``results/v2/split.csv`` (never a test split, never external-dev)
from the training views' cache (``DIR/v2_3c_<S>px.npz``, decoded once as the trainer does).  Per model:
the classification loss and three-class accuracy of the raw logits (as the training history reports them),
three-class macro-F1 of the arg-max, COVID vs Normal and COVID vs pneumonia ROC AUC of P(COVID), the lesion
Dice on the validation COVID films, and for LSTM heads how saturated the first LSTM's gates are; 95 % CIs by a seeded percentile bootstrap over films (2,000 resamples),
and for every model the **paired** bootstrap CI of its difference from ``--reference`` (same resampled
films for both), which says whether a difference lies beyond the noise of this validation split.
``--out study.json`` also writes ``study.npz``: every film's raw logits and Dice per model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from training.common import atomic

BOOTSTRAP = 2000
SATURATION_STRIDE = 8  # every 8th validation film for the gate saturation figures
FIGURES = ("loss", "accuracy", "macro_f1", "auc_covid_normal", "auc_covid_pneumonia", "lesion_dice")


def validation_outputs(model_file: Path, images: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Raw logits ``(N, 3)``, lesion probabilities and the first LSTM's gate saturation (empty for a
    linear head) of a model file on the cached views ``images[idx]``."""
    from training.model.modelfile import load_model
    from training.train.model_v2 import predict_split

    loaded = load_model(model_file)
    if len(loaded.info.class_names) != 3:
        raise SystemExit(f"{model_file}: not a three-class model")
    logits, lesion = predict_split(loaded.model, images, idx)
    return logits, lesion, gate_saturation(loaded.model, images[idx[::SATURATION_STRIDE]])


def gate_saturation(model, images_u8: np.ndarray) -> dict[str, float]:
    """How saturated the first LSTM's gates are on these views: the standard deviation of its gate
    pre-activations (``W_ih x + b``; the recurrent part left out), the share of input and forget gate
    pre-activations beyond +-4 (sigmoid slope < 0.018) and of cell candidates beyond +-2 (tanh slope
    < 0.071).  Empty for a model without an LSTM head."""
    import torch

    from training.model.networks import _trunk_features
    from training.train.model_v2 import three_channels, to_input

    if not hasattr(model, "head"):
        return {}
    lstm = model.head.lstms[0]
    hid = lstm.hidden_size
    with torch.inference_mode():
        f = _trunk_features(model.backbone, three_channels(to_input(images_u8)))
        if getattr(model, "sequence", "raster") == "column":
            f = f.transpose(2, 3)
        pre = f.flatten(2).transpose(1, 2) @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + lstm.bias_hh_l0
    return {"films": int(len(images_u8)), "pre_activation_std": round(float(pre.std()), 3),
            "input_forget_beyond_4": round(float((pre[..., :2 * hid].abs() > 4).float().mean()), 3),
            "candidate_beyond_2": round(float((pre[..., 2 * hid:3 * hid].abs() > 2).float().mean()), 3)}


def film_dice(lesion: np.ndarray | None, masks_u8: np.ndarray, covid_with_mask: np.ndarray) -> np.ndarray:
    """Per-film Dice (lesion P >= 0.5 against mask >= 0.5) for the films flagged; NaN elsewhere."""
    import torch
    import torch.nn.functional as F

    from training.train.model_v2 import dice_score

    out = np.full(len(masks_u8), np.nan)
    if lesion is None:
        return out
    for k in np.flatnonzero(covid_with_mask):
        up = F.interpolate(torch.from_numpy(lesion[k])[None, None], size=masks_u8.shape[-2:], mode="bilinear",
                           align_corners=False)[0, 0].numpy()
        out[k] = dice_score(up >= 0.5, masks_u8[k] >= 128)
    return out


def figures(logits: np.ndarray, y: np.ndarray, dice: np.ndarray) -> dict[str, float]:
    """The study's figures for one model on a set of films (one bootstrap resample or all)."""
    from training.model.calibration import softmax
    from training.model.metrics import macro_f1, roc_auc

    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    probs = softmax(logits)
    cn, cp = y <= 1, y >= 1
    return {
        "loss": float(-log_p[np.arange(len(y)), y].mean()),
        "accuracy": float((probs.argmax(1) == y).mean()),
        "macro_f1": macro_f1(y, probs.argmax(1)),
        "auc_covid_normal": roc_auc((y[cn] == 1).astype(int), probs[cn, 1]),
        "auc_covid_pneumonia": roc_auc((y[cp] == 1).astype(int), probs[cp, 1]),
        "lesion_dice": float(np.nanmean(dice)) if np.isfinite(dice).any() else float("nan"),
    }


def study(outputs: dict[str, tuple[np.ndarray, np.ndarray]], y: np.ndarray, reference: str,
          bootstrap: int = BOOTSTRAP, seed: int = 0) -> dict[str, dict]:
    """Point figures, bootstrap CIs and paired differences from ``reference`` for every model."""
    rng = np.random.default_rng(seed)
    point = {name: figures(lg, y, d) for name, (lg, d) in outputs.items()}
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in outputs}
    for _ in range(bootstrap):
        s = rng.integers(0, len(y), len(y))
        for name, (lg, d) in outputs.items():
            samples[name].append(figures(lg[s], y[s], d[s]))
    result = {}
    for name in outputs:
        row = {"n": int(len(y)), **point[name], "ci95": {}, "minus_reference": {}}
        for f in FIGURES:
            vals = np.array([r[f] for r in samples[name]])
            diffs = vals - np.array([r[f] for r in samples[reference]])
            row["ci95"][f] = _interval(vals)
            row["minus_reference"][f] = {
                "difference": round(point[name][f] - point[reference][f], 4), "ci95": _interval(diffs)}
        result[name] = row
    return result


def _interval(values: np.ndarray) -> list[float]:
    """The 2.5 and 97.5 percentiles of the finite values (NaN, NaN when there are none: no lesion map)."""
    v = values[np.isfinite(values)]
    return np.percentile(v, [2.5, 97.5]).round(4).tolist() if len(v) else [float("nan")] * 2


def render(result: dict[str, dict], reference: str) -> str:
    """A Markdown table: each figure with its CI, then the paired difference from the reference."""
    head = ["model"] + list(FIGURES)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in result.items():
        cells = [name]
        for f in FIGURES:
            lo, hi = row["ci95"][f]
            cell = f"{row[f]:.3f} ({lo:.3f}-{hi:.3f})"
            if name != reference:
                d = row["minus_reference"][f]
                cell += f"; {d['difference']:+.3f} ({d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n(after ';': the difference from {reference} with its paired bootstrap 95 % CI)\n"


def main(argv=None) -> int:
    from training.train.model_v2 import DEFAULT_DATA_ROOT, V2_SPLIT, V2Config, build_cache, read_items

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="NAME=MODEL_FILE")
    ap.add_argument("--reference", required=True, help="the NAME the others are compared with")
    ap.add_argument("--cache-dir", required=True, help="folder of the training views' cache (a run's ../cache)")
    ap.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    ap.add_argument("--input-size", type=int, default=192)
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--bootstrap", type=int, default=BOOTSTRAP)
    a = ap.parse_args(argv)
    files = dict(m.split("=", 1) for m in a.models)
    if a.reference not in files:
        ap.error(f"--reference {a.reference} is not one of {', '.join(files)}")
    cfg = V2Config(out=str(a.cache_dir), data_root=a.data_root, input_size=a.input_size)
    items = read_items(Path(a.data_root), 3, V2_SPLIT)
    cache = build_cache(items, a.input_size, Path(a.cache_dir) / cfg.cache_name(), spec=cfg.spec)
    idx = np.flatnonzero(cache["ok"] & np.array([it.split == "val" for it in items]))
    y = np.array([items[i].label for i in idx])
    covid_mask = np.array([items[i].label == 1 and items[i].lesion is not None for i in idx])
    outputs, saturation = {}, {}
    for name, path in files.items():
        logits, lesion, saturation[name] = validation_outputs(Path(path), cache["images"], idx)
        outputs[name] = (logits.astype(np.float64), film_dice(lesion, cache["masks"][idx], covid_mask))
        print(f"{name}: {len(idx)} validation films classified", file=sys.stderr)
    result = study(outputs, y, a.reference, bootstrap=a.bootstrap)
    for name, sat in saturation.items():
        result[name]["first_lstm_saturation"] = sat
    print(render(result, a.reference))
    print("| model | films | gate pre-activation std | input / forget gates beyond +-4 | cell candidates beyond +-2 |")
    print("|---|---|---|---|---|")
    for name, sat in saturation.items():
        if sat:
            print(f"| {name} | {sat['films']} | {sat['pre_activation_std']:.2f} | {sat['input_forget_beyond_4']:.0%} "
                  f"| {sat['candidate_beyond_2']:.0%} |")
    if a.out:
        atomic.write_text(Path(a.out), json.dumps({"reference": a.reference, "files": files, "models": result},
                                                  indent=2))
        write_outputs(Path(a.out).with_suffix(".npz"), [f"{items[i].dataset}/{items[i].file}" for i in idx], y,
                      outputs)
    return 0



def write_outputs(path: Path, films: list[str], y: np.ndarray, outputs: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """The per-film outputs behind the figures (``tests/test_head_study.py`` recomputes them): the films,
    their labels, and per model its raw logits ``<name>:logits`` and lesion Dice ``<name>:dice``."""
    arrays = {"films": np.array(films), "labels": y.astype(np.int8)}
    for name, (logits, dice) in outputs.items():
        arrays[f"{name}:logits"] = logits.astype(np.float64)
        arrays[f"{name}:dice"] = dice.astype(np.float64)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    atomic.write_with(path, save)


if __name__ == "__main__":
    raise SystemExit(main())
