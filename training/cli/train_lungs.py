"""``xray-train-lungs``: train the lung segmenter (and calibrate the gate).

Examples::

    xray-train-lungs --data ../shared/data/cxr-lung-masks-600 --out runs/lungs --epochs 40 --threads 2
    xray-train-lungs --resume runs/lungs            # after Ctrl-C or a killed process

Several sources (each split on its own; ``--split`` files fix a source's split,
the others are split 80/10/10 by label), fine-tuning an existing model on a
sample of 480 pairs per epoch, balanced between the sources::

    xray-train-lungs --data ../shared/data/cxr-lung-masks-600 --split results/lung_segmenter/split.csv \
        --data ../shared/data/cxr-infection-3class --split results/v2/split.csv \
        --init resources/models/lung_segmenter.safetensors --samples-per-epoch 480 \
        --lr 5e-4 --epochs 6 --out runs/lungs2 --threads 2

The run folder ends with ``lung_segmenter.safetensors``; ``xray-calibrate-gate``
then stores the suitability gate's thresholds in it (see docs/GATE.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.common.errors import TrainingCancelled, XrayError
from training.train.segmenter_trainer import SegTrainConfig, run_seg_training


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="xray-train-lungs", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", metavar="DIR", action="append",
                    help="folder with manifest.csv (file, mask or lung_mask, label columns) and the images and "
                         "masks it names; repeat for several sources")
    ap.add_argument("--split", metavar="CSV", action="append", default=[],
                    help="fixed split for the source(s) it covers: file and split columns, optionally dataset "
                         "(= a source's folder name); repeatable. Sources without one: 80/10/10 by label, seeded")
    ap.add_argument("--init", metavar="FILE", default="",
                    help="start from this lung segmenter file's weights (fine-tuning) instead of from scratch")
    ap.add_argument("--samples-per-epoch", type=int, default=0,
                    help="pairs drawn per epoch, split evenly between the sources (0: every training pair once)")
    ap.add_argument("--no-style-aug", action="store_true",
                    help="leave out the source-style augmentation (equalisation/CLAHE, sharpen, resolution drop, JPEG)")
    ap.add_argument("--out", metavar="RUN_DIR", help="run folder to create")
    ap.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quiet", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.resume:
        run = Path(args.resume)
        try:
            saved = json.loads((run / "config.json").read_text())
            saved.setdefault("style_aug", False)  # a run folder from before the option: it trained without
            cfg = SegTrainConfig(**saved)
        except (OSError, ValueError, TypeError, AttributeError):
            print(f"error: {run} is not a lung segmenter run folder (no readable config.json).", file=sys.stderr)
            return 2
        if args.threads:
            cfg.threads = args.threads
    elif args.data and args.out:
        cfg = SegTrainConfig(data_dir=args.data[0], out_dir=args.out, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, seed=args.seed, size=args.size, threads=args.threads, device=args.device,
                             extra_data=list(args.data[1:]), split_files=list(args.split), init=args.init,
                             samples_per_epoch=max(0, args.samples_per_epoch), style_aug=not args.no_style_aug)
    else:
        print("error: give --data and --out, or --resume RUN_DIR", file=sys.stderr)
        return 2

    def show(ev) -> None:
        if args.quiet or ev.kind == "batch":
            return
        print(ev.message, flush=True)

    try:
        m = run_seg_training(cfg, show, resume=bool(args.resume))
    except KeyboardInterrupt:
        print("cancelled; continue with --resume", cfg.out_dir, file=sys.stderr)
        return 130
    except TrainingCancelled as exc:
        print(exc.reason, file=sys.stderr)
        return 130
    except XrayError as exc:
        print(f"error: {exc.reason}", file=sys.stderr)
        return 2
    print(f"model: {Path(cfg.out_dir) / 'lung_segmenter.safetensors'}  test Dice {m['dice_mean']:.4f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
