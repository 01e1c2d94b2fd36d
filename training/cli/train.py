"""``xray-train``: train the paper's three models (or a subset) in one command.

Examples::

    xray-train --data ../shared/data/covid-cxr-1000 --out runs/paper
    xray-train --resume runs/paper                   # after Ctrl-C or a killed process
    torchrun --nproc_per_node=2 -m training.cli.train --data DIR --out runs/ddp
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from training.common.errors import TrainingCancelled, XrayError
from training.model.networks import ARCHITECTURES
from training.train import run_folder
from training.train.config import RECIPES, TrainConfig, make_config


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="xray-train", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", metavar="DIR", help="data folder(s), each with COVID/ and Normal/ sub-folders")
    ap.add_argument("--out", metavar="RUN_DIR", help="run folder to create")
    ap.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    ap.add_argument("--report", metavar="RUN_DIR", help="only rewrite the report of a finished run")
    ap.add_argument("--recipe", default="paper", choices=sorted(RECIPES), help="named recipe (default: paper)")
    ap.add_argument("--models", nargs="+", choices=ARCHITECTURES, help="models to train (default: all three)")
    ap.add_argument("--split", dest="split_file", metavar="FILE", help="reuse a split manifest (split.csv)")
    ap.add_argument("--holdout-split", metavar="FILE",
                    help="hold out the 'test' images of this split.csv as an extra evaluation set 'paper_test'")
    ap.add_argument("--split-fractions", nargs=3, type=float, metavar=("TRAIN", "VAL", "TEST"))
    ap.add_argument("--seed", type=int)
    ap.add_argument("--input-size", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--weight-decay", type=float)
    ap.add_argument("--lr-schedule", choices=["constant", "cosine"])
    ap.add_argument("--warmup-epochs", type=int)
    ap.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--augment-level", choices=["basic", "source"],
                    help="basic geometry/brightness, or 'source': also gamma, blur/sharpen, resolution, noise, JPEG")
    ap.add_argument("--region", choices=["whole", "lungs"],
                    help="classifier input: the whole image (paper) or the lungs' box found by the lung segmenter")
    ap.add_argument("--intensity", choices=["none", "clahe"], help="intensity normalisation of the input")
    ap.add_argument("--lung-margin", type=float, help="margin around the lungs' box, as a share of its size")
    ap.add_argument("--cache-dir", metavar="DIR", help="keep decoded images here and reuse them in the next run")
    ap.add_argument("--balanced-sampling", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--early-stopping", type=int, metavar="PATIENCE")
    ap.add_argument("--init", help="backbone init: scratch | imagenet | PATH to ResNet50 weights (.pth/.safetensors)")
    ap.add_argument("--lstm-init", help="ResNet50-LSTM backbone init (default: --init); 'from_resnet50' = two-stage")
    ap.add_argument("--dropout", type=float)
    ap.add_argument("--freeze-backbone-epochs", type=int, metavar="N",
                    help="train only the head for the first N epochs (e.g. after --lstm-init)")
    ap.add_argument("--device", help="auto | cpu | cuda | mps")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    ap.add_argument("--threads", type=int)
    ap.add_argument("--threshold-rule", choices=["0.5", "sensitivity"])
    ap.add_argument("--half-weights", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--model-name")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    try:
        if a.report:
            from training.train.report import write_report

            print(write_report(Path(a.report)))
            return 0
        if a.resume:
            cfg_path = run_folder.config_file(a.resume)
            if not cfg_path.exists():
                print(f"xray-train: {a.resume} is not a run folder (no {run_folder.CONFIG}).", file=sys.stderr)
                return 2
            cfg = TrainConfig.load(cfg_path)
            cfg.out_dir = str(a.resume)
        else:
            if not a.data or not a.out:
                ap.error("--data and --out are required (or --resume RUN_DIR)")
            over = {k: getattr(a, k) for k in (
                "models", "split_file", "seed", "input_size", "batch_size", "lr", "epochs", "weight_decay",
                "lr_schedule", "augment", "balanced_sampling", "early_stopping", "init", "lstm_init", "dropout",
                "freeze_backbone_epochs", "warmup_epochs", "augment_level", "region", "intensity", "lung_margin", "cache_dir",
                "device", "precision", "threads", "threshold_rule", "half_weights", "model_name", "holdout_split")}
            if a.split_fractions:
                over["split"] = tuple(a.split_fractions)
            if over.get("init") and over["init"] not in ("scratch", "imagenet"):
                over["init"] = str(Path(over["init"]).resolve())
            for key in ("split_file", "holdout_split"):
                if over.get(key):
                    over[key] = str(Path(over[key]).resolve())
            cfg = make_config([str(Path(d).resolve()) for d in a.data], a.out, a.recipe, **over)
        return _run(cfg, quiet=a.quiet or rank != 0)
    except KeyboardInterrupt:
        from training.imaging.decode_guard import shutdown

        shutdown()  # an image decode stuck in a worker process must not hold the exit
        print("\nxray-train: interrupted. Finished epochs are kept; continue with "
              f"`xray-train --resume {a.resume or a.out}`.", file=sys.stderr)
        return 130
    except TrainingCancelled as exc:
        print(f"xray-train: {exc.reason}", file=sys.stderr)
        return 130
    except XrayError as exc:
        print(f"xray-train: {exc.reason}", file=sys.stderr)
        return 2


def _run(cfg: TrainConfig, quiet: bool) -> int:
    from tqdm import tqdm

    from training.train.trainer import train_events

    bar = None
    t0 = time.time()
    for ev in train_events(cfg):
        if quiet:
            if ev.kind in ("epoch", "model_done", "done", "data") and int(os.environ.get("RANK", "0")) == 0:
                print(ev.message, flush=True)
            continue
        if ev.kind == "batch":
            if bar is None:
                bar = tqdm(total=ev.batches, desc=f"{ev.model} {ev.epoch}/{ev.epochs}", leave=False, file=sys.stderr)
            bar.update(1)
            bar.set_postfix(loss=f"{ev.metrics['loss']:.3f}")
            continue
        if bar is not None:
            bar.close()
            bar = None
        if ev.message:
            print(ev.message, flush=True)
    if not quiet:
        print(f"wall time {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
