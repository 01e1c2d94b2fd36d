"""Classifying many files: decoding, the gate and the model view run in a small thread pool
(PIL, pydicom's decoders, the resize and ONNX Runtime release the GIL) while the model runs on the
previous batch; every file gives one :class:`~training.inference.result.Prediction`, in input
order, a broken or refused one included.

A mixin of :class:`~training.inference.classifier.Classifier` (it uses its gate, model view,
forward pass and result building).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from training.common.errors import ImageRefused
from training.common.formatting import exception_text
from training.imaging.loading import load_image
from training.inference import gate_policy
from training.inference.result import Prediction, lung_involvement
from training.model.lung_input import Box, place_heatmap


@dataclass
class _Decoded:
    """A file after the worker thread: the model's input ``(3, S, S)`` or a failure."""

    path: Path
    status: str
    tensor: np.ndarray | None = None
    meta: Any = None
    warnings: list[str] = field(default_factory=list)
    reason: str = ""
    code: str = ""
    preview: np.ndarray | None = None
    gate: Any = None  # GateResult when the gate ran
    box: Box | None = None  # the model's input region


def _preview(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """A decimated copy whose longer side is about ``max_side`` (aspect kept)."""
    step = max(1, int(max(pixels.shape) // max_side))
    return np.ascontiguousarray(pixels[::step, ::step])


def default_decode_workers() -> int:
    n = os.cpu_count() or 1
    return max(1, min(4, n // 2))


def _is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def kept_heatmap(classifier, cam: np.ndarray) -> np.ndarray | None:
    """A Grad-CAM map of the classification pass, kept for the result: only for models whose pass gives
    ``explain.gradcam``'s map exactly (a ``cam_layer`` with its head); SmoothGrad models are explained again."""
    return np.ascontiguousarray(cam, dtype=np.float32) if classifier.head_gradient is not None else None


class BatchMixin:
    """``classify_paths`` and its decode step (see the module docstring)."""

    def _decode(self, path: Path, check_header: bool, preview: int = 0, enforce_gate: bool = True) -> _Decoded:
        try:
            img = load_image(path, check_header=check_header)
        except ImageRefused as exc:
            return _Decoded(path, "refused", reason=exc.reason, code=exc.code)
        except Exception as exc:  # a decoder bug, MemoryError, ... never stops the batch
            return _Decoded(path, "error", reason=exception_text(exc), code="error")
        pixels, gres = img.pixels, None
        try:
            if self.gate is not None:
                gres, pixels = gate_policy.screen(self.gate, pixels, img.meta)
                if gate_policy.stops(gres, enforce_gate):
                    return _Decoded(path, "refused", meta=img.meta, warnings=list(img.warnings), gate=gres,
                                    preview=_preview(pixels, preview) if preview else None)
            tensor, box = self.model_input(pixels, gate_policy.mask_of(gres))
        except Exception as exc:
            return _Decoded(path, "error", reason=exception_text(exc), code="error", meta=img.meta,
                            warnings=list(img.warnings))
        return _Decoded(path, "ok", tensor=tensor, meta=img.meta, warnings=list(img.warnings), gate=gres,
                        preview=_preview(pixels, preview) if preview else None, box=box)

    def input_of_file(self, path: str | os.PathLike) -> np.ndarray | None:
        """The model input of one file as a classification would build it (loader, gate mask, lung crop,
        ``model_input``; gate refusals included), or None when it cannot be read."""
        d = self._decode(Path(path), True, 0, enforce_gate=False)
        return d.tensor if d.status == "ok" else None

    def classify_paths(self, paths: Iterable[str | os.PathLike], cancel: Callable[[], bool] | Any = None,
                       check_header: bool = True, preview: int = 0, *, enforce_gate: bool = True,
                       explain: bool = False, keep_heatmaps: bool = False) -> Iterator[Prediction]:
        """One :class:`Prediction` per path, in input order (fewer if cancelled).

        ``preview > 0`` keeps a decimated copy of each classified image (longer
        side about ``preview`` px) in ``Prediction.preview``, so a front end can
        show thumbnails without decoding the file again.  ``explain`` computes
        Grad-CAM for every classified image from the classification pass itself
        (``predict_full(with_cam=True)``) to fill ``heat_in_lungs``; ``keep_heatmaps`` also keeps each map
        in ``Prediction.heat_input`` (the DICOM node's secondary captures: no second Grad-CAM pass).
        ``enforce_gate=False`` classifies gate-refused
        images anyway (``valid=False``).  Decoding runs ``decode_workers`` threads ahead (at most two batches in
        flight, so memory stays bounded for any number of files)."""
        it = iter(paths)
        window = 2 * self.batch_size
        pending: collections.deque[tuple[Path, cf.Future]] = collections.deque()
        pool = cf.ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="xray-decode")
        exhausted = False

        def fill() -> None:
            nonlocal exhausted
            while not exhausted and len(pending) < window:
                try:
                    raw = next(it)
                except StopIteration:
                    exhausted = True
                    return
                p = Path(raw)
                pending.append((p, pool.submit(self._decode, p, check_header, preview, enforce_gate)))

        try:
            fill()
            while pending:
                if _is_cancelled(cancel):
                    return
                chunk = [pending.popleft() for _ in range(min(self.batch_size, len(pending)))]
                fill()  # the next batch decodes while this one runs through the model
                decoded = [fut.result() for _, fut in chunk]
                yield from self._classify_decoded(decoded, explain, keep_heatmaps)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _classify_decoded(self, decoded: list[_Decoded], explain: bool, keep: bool = False) -> Iterator[Prediction]:
        """One batch of decoded files through the model: one Prediction per file, in order."""
        ok = [d for d in decoded if d.status == "ok"]
        probs: dict[int, np.ndarray] = {}
        lesions: dict[int, np.ndarray] = {}
        shares: dict[int, float | None] = {}
        failure = ""
        cams = None
        if ok:
            try:
                batch = np.stack([d.tensor for d in ok])
                if (explain and self.gate is not None) or keep:  # shares need lung masks; the CAM from this pass
                    values, maps, cams = self.predict_full(batch, with_cam=True)
                else:
                    values, maps = self.predict_full(batch)
                probs = {id(d): v for d, v in zip(ok, values)}
                if maps is not None:
                    lesions = {id(d): m for d, m in zip(ok, maps)}
            except Exception as exc:  # e.g. out of memory: report, keep going
                failure = exception_text(exc)
            if explain and cams is not None and not failure:  # kept maps alone (the node) need no shares
                shares = self._lung_shares(ok, batch, cams)
        heats = ({id(d): kept_heatmap(self, c) for d, c in zip(ok, cams)}
                 if keep and cams is not None and not failure else {})
        for d in decoded:
            if d.status == "ok" and not failure:
                pred = self._ok(d.path, probs[id(d)], d.meta, d.warnings, lesions.get(id(d)))
                pred.preview = d.preview
                pred.input_box = d.box
                if d.gate is not None:
                    gate_policy.apply_gate(pred, d.gate)
                pred.lung_involvement = lung_involvement(pred)
                if id(d) in shares:
                    pred.set_heat_share(shares[id(d)])
                pred.heat_input = heats.get(id(d))
                yield pred
            elif d.status == "refused" and d.gate is not None:
                pred = gate_policy.refused_prediction(d.path, d.gate, d.meta, d.warnings, self._threshold)
                pred.preview = d.preview
                yield pred
            elif d.status == "ok":
                yield Prediction(path=d.path, status="error", threshold=self._threshold,
                                 reason=f"the model failed on this batch: {failure}",
                                 warnings=d.warnings, meta=d.meta, code="error", preview=d.preview)
            else:
                yield Prediction(path=d.path, status=d.status, threshold=self._threshold,
                                 reason=d.reason, warnings=d.warnings, meta=d.meta, code=d.code)

    def _lung_shares(self, decoded: list[_Decoded], batch: np.ndarray,
                     maps: np.ndarray | None = None) -> dict[int, float | None]:
        """Grad-CAM share inside the lungs for each decoded image with a lung mask.  ``maps``: the
        heatmaps at the model's input (``predict_full(with_cam=True)``); None computes them."""
        from training.gate.notes import heatmap_in_lungs
        from training.inference.explain import gradcam_maps

        out: dict[int, float | None] = {}
        try:
            if maps is None:
                maps = gradcam_maps(self, batch)
        except Exception:  # an explanation failure never stops the batch
            return out
        for d, heat in zip(decoded, maps):
            if d.gate is None or d.gate.segmentation is None:
                continue
            seg = d.gate.segmentation
            placed = place_heatmap(heat, d.box or Box(), seg.mask.shape)  # the model's view -> the mask's frame
            out[id(d)] = heatmap_in_lungs(placed, seg.mask)
        return out


