"""How responsive is the window while a batch runs?

A QTimer ticks every 10 ms on the GUI thread while the app classifies ~100
real chest X-rays (folder mode: decoding, inference, thumbnails, table
updates).  The longest gap between two ticks is the worst freeze a user would
feel (goal: <= 50 ms).  Also reported: the 99th percentile gap and the batch
throughput.

    QT_QPA_PLATFORM=offscreen python bench/bench_gui_responsiveness.py [--model M] [-n 100]

Without --model a randomly initialised ResNet50-LSTM at 224 px (the shipped
model's size) is built in a temporary folder: speed does not depend on the
weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from training.common.constants import APP_DEVICES  # noqa: E402

DATA = Path(os.environ.get("XRAY_SHARED", REPO.parent / "shared")) / "data" / "covid-cxr-1000"


def _model(tmp: Path) -> Path:
    import torch

    from training.model.modelfile import ModelInfo, save_model
    from training.model.networks import build_model

    torch.manual_seed(0)
    return save_model(build_model("resnet50_lstm"), ModelInfo(arch="resnet50_lstm", input_size=224,
                                                              name="Bench model"), tmp / "bench.safetensors")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model file (default: a random 224 px ResNet50-LSTM)")
    ap.add_argument("-n", type=int, default=100, help="number of images (default 100)")
    ap.add_argument("--interval", type=int, default=10, help="probe interval in ms (default 10)")
    ap.add_argument("--device", default="cpu", choices=APP_DEVICES)
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    os.environ["XRAY_SETTINGS"] = str(tmp / "settings.ini")
    files = sorted((DATA / "COVID").glob("*.png"))[: args.n // 2] + sorted((DATA / "Normal").glob("*.png"))
    files = files[: args.n]
    if len(files) < args.n:
        print(f"need {args.n} images under {DATA}", file=sys.stderr)
        return 2
    model = Path(args.model) if args.model else _model(tmp)

    from bench_window import window_with_model
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer

    app, win = window_with_model(model, args.device)
    if win is None:
        return 1
    loop = QEventLoop()
    result = {"batch": None}

    gaps: list[float] = []
    clock = QElapsedTimer()
    last = [0.0]

    slow: list[tuple[float, float, int]] = []  # (gap ms, at s, results shown) for gaps over 40 ms

    def tick():
        now = clock.nsecsElapsed() / 1e6
        gaps.append(now - last[0])
        if gaps[-1] > 40 and len(gaps) > 1:
            slow.append((gaps[-1], now / 1e3, win.batch.panel.model.done_count()))
        last[0] = now

    probe = QTimer()
    probe.setInterval(args.interval)
    probe.timeout.connect(tick)
    def finished(state):
        result["batch"] = state
        loop.quit()

    win.batch.finished.connect(finished)
    # warm-up: one image through the model so first-call costs are not counted as GUI freezes
    win.models.classifier.predict_arrays([__import__("numpy").zeros((64, 64), "float32")])
    clock.start()
    probe.start()
    t0 = time.perf_counter()
    win.open_batch(files)
    loop.exec()  # the real event loop, as in the app
    elapsed = time.perf_counter() - t0
    probe.stop()
    win.close()
    app.processEvents()
    gaps = gaps[1:]
    gaps.sort()
    p99 = gaps[int(0.99 * (len(gaps) - 1))] if gaps else float("nan")
    worst = gaps[-1] if gaps else float("nan")
    import torch

    print(f"images: {len(files)}  batch: {result['batch']}  time: {elapsed:.1f} s "
          f"({len(files) / elapsed:.1f} images/s)  device: {args.device}  torch threads: {torch.get_num_threads()}"
          f"  cpus: {os.cpu_count()}")
    print(f"GUI timer probe every {args.interval} ms: ticks {len(gaps)}, p99 gap {p99:.1f} ms, "
          f"longest gap {worst:.1f} ms (goal <= 50 ms)")
    print("gaps over 40 ms (when, results in the table):",
          "; ".join(f"{g:.0f} ms at {t:.2f} s, {d} shown" for g, t, d in slow) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
