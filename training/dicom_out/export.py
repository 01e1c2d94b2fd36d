"""Write DICOM results: per result a Comprehensive SR (``training.dicom_out.sr``)
and, for a classified image with a heatmap, a secondary capture
(``training.dicom_out.sc``; with the lesion contours when the result has a
lesion map), into a folder the user chose.

One :class:`DicomExporter` per export run: the SCs of one study go into one
new series, the SRs into another (new UIDs from ``training.dicom_out.uids``),
numbered in the order written.  Files are written atomically
(``training.common.atomic``) as ``<source name>_<uid tail>_SC.dcm`` / ``_SR.dcm``, so
same-named sources from different folders never overwrite each other.

A result whose source is not a DICOM (PNG/JPEG...), or whose header cannot be
referenced, is not written: :meth:`DicomExporter.export` raises
``DicomExportRefused`` with the reason, and a batch goes on."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.common import atomic
from training.common.errors import XrayError
from training.dicom_out.source import DicomExportRefused, source_header
from training.dicom_out.uids import new_uid
from training.inference.result import result_category
from training.model.audit import ModelStamp

SC_SERIES_NUMBER = 901
SR_SERIES_NUMBER = 902


@dataclass
class Written:
    source: Path
    sr: Path
    sc: Path | None
    category: str
    sr_uid: str
    sc_uid: str = ""


def _safe_stem(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:40] or "image"


def check_output_folder(folder) -> Path:
    """The folder, created if needed (``XrayError`` with a reason otherwise)."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise XrayError(f"{out} is a file; choose a folder for the DICOM results.", code="output")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise XrayError(f"Cannot create the folder {out}: {exc.strerror or exc}.", code="output") from None
    return out


class DicomExporter:
    def __init__(self, folder, stamp: ModelStamp, *, operating_points: dict | None = None,
                 default_threshold: float | None = None, positive_class: str = "COVID", alpha: float = 0.4):
        self.folder = check_output_folder(folder)
        self.stamp = stamp
        self.operating_points = dict(operating_points or {})
        self.default_threshold = default_threshold
        self.positive_class = positive_class
        self.alpha = alpha
        self._series: dict[str, dict[str, str]] = {}
        self._count: dict[str, int] = {}
        self.written: list[Written] = []

    @classmethod
    def for_classifier(cls, folder, classifier, **kwargs) -> "DicomExporter":
        from training.model.audit import model_stamp

        info = classifier.info
        return cls(folder, model_stamp(classifier.loaded), operating_points=info.operating_points,
                   default_threshold=float(info.threshold), positive_class=classifier.positive_class, **kwargs)

    def _series_uid(self, study: str, kind: str) -> tuple[str, int]:
        uids = self._series.setdefault(study, {})
        if kind not in uids:
            uids[kind] = new_uid()
        key = f"{study}/{kind}"
        self._count[key] = self._count.get(key, 0) + 1
        return uids[kind], self._count[key]

    def export(self, pred, *, pixels: np.ndarray | None = None, heatmap: np.ndarray | None = None) -> Written:
        """Write the SR (and the SC when ``pixels`` and ``heatmap`` are given for a
        classified image); ``DicomExportRefused`` when the source is not usable.

        highdicom's advice about single-component person names ("Anonymized")
        is silenced: the names are the source's, copied unchanged."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*person name.*", category=UserWarning)
            return self._export(pred, pixels, heatmap)

    def _export(self, pred, pixels, heatmap) -> Written:
        from training.dicom_out.sc import banner_lines, build_sc, render_result_image
        from training.dicom_out.sr import MANUFACTURER, build_sr, operating_point_text, sr_result

        if pred.path is None:
            raise DicomExportRefused("This result has no source file, so no DICOM result can refer to it.")
        source_path = Path(pred.path)
        kind = getattr(pred.meta, "kind", None) if pred.meta is not None else None
        header = source_header(source_path, kind=kind)
        study = str(header.StudyInstanceUID)
        category = result_category(pred, self.positive_class)
        stem = _safe_stem(source_path)
        sc_ds, sc_path = None, None
        if pred.ok and pixels is not None and heatmap is not None:
            series, number = self._series_uid(study, "SC")
            uid = new_uid()
            lesion = pred.lesion_map(np.shape(pixels)) if pred.has_lesion_map else None  # v2: contours at 0.5
            lines = banner_lines(category, pred.p_covid, pred.threshold, self.stamp, probs=pred.probs,
                                 lung_involvement=pred.lung_involvement, lesion_contours=lesion is not None)
            picture = render_result_image(pixels, heatmap, lines, alpha=self.alpha, lesion=lesion)
            sc_ds = build_sc(header, picture, series_uid=series, series_number=SC_SERIES_NUMBER, sop_uid=uid,
                             instance_number=number, stamp=self.stamp, manufacturer=MANUFACTURER,
                             lesion_contours=lesion is not None)
            sc_path = self._write(sc_ds, self.folder / f"{stem}_{uid[-10:]}_SC.dcm")
        series, number = self._series_uid(study, "SR")
        uid = new_uid()
        op = operating_point_text(pred.threshold if pred.ok else None, self.operating_points,
                                  self.default_threshold)
        result = sr_result(pred, self.stamp, category=category, operating_point=op)
        sr_ds = build_sr(result, header, series_uid=series, series_number=SR_SERIES_NUMBER, sop_uid=uid,
                         instance_number=number, overlay=sc_ds)
        sr_path = self._write(sr_ds, self.folder / f"{stem}_{uid[-10:]}_SR.dcm")
        done = Written(source=source_path, sr=sr_path, sc=sc_path, category=category, sr_uid=uid,
                       sc_uid="" if sc_ds is None else str(sc_ds.SOPInstanceUID))
        self.written.append(done)
        return done

    @staticmethod
    def _write(ds, path: Path) -> Path:
        atomic.write_with(path, lambda tmp: ds.save_as(tmp, enforce_file_format=True))
        return path


def has_dicom_source(pred) -> bool:
    """The result comes from a DICOM file (export can refer to it)."""
    kind = getattr(pred.meta, "kind", None) if pred.meta is not None else None
    if kind is not None:
        return kind == "dicom"
    if pred.path is None:
        return False
    from training.imaging.study_info import read_study_info

    return read_study_info(pred.path) is not None


def heatmap_for_export(classifier, pred, *, check_header: bool = False):
    """(pixels, heatmap) of a classified result, as the model saw it (an
    image the gate found inverted is explained inverted back); None otherwise."""
    from training.imaging.loading import load_image
    from training.inference.explain import heatmap_of

    if not pred.ok or pred.path is None:
        return None
    img = load_image(pred.path, check_header=check_header)
    pixels = pred.model_frame(img.pixels)
    # the classification pass's map when the result kept it; else Grad-CAM now (the gate's mask: no second
    # segmentation)
    return pixels, heatmap_of(classifier, pred, pixels)


__all__ = ["DicomExporter", "Written", "DicomExportRefused", "heatmap_for_export", "check_output_folder",
           "has_dicom_source"]
