"""``xray-classify``: classify chest X-ray files and folders from the command line.

    xray-classify scans/ more.dcm --csv results.csv --heatmaps heatmaps/

Prints one tab-separated row per input on stdout (status, label, P(COVID),
path, reason or warnings; for a three-class model with a lesion map (v2):
status, result, P(COVID), P(Normal), P(other pneumonia), lung involvement,
path, note), a progress bar and a summary on stderr.  Exit code
0 when the batch ran (also when some files were refused: their rows say why),
2 on usage errors (no/bad model file, bad option values, nothing to classify),
130 when interrupted by Ctrl-C or SIGTERM (the CSV then holds the rows done
so far).  The CSV is written row by row (``training.common.csv_out``); its path is
checked before the first image.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from training.common.device import DEVICE_CHOICES
from training.common.errors import XrayError
from training.common.formatting import exception_text

PROG = "xray-classify"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # exit 2 with a one-line reason, like argparse, plus our prefix
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Classify chest X-rays (PNG, JPEG, BMP, TIFF, DICOM) as COVID-19 or Normal (three-class "
                    "models: or other pneumonia, with a lesion map and the lung involvement). "
                    "Research use only; not a medical device.")
    p.add_argument("inputs", nargs="+", metavar="PATH", help="image files and/or folders (searched recursively)")
    p.add_argument("--model", metavar="FILE", help="model file (.safetensors); default: the shipped model")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="compute device (default: auto)")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="decision threshold on P(COVID), 0<T<1 (default: the model file's)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="images per forward pass (default 16)")
    p.add_argument("--heatmaps", metavar="DIR",
                   help="write a Grad-CAM overlay PNG per classified image into DIR (with a lesion-map model, the "
                        "lesion contours at P >= 0.5 are drawn on it as thin magenta lines, as in the app)")
    p.add_argument("--lung-masks", metavar="DIR",
                   help="write each input's lung mask (the gate's segmentation) as DIR/<input stem>_lungs.png: "
                        "0 / 255, the size of the image as loaded from the file; a second input with the same "
                        "stem gets _lungs_2.png and so on (the CSV's lung_mask column names each file)")
    p.add_argument("--alpha", type=float, default=0.4, help="heatmap opacity in the overlays (default 0.4)")
    p.add_argument("--csv", metavar="OUT",
                   help="write the results as CSV, one row per input as soon as it is done (into a hidden "
                        ".OUT.partial file next to OUT, renamed to OUT when the run ends, also after Ctrl-C; "
                        "after a hard kill the rows done are in the .partial file)")
    p.add_argument("--allow-any-header", action="store_true",
                   help="classify anyway when the DICOM header says another modality, body part or a "
                        "lateral view (these become warnings instead of refusals)")
    p.add_argument("--allow-unsuitable", action="store_true",
                   help="classify anyway when the chest-radiograph gate refuses an image (the result is "
                        "marked 'not valid' in the CSV)")
    p.add_argument("--no-lung-attention", action="store_true",
                   help="skip the Grad-CAM pass that fills the heatmap_in_lungs column (faster)")
    p.add_argument("--no-lesion-contours", action="store_true",
                   help="do not draw the lesion contours on the --heatmaps PNGs (lesion-map models)")
    p.add_argument("--dicom-out", metavar="DIR",
                   help="write DICOM results into DIR: a Comprehensive SR per DICOM input and a secondary capture "
                        "with the heatmap per classified DICOM, in new series of the source's study "
                        "(docs/DICOM_EXPORT.md); PNG/JPEG inputs get none (no DICOM context)")
    p.add_argument("--precision", choices=("fp32", "fast"), default="fp32",
                   help="the network's precision on the CPU: fp32 (default), or fast - the model file's validated "
                        "int8 mode (ONNX Runtime) where the CPU has AMX, AVX-512 VNNI, AVX-VNNI or AVX-512 BF16; "
                        "elsewhere fp32, and the 'Engine:' line says why")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def _err(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr)


def _weights_digest_of(model_path: Path) -> str:
    from training.model.modelfile import read_info

    return read_info(model_path)[1].get("weights_sha256", "")


def _heatmap_name(path: Path, model_digest: str) -> str:
    """``<stem>_<12 hex>_heatmap.png``: the hex digits are a SHA-256 of the
    model's weights digest and the file's bytes, so two different images (or
    one image under two models) never share a heatmap file, within a run or
    across runs writing into the same folder; the stem is cut to 80
    characters (long names would exceed the file system's limit)."""
    import hashlib

    h = hashlib.sha256(model_digest.encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return f"{path.stem[:80]}_{h.hexdigest()[:12]}_heatmap.png"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 never crash the output
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")

    from training.common.csv_out import CsvResults
    from training.inference.result import CSV_COLUMNS
    from training.model.audit import AUDIT_COLUMNS

    out = None
    if args.dicom_out:  # checked before any image is read
        from training.dicom_out.export import check_output_folder

        try:
            check_output_folder(args.dicom_out)
        except XrayError as exc:
            _err(f"error: {exc.reason}")
            return 2
    if args.csv:  # checked before any image is read
        extra = ((["heatmap"] if args.heatmaps else []) + (["dicom_sr"] if args.dicom_out else [])
                 + (["lung_mask"] if args.lung_masks else []))
        try:
            out = CsvResults(args.csv, list(CSV_COLUMNS) + list(AUDIT_COLUMNS) + extra)
        except XrayError as exc:
            _err(f"error: {exc.reason}")
            return 2
    started = [False]
    previous = _sigterm_as_interrupt()
    try:
        return _classify(args, out, started)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if out is not None:
            out.close() if started[0] else out.discard()


def _sigterm_as_interrupt():
    """SIGTERM stops a batch like Ctrl-C (rows done so far are kept); returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


class _UsageError(Exception):
    """A problem with the command line or its inputs: one line on stderr, exit 2."""


def _load_classifier(args):
    from training.common.resources import default_model_path
    from training.inference.classifier import Classifier
    from training.inference.result import validate_threshold

    model_path = Path(args.model) if args.model else default_model_path()
    if model_path is None:
        raise _UsageError("error: no model file given and no default model is installed; "
                          "pass --model FILE (a .safetensors model written by xray-train or the app).")
    if args.batch_size < 1:
        raise _UsageError(f"error: --batch-size must be at least 1, got {args.batch_size}.")
    if not 0.0 <= args.alpha <= 1.0:
        raise _UsageError(f"error: --alpha must be between 0 and 1, got {args.alpha}.")
    try:
        if args.threshold is not None:
            validate_threshold(args.threshold)
        clf = Classifier.from_file(model_path, device=args.device, batch_size=args.batch_size,
                                   precision=args.precision)
        if args.threshold is not None:
            clf.threshold = args.threshold
    except XrayError as exc:
        raise _UsageError(f"error: {exc.reason}") from None
    return clf, model_path


def _find_files(args):
    from training.imaging.dicomdir import find_inputs

    files, skipped = find_inputs([Path(p) for p in args.inputs])  # DICOMDIRs expanded
    if skipped:
        examples = ", ".join(f"{Path(p).name} ({why})" for p, why in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        _err(f"skipped {len(skipped)} path(s) that are not images: {examples}{more}")
    if not files:
        raise _UsageError("error: no image files found in the given paths.")
    return files, skipped


def _out_dir(folder: str | None, what: str) -> Path | None:
    out = Path(folder) if folder else None
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _UsageError(f"error: cannot create the {what} folder {out}: {exc.strerror or exc}") from None
    return out


def _heat_dir(args) -> Path | None:
    return _out_dir(args.heatmaps, "heatmap")


class _MaskWriter:
    """``--lung-masks``: one PNG per input whose lungs were segmented (0 / 255, the image's size as
    loaded), named ``<stem>_lungs.png`` (``_lungs_2.png`` ... for a stem already used in this run)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.used: set[str] = set()
        self.written = 0
        self.failures = 0

    def write(self, pred) -> str:
        """The mask's path for the CSV ('' when there is none).  Never raises."""
        import numpy as np
        from PIL import Image

        from training.common import atomic
        from training.common.csv_out import csv_cell

        size = getattr(pred.meta, "original_size", None) if pred.meta is not None else None
        if pred.path is None or size is None or pred.lung_mask is None:
            return ""
        try:
            mask = pred.lung_mask_as_loaded(tuple(size))
            stem, n = pred.path.stem[:80], 1
            name = f"{stem}_lungs.png"
            while name in self.used:
                n += 1
                name = f"{stem}_lungs_{n}.png"
            self.used.add(name)
            target = self.folder / name
            png = Image.fromarray(mask.astype(np.uint8) * np.uint8(255))
            atomic.write_with(target, lambda tmp: png.save(tmp, format="PNG"))
            self.written += 1
            return csv_cell(target)
        except Exception as exc:  # one mask that cannot be written never stops the batch
            self.failures += 1
            _err(f"lung mask failed for {pred.path}: {exception_text(exc)}")
            return ""


class _Tally:
    """What the run did, for the closing summary."""

    def __init__(self):
        self.done = 0
        self.counts = {"ok": 0, "refused": 0, "error": 0}
        self.labels: dict[str, int] = {}
        self.heat_failures = 0
        self.dicom_notes: dict[str, int] = {}
        self.interrupted = False

    def add(self, pred) -> None:
        self.done += 1
        self.counts[pred.status] = self.counts.get(pred.status, 0) + 1
        key = pred.result if pred.verdict else "not valid" if pred.ok else None
        if key:
            self.labels[key] = self.labels.get(key, 0) + 1


def _save_heatmap_png(path: Path, pixels, heat, alpha: float, lesion=None) -> None:
    """The overlay PNG, with the lesion contours (``training.dicom_out.sc``) when ``lesion`` is given."""
    from training.inference.explain import overlay_rgb, save_overlay_png

    if lesion is None:
        save_overlay_png(path, pixels, heat, alpha)
        return
    from PIL import Image

    from training.common import atomic
    from training.dicom_out.sc import draw_lesion_contours

    rgb = draw_lesion_contours(overlay_rgb(pixels, heat, alpha), lesion)
    atomic.write_with(path, lambda tmp: Image.fromarray(rgb).save(tmp, format="PNG"))


def _heatmap_cell(args, clf, pred, heat_dir: Path, model_digest: str, tally: _Tally):
    """Write the overlay PNG; returns (CSV cell, (pixels, heatmap) or None).  Never raises."""
    from training.common.csv_out import csv_cell

    if not pred.ok:
        return "", None
    try:
        from training.imaging.loading import load_image
        from training.inference.explain import gradcam

        img = load_image(pred.path, check_header=not args.allow_any_header)
        pixels = pred.model_frame(img.pixels)
        heat_png = heat_dir / _heatmap_name(pred.path, model_digest)
        explained = (pixels, gradcam(clf, pixels, pred.lung_mask))
        lesion = None if args.no_lesion_contours else pred.lesion_map(pixels.shape)
        _save_heatmap_png(heat_png, explained[0], explained[1], args.alpha, lesion)
        return csv_cell(heat_png), explained
    except Exception as exc:  # a heatmap failure never stops the batch
        tally.heat_failures += 1
        _err(f"heatmap failed for {pred.path}: {exception_text(exc)}")
        return "", None


def _classify(args, out, started: list[bool]) -> int:
    try:
        clf, model_path = _load_classifier(args)
        files, skipped = _find_files(args)
        heat_dir = _heat_dir(args)
        mask_dir = _out_dir(args.lung_masks, "lung mask")
    except _UsageError as exc:
        _err(str(exc))
        return 2
    from training.common.csv_out import csv_cell

    dicom = None
    if args.dicom_out:
        from training.dicom_out.export import DicomExporter

        dicom = DicomExporter.for_classifier(args.dicom_out, clf, alpha=args.alpha)
    classes = (f"; classes {' / '.join(clf.info.class_names)}" if clf.multiclass else "") + (
        "; lesion map" if clf.has_lesion_map else "")
    print(f"Model: {clf.loaded.display_name} ({model_path.name}) on {clf.device_type}, "
          f"threshold {clf.threshold:.3g}{classes}; chest-radiograph gate "
          f"{'on' if clf.gate is not None else 'not installed'}", file=sys.stderr)
    clf.fast_engine()  # built now (it would be on the first batch), so the line below says what runs
    print(f"Engine: {clf.engine_note or 'PyTorch'}", file=sys.stderr)
    started[0] = True
    if out is not None:  # every path found gets a row: skipped ones too, first, with the reason
        for path, why in skipped:
            out.write({"path": csv_cell(path), "status": "skipped", "reason": csv_cell(why)})
    tally = _Tally()
    masks = _MaskWriter(mask_dir) if mask_dir is not None else None
    _run(args, out, clf, files, heat_dir, dicom, tally, masks)
    summary = _summary(args, files, skipped, heat_dir, dicom, tally)
    if masks is not None:
        summary += f"; {masks.written} lung mask(s) in {mask_dir}"
    print(summary, file=sys.stderr)
    if tally.interrupted:
        _err("interrupted.")
        return 130
    return 0


def _run(args, out, clf, files, heat_dir, dicom, tally: _Tally, masks: _MaskWriter | None = None) -> None:
    """Classify every file, writing one CSV row and one stdout line each, until done or interrupted."""
    from tqdm import tqdm

    from training.model.audit import audit_row, model_stamp

    stamp = model_stamp(clf.loaded)
    model_digest = clf.loaded.path and _weights_digest_of(clf.loaded.path) or clf.loaded.display_name
    bar = tqdm(total=len(files), unit="img", file=sys.stderr, disable=args.no_progress, dynamic_ncols=True)
    v2 = clf.multiclass or clf.has_lesion_map  # the three-way verdict, P per class and lung involvement
    try:
        tqdm.write(V2_HEADER if v2 else V1_HEADER, file=sys.stdout)
        for pred in clf.classify_paths(files, check_header=not args.allow_any_header,
                                       enforce_gate=not args.allow_unsuitable,
                                       explain=not args.no_lung_attention):
            row = audit_row(pred, stamp)
            tally.add(pred)
            explained = None
            if heat_dir is not None:
                row["heatmap"], explained = _heatmap_cell(args, clf, pred, heat_dir, model_digest, tally)
            if masks is not None:
                row["lung_mask"] = masks.write(pred)
            if dicom is not None:
                row["dicom_sr"] = _write_dicom(dicom, clf, pred, explained, not args.allow_any_header,
                                               tally.dicom_notes)
            if out is not None:
                out.write(row)
            tqdm.write(_console_line(pred, row, v2), file=sys.stdout)
            bar.update(1)
    except KeyboardInterrupt:
        tally.interrupted = True
        from training.imaging.decode_guard import shutdown

        shutdown()  # a decode stuck in a worker process must not hold the exit
    except BrokenPipeError:  # e.g. piped into `head`: stop, keep the rows done, say so on stderr
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        _err("the output pipe was closed; stopped early (the CSV keeps the rows done).")
    finally:
        bar.close()


V1_HEADER = "#status\tlabel\tp_covid\tpath\tnote"
V2_HEADER = "#status\tresult\tp_covid\tp_normal\tp_pneumonia\tlung_involvement\tpath\tnote"


def _console_line(pred, row: dict[str, str], v2: bool) -> str:
    """One stdout row: v1 ``status label p_covid path note``; v2 (three classes / lesion map)
    ``status result p_covid p_normal p_pneumonia lung_involvement path note``, the result
    being the three-way verdict as the app shows it and lung involvement in percent."""
    from training.inference.result import PNEUMONIA

    note = pred.reason if not pred.ok else row["warnings"]

    def p(value) -> str:
        return "-" if value is None else f"{value:.4f}"

    if not v2:
        return f"{pred.status}\t{row['label'] or '-'}\t{p(pred.p_covid)}\t{row['path']}\t{note}"
    verdict = row["result"] or "-"  # COVID / Normal / Other pneumonia (...) / Indeterminate / not valid (...)
    involvement = "-" if pred.lung_involvement is None else f"{100.0 * pred.lung_involvement:.1f}%"
    return (f"{pred.status}\t{verdict}\t{p(pred.p_covid)}\t{p(pred.probs.get('Normal'))}\t"
            f"{p(pred.probs.get(PNEUMONIA))}\t{involvement}\t{row['path']}\t{note}")


def _summary(args, files, skipped, heat_dir, dicom, tally: _Tally) -> str:
    counts = tally.counts
    failed = counts["refused"] + counts["error"]
    by_label = ", ".join(f"{n} {lab}" for lab, n in sorted(tally.labels.items())) or "none"
    summary = (f"{tally.done} of {len(files)} file(s) processed: {counts['ok']} classified ({by_label}); "
               f"{failed} failed ({counts['refused']} refused, {counts['error']} errors)")
    if skipped:
        summary += f"; {len(skipped)} skipped (not images)"
    if heat_dir is not None:
        summary += f"; {counts['ok'] - tally.heat_failures} heatmap(s) in {heat_dir}"
    if dicom is not None:
        n_sc = sum(w.sc is not None for w in dicom.written)
        summary += f"; DICOM: {len(dicom.written)} SR and {n_sc} secondary capture(s) in {args.dicom_out}"
        if tally.dicom_notes:
            summary += " (not written: " + "; ".join(f"{n} x {why}" for why, n in tally.dicom_notes.items()) + ")"
    if args.csv:
        summary += f"; CSV: {args.csv}"
    return summary


def _write_dicom(dicom, clf, pred, explained, check_header: bool, notes: dict[str, int]) -> str:
    """SR (+ SC) for one result; returns the SR path for the CSV ('' when none)."""
    from training.common.csv_out import csv_cell
    from training.dicom_out.export import heatmap_for_export
    from training.dicom_out.source import DicomExportRefused

    kind = getattr(pred.meta, "kind", None) if pred.meta is not None else None
    if kind is not None and kind != "dicom":  # no DICOM context: one summary note, not a line per file
        key = "DICOM export needs a DICOM source (PNG/JPEG/BMP/TIFF input)"
        notes[key] = notes.get(key, 0) + 1
        return ""
    try:
        if explained is None and pred.ok:
            explained = heatmap_for_export(clf, pred, check_header=check_header)
        pixels, heat = explained if explained is not None else (None, None)
        return csv_cell(dicom.export(pred, pixels=pixels, heatmap=heat).sr)
    except DicomExportRefused as exc:
        _err(f"no DICOM result for {pred.path}: {exc.reason}")
        notes["source not usable"] = notes.get("source not usable", 0) + 1
    except Exception as exc:  # a failure on one file never stops the batch
        _err(f"DICOM export failed for {pred.path}: {exception_text(exc)}")
        notes["errors"] = notes.get("errors", 0) + 1
    return ""


if __name__ == "__main__":
    sys.exit(main())
