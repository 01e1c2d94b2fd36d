"""``xray-train-lungs``: train the lung segmenter (and calibrate the gate).

Examples::

    xray-train-lungs --data ../shared/data/cxr-lung-masks-600 --out runs/lungs --epochs 40 --threads 2
    xray-train-lungs --resume runs/lungs            # after Ctrl-C or a killed process

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
    ap.add_argument("--data", metavar="DIR", help="folder with manifest.csv, images/ and masks/")
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
            cfg = SegTrainConfig(**json.loads((run / "config.json").read_text()))
        except (OSError, ValueError, TypeError):
            print(f"error: {run} is not a lung segmenter run folder (no readable config.json).", file=sys.stderr)
            return 2
        if args.threads:
            cfg.threads = args.threads
    elif args.data and args.out:
        cfg = SegTrainConfig(data_dir=args.data, out_dir=args.out, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, seed=args.seed, size=args.size, threads=args.threads, device=args.device)
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
