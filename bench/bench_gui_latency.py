"""How long does a radiologist wait after opening one large DICOM?

Builds 2048 x 2048, 12-bit, uncompressed DX chest DICOMs from real films
(external-dev, upsampled; the pixels are real anatomy, the size is a typical
detector's), starts the real main window with the shipped model (or --model),
and opens each file the way File > Open does.  For every open it records, on
the GUI thread, the time from the call to:

* image on screen   (ImageController.imageShown)
* prediction shown  (ImageController.predictionShown: verdict, score, band)
* heatmap ready     (ImageController.heatmapReady: Grad-CAM computed, coloured
                     and cached; shown at once when the heatmap is switched on)

Goals (issue 12): prediction <= 0.3 s and heatmap <= 1 s on this CPU.  The
first open carries one-time costs (engine warm-up, first Grad-CAM hooks) and
is printed apart; the goal is judged on the median and the worst of the rest.

    QT_QPA_PLATFORM=offscreen python bench/bench_gui_latency.py [--model M] [-n 6] [--json OUT]

Run it on a quiet machine: with another busy process torch's threads can run
10x slower.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from training.common.constants import APP_DEVICES  # noqa: E402

SHARED = Path(os.environ.get("XRAY_SHARED", REPO.parent / "shared")) / "data" / "external-dev"
SIZE = 2048
GOAL_PREDICTION_S = 0.3
GOAL_HEATMAP_S = 1.0


def make_dicoms(out: Path, n: int) -> list[Path]:
    """``n`` 2k x 2k 12-bit DX DICOMs from external-dev films (alternating classes)."""
    import numpy as np
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    films = []
    for cls in ("COVID", "Normal"):
        films.append(sorted(p for p in (SHARED / cls).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")))
    paths = []
    for i in range(n):
        src = films[i % 2][i // 2]
        grey = Image.open(src).convert("L").resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        pixels = (np.asarray(grey, dtype=np.uint16) * 16).astype(np.uint16)  # 12-bit range
        ds = Dataset()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
        ds.PatientID = f"BENCH-{i:03d}"
        ds.set_pixel_data(pixels, "MONOCHROME2", 12)
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        p = out / f"bench_{i:02d}_{src.stem[:20]}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


def stage_times(clf, files, repeats: int = 3) -> dict[str, float]:
    """Where the time goes: the core's steps of one open, timed one by one on
    this thread (median over ``files`` x ``repeats``), with the app's thread count."""
    import torch

    from training.imaging.loading import load_image
    from training.inference.explain import COLOUR_LAYER_MAX_SIDE, gradcam, heat_rgba

    times: dict[str, list[float]] = {}

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        times.setdefault(name, []).append(time.perf_counter() - t)
        return out

    for _ in range(repeats):
        for f in files:
            img = timed("decode (load_image)", lambda: load_image(f))
            if clf.gate is not None:
                gres, pixels = timed("gate + lung segmentation", lambda: clf.gate.check(img.pixels, 0.0))
                mask = gres.segmentation.mask if gres.segmentation is not None else None
            else:
                pixels, mask = img.pixels, None
            tensor, _box = timed("lung crop + CLAHE (model_input)", lambda: clf.model_input(pixels, mask))
            timed("model (predict_batch)", lambda: clf.predict_batch(tensor[None]))
            heat = timed("Grad-CAM (gradcam)", lambda: gradcam(clf, pixels, mask))
            timed("colour layer (heat_rgba)", lambda: heat_rgba(heat, "inferno", 0.5, COLOUR_LAYER_MAX_SIDE))
    out = {k: round(statistics.median(v), 3) for k, v in times.items()}
    out["torch_threads"] = torch.get_num_threads()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model file (default: the shipped model)")
    ap.add_argument("-n", type=int, default=6, help="number of 2k DICOMs to open (default 6)")
    ap.add_argument("--device", default="cpu", choices=APP_DEVICES)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    os.environ["XRAY_SETTINGS"] = str(tmp / "settings.ini")
    files = make_dicoms(tmp, args.n)

    from bench_window import window_with_model
    from PySide6.QtCore import QEventLoop, QTimer

    from training.common.resources import default_model_path

    model = Path(args.model) if args.model else default_model_path()
    if model is None:
        print("no shipped model found; pass --model", file=sys.stderr)
        return 2
    app, win = window_with_model(model, args.device)
    if win is None:
        return 1
    win.images.set_heatmap_visible(True)
    clf = win.models.classifier
    loop = QEventLoop()

    rows = []
    marks: dict[str, float] = {}
    t0 = [0.0]

    def mark(name):
        def _m(*_a):
            marks.setdefault(name, time.perf_counter() - t0[0])
            if name in ("heatmap", "refused", "failed"):
                loop.quit()
        return _m

    im = win.images
    im.imageShown.connect(mark("image"))
    im.predictionShown.connect(mark("prediction"))
    im.heatmapReady.connect(mark("heatmap"))
    im.refusalShown.connect(mark("refused"))
    im.heatmapFailed.connect(mark("failed"))
    guard = QTimer(singleShot=True, interval=120_000)
    guard.timeout.connect(loop.quit)
    for f in files:
        marks.clear()
        t0[0] = time.perf_counter()
        guard.start()
        win.open_image(f)
        loop.exec()
        guard.stop()
        if "heatmap" not in marks:
            print(f"{f.name}: no heatmap ({', '.join(marks) or 'nothing'} happened)", file=sys.stderr)
            return 1
        rows.append({"file": f.name, **{k: round(v, 3) for k, v in marks.items()},
                     "p_covid": round(float(im.pred.p_covid), 4) if im.pred is not None else None})
        print(f"{f.name:40s} image {marks['image']:.3f} s  prediction {marks['prediction']:.3f} s  "
              f"heatmap {marks['heatmap']:.3f} s", flush=True)
    win.close()
    app.processEvents()
    stages = stage_times(clf, files[1:] or files)
    print("\nthe core's steps one by one (median, this thread, torch threads "
          f"{stages['torch_threads']}, engine {clf.active_engine}):")
    for k, v in stages.items():
        if k != "torch_threads":
            print(f"  {k:34s} {v:.3f} s")

    import torch

    rest = rows[1:] or rows
    summary = {}
    for key, goal in (("image", None), ("prediction", GOAL_PREDICTION_S), ("heatmap", GOAL_HEATMAP_S)):
        vals = [r[key] for r in rest]
        summary[key] = {"first_open_s": rows[0][key], "median_s": round(statistics.median(vals), 3),
                        "worst_s": round(max(vals), 3), "goal_s": goal,
                        "goal_met": None if goal is None else max(vals) <= goal}
    engine = clf.active_engine + (f" ({clf.engine_note})" if clf.engine_note else "")
    print(f"\n{len(files)} DICOMs {SIZE}x{SIZE} 12-bit, model {model.name}, device {args.device}, engine {engine}, "
          f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    print("after the first open (median / worst):")
    for key, s in summary.items():
        goal = "" if s["goal_s"] is None else (f"  goal <= {s['goal_s']} s: "
                                                + ("met" if s["goal_met"] else "MISSED"))
        print(f"  {key:10s} {s['median_s']:.3f} / {s['worst_s']:.3f} s   (first open {s['first_open_s']:.3f} s){goal}")
    if args.json:
        Path(args.json).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "size": SIZE,
                                               "model": model.name, "device": args.device, "engine": engine,
                                               "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                                               "summary": summary, "stages": stages, "opens": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
