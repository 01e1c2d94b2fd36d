"""Classify what the node received: each image in the store's inbox goes
through the same loader, header checks, chest-radiograph gate and model as a
file opened in the app (``Classifier.classify_paths``, the images waiting
together in batches of the classifier's batch size, Grad-CAM from the same
pass), then its SR (and, for a classified image, its secondary capture) is
written into the outbox
(``training.dicom_out.export.DicomExporter``), and only then is the image moved
out of the inbox.  A stop between those steps is resumed on restart: an image
whose SR exists is only moved; an SC without its SR is removed and the image
classified again."""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Callable

from training.common.formatting import exception_text
from training.dicom_out.export import DicomExporter, heatmap_for_export
from training.dicom_out.source import DicomExportRefused

from .privacy import redact
from .store import NodeStore

log = logging.getLogger("xray_node")


def _header(path: Path):
    """The header of a stored image (to redact its values from a message), or None."""
    try:
        from pydicom import dcmread

        return dcmread(path, stop_before_pixels=True, force=True)
    except Exception:
        return None


class Processor:
    def __init__(self, store: NodeStore, classifier, *, lung_attention: bool = True,
                 on_result: Callable | None = None, lock=None):
        self.store = store
        self.lock = lock if lock is not None else contextlib.nullcontext()  # the app's model lock
        self.classifier = classifier
        self.lung_attention = lung_attention
        self.on_result = on_result  # on_result(image_path_in_images, prediction, written)
        self._exporters: dict[str, DicomExporter] = {}

    def _exporter(self, image: Path) -> DicomExporter:
        study = image.parent.name
        if study not in self._exporters:
            self._exporters[study] = DicomExporter.for_classifier(self.store.results_dir(image), self.classifier)
        return self._exporters[study]

    def process_pending(self, stop: threading.Event | None = None) -> int:
        """Classify every image waiting in the inbox; returns how many were finished."""
        todo = []
        for image in self.store.pending():
            if self.store.has_results(image):  # stopped after the SR was written: just move it
                self.store.finish(image)
                log.info("image %s of study %s already has its results; moved out of the inbox", image.stem,
                         image.parent.name)
                continue
            self.store.drop_partial_results(image)
            todo.append(image)
        finished = 0
        if not todo:
            return 0
        step = max(1, min(8, int(getattr(self.classifier, "batch_size", 1) or 1)))  # the app waits at most one batch
        for start in range(0, len(todo), step):  # a stop takes effect after the batch in hand
            if stop is not None and stop.is_set():
                break
            chunk = todo[start:start + step]
            with self.lock:
                # images that arrived together run through the model as one batch; Grad-CAM for the SC and the
                # lung share come from that same pass (kept in each result), SR and SC are built from it
                preds = self.classifier.classify_paths(chunk, check_header=True, enforce_gate=True,
                                                       explain=self.lung_attention, keep_heatmaps=True)
                for image, pred in zip(chunk, preds):
                    self._finish_one(image, pred)
                    finished += 1
        return finished

    def _finish_one(self, image: Path, pred) -> None:
        try:
            explained = heatmap_for_export(self.classifier, pred, check_header=True) if pred.ok else None
            pixels, heat = explained if explained is not None else (None, None)
            written = self._exporter(image).export(pred, pixels=pixels, heatmap=heat)
        except DicomExportRefused as exc:
            said = redact(exc.reason, _header(image))
            self.store.set_aside(image, exc.reason)
            log.warning("image %s of study %s: no result can be written (%s); set aside in unprocessable/",
                        image.stem, image.parent.name, said)
            return
        except Exception as exc:
            reason = exception_text(exc)
            said = redact(reason, _header(image))
            self.store.set_aside(image, reason)  # the full text stays next to the image, in the store
            log.error("image %s of study %s: writing the results failed (%s); set aside in unprocessable/",
                      image.stem, image.parent.name, said)
            return
        done = self.store.finish(image)
        note = f" (P(COVID) {pred.p_covid:.3f})" if pred.p_covid is not None else ""
        if not pred.ok:
            note = f" ({pred.code or pred.status})"
        log.info("image %s of study %s: %s%s; SR%s in the outbox", image.stem, image.parent.name, written.category,
                 note, " + SC" if written.sc is not None else "")
        if self.on_result is not None:
            self.on_result(done, pred, written)


__all__ = ["Processor"]
