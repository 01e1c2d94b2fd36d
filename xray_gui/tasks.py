"""The bodies of the app's workers: generator functions that call the core.

They run on worker threads (see ``workers.py``); every ``yield`` is a tuple
``(kind, ...)`` handed to the GUI thread and a point where a cancel takes
effect.  Heavy imports (torch, the core's predict/explain modules) happen
here, never on the GUI thread.  Only QImage and QPainterPath (thread-safe) are built here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from .images import THUMB_SIZE, lung_outline_path, rgba_to_qimage, thumbnail
from .workers import MODEL_LOCK, locked_iter


def configure_compute_threads() -> None:
    """Leave one core to the GUI thread so the window stays responsive (ONNX Runtime's and torch's
    threads; torch is not imported for it)."""
    from training.common.cpu import compute_threads, set_compute_threads

    n = os.cpu_count() or 1
    if n > 1 and compute_threads() >= n:
        set_compute_threads(n - 1)


def load_model_task(path: str, device: str, precision: str = "fp32"):
    """Load + verify a model file, build a Classifier (torch is imported here, off the GUI thread, only when
    the model cannot start from its cached engine)."""
    yield ("status", "starting the inference engine…")
    configure_compute_threads()
    from training.common.device import cuda_available
    from training.inference.classifier import Classifier

    yield ("status", f"loading model {Path(path).name}…")
    clf = Classifier.from_file(path, device=device, precision=precision)
    from training.model.audit import model_stamp

    model_stamp(clf.loaded)  # the model file's SHA-256, once, here rather than on the GUI thread
    yield ("status", "preparing the inference engine…")
    clf.warm_up()  # the fast engine's session and the gate, here rather than on the first image opened
    yield ("loaded", clf, cuda_available())


HEADER_CODES = ("modality", "body_part", "view")


def open_image_task(path: str, check_header: bool, classifier):
    """Decode one file; then classify it when ``classifier`` is given.

    The file is decoded once, with the DICOM header gates as notes: a
    header-only refusal (modality / body part / view) still shows the pixels
    so the user sees what was refused: ``("refused", exc, image, range)``
    (``training.imaging.loading.header_refusal``), and "Classify anyway" goes
    on with the same image.  Other refusals (``ImageRefused``) propagate: the
    window shows the reason."""
    from training.imaging.loading import header_refusal, load_image

    img = load_image(path, check_header=False)
    refusal = header_refusal(img) if check_header else None
    if refusal is not None:
        yield ("refused", refusal, img, _raw_range(img))
        return
    yield ("image", img, _raw_range(img))
    if classifier is not None:
        yield from predict_task(classifier, img)


def predict_task(classifier, image, enforce_gate: bool = True):
    """Classify an already decoded image through the core's chest-radiograph
    gate (``enforce_gate=False``: "Classify anyway" after a gate refusal).
    Yields ``("prediction", pred, lung outline QPainterPath | None)``."""
    with MODEL_LOCK:
        pred = classifier.predict_image(image, enforce_gate=enforce_gate, keep_heatmap=True)  # Grad-CAM, same pass
    shape = image.pixels.shape[:2]
    if pred.rotation % 2:  # the gate turned the film upright: its mask is on the turned frame
        shape = shape[::-1]
    yield ("prediction", pred, lung_outline_path(pred.lung_mask, shape))


def lung_mask_task(key, classifier, image, mask=None):
    """The lung outline of an image whose prediction came from a batch: from
    ``mask`` when known (batch results carry the gate's mask), else from the
    gate's segmenter.  Yields ``("lungs", key, mask, outline)``."""
    shape = image.pixels.shape[:2]
    if mask is None:
        if getattr(classifier, "gate", None) is None:
            return
        from training.inference.gate_policy import mask_of, screen

        with MODEL_LOCK:
            result, _ = screen(classifier.gate, image.pixels, image.meta)
        mask = mask_of(result)
        if result.rotation % 2:  # the mask is on the frame the film was classified in
            shape = shape[::-1]
    yield ("lungs", key, mask, lung_outline_path(mask, shape))


def _raw_range(img) -> tuple[float, float] | None:
    raw = getattr(img, "raw", None)
    return (float(np.nanmin(raw)), float(np.nanmax(raw))) if raw is not None else None


def gradcam_task(key, classifier, pixels: np.ndarray, pred=None, style=("inferno", 0.0)):
    """Grad-CAM for one image (the one its prediction kept from the classification pass, else
    computed now), plus its colour layer (``style`` = (colour map,
    lower level): an RGBA image, transparent below the level, at most
    ``COLOUR_LAYER_MAX_SIDE`` px on its long side; the viewer stretches it over
    the image and blends it at the user's opacity) and the heatmap's share inside ``pred``'s lung
    mask (None without a mask).  The heatmap is at the colour layer's size (the image's, up to
    ``COLOUR_LAYER_MAX_SIDE`` on the long side).  An image the gate found inverted is explained
    as classified: inverted back."""
    from training.inference.classifier import lung_share
    from training.inference.explain import COLOUR_LAYER_MAX_SIDE, colour_layer_size, gradcam, heat_rgba, heatmap_of

    if pred is not None and pred.inverted:
        pixels = np.float32(1.0) - np.asarray(pixels, dtype=np.float32)
    if pred is not None and getattr(pred, "heat_input", None) is not None:
        # from the classification pass (no model run), placed directly at the colour layer's size: the
        # viewer stretches the layer over the image, the report's overlay resizes the map to the film
        heat = heatmap_of(classifier, pred, pixels, colour_layer_size(np.shape(pixels), COLOUR_LAYER_MAX_SIDE))
    else:
        with MODEL_LOCK:
            heat = gradcam(classifier, pixels, getattr(pred, "lung_mask", None))
    cmap, floor = style
    colour = rgba_to_qimage(heat_rgba(heat, cmap, floor, COLOUR_LAYER_MAX_SIDE))  # the viewer stretches it
    share = lung_share(pred, heat) if pred is not None else None
    yield ("heatmap", key, heat, colour, share, (cmap, float(floor)))


def batch_task(classifier, inputs: Iterable[str], check_header: bool = True):
    """Find the images under ``inputs`` (recursive) and classify them.

    Yields ``("found", files, skipped, infos)`` (``infos``: the patient / study /
    series of each DICOM file, None for other files, read from the headers only), then per file
    ``("result", index, prediction, thumbnail QImage | None)`` in order, with
    ``("progress", done, total, seconds_left)`` after each.  The core's gate
    refuses what is not a frontal chest film (refused rows, code
    ``GATE_CODE``); ``explain`` fills each row's heatmap share inside the lungs."""
    from training.imaging.dicomdir import find_inputs
    from training.imaging.loading import load_image
    from training.imaging.study_info import read_study_info

    files, skipped = find_inputs([Path(p) for p in inputs])
    infos = [read_study_info(f) for f in files]
    yield ("found", list(files), list(skipped), infos)
    total = len(files)
    if not total:
        return
    start = time.monotonic()
    preds = classifier.classify_paths(files, check_header=check_header, preview=2 * THUMB_SIZE,
                                     explain=True)
    try:
        for i, pred in enumerate(locked_iter(iter(preds))):
            thumb = None
            try:
                if pred.preview is not None:  # decoded once, by classify_paths' threads
                    thumb = thumbnail(pred.preview)
                elif pred.code in HEADER_CODES:  # refused before decoding: decode for the thumbnail only
                    thumb = thumbnail(load_image(pred.path, check_header=False).pixels)
            except Exception:
                thumb = None
            yield ("result", i, pred, thumb)
            done = i + 1
            elapsed = time.monotonic() - start
            left = elapsed / done * (total - done)
            yield ("progress", done, total, left)
    finally:
        preds.close()  # stops classify_paths' decode threads at once on cancel


def dicom_export_task(classifier, preds, folder: str):
    """Write DICOM SR (+ heatmap secondary capture) for each result into ``folder``.

    Yields ``("dicom", index, Written | None, reason)`` per result (``reason``
    says why none was written: not a DICOM source, a header that cannot be
    referenced, an error).  Grad-CAM runs under the model lock."""
    from training.common.formatting import exception_text
    from training.dicom_out.export import DicomExporter, has_dicom_source, heatmap_for_export
    from training.dicom_out.source import NEEDS_DICOM_SOURCE, DicomExportRefused

    exporter = DicomExporter.for_classifier(folder, classifier)
    for i, pred in enumerate(preds):
        if not has_dicom_source(pred):
            kind = (getattr(pred.meta, "kind", "") or "non-DICOM") if pred.meta is not None else "non-DICOM"
            yield ("dicom", i, None, NEEDS_DICOM_SOURCE.format(kind=kind.upper()))
            continue
        try:
            explained = None
            if pred.ok:
                with MODEL_LOCK:
                    explained = heatmap_for_export(classifier, pred)
            pixels, heat = explained if explained is not None else (None, None)
            yield ("dicom", i, exporter.export(pred, pixels=pixels, heatmap=heat), "")
        except DicomExportRefused as exc:
            yield ("dicom", i, None, exc.reason)
        except Exception as exc:  # one failure never stops the export
            yield ("dicom", i, None, f"the export failed: {exception_text(exc)}")
