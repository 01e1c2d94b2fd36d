"""A secondary capture image of a result: the radiograph with its Grad-CAM
heatmap, a colour scale and a burned-in banner (result, P(COVID), threshold,
model, "research use only"), built with highdicom's ``SCImage`` in a new
series of the source's study (docs/DICOM_EXPORT.md).

``render_result_image`` draws the picture (PIL, no Qt): the image scaled to
at most ``max_side`` pixels, the banner above it, the colour scale to its
right.  ``build_sc`` wraps it as an SC instance that refers to its source
(Source Image Sequence) and says that its annotation is burned in."""

from __future__ import annotations

import numpy as np

from .audit import ModelStamp

SC_SERIES_DESCRIPTION = "AI heatmap (research use only)"
RESEARCH_BANNER = "RESEARCH USE ONLY - NOT FOR DIAGNOSIS"
MAX_SIDE = 1024


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def banner_lines(category: str, p_covid: float | None, threshold: float | None, stamp: ModelStamp) -> list[str]:
    score = "-" if p_covid is None else f"{p_covid:.3f}"
    thr = "-" if threshold is None else f"{threshold:.3f}"
    return [f"{category}   P(COVID) {score}   threshold {thr}",
            f"Model {stamp.label}  sha256 {stamp.sha256.split(':')[-1][:12]}   {RESEARCH_BANNER}"]


def render_result_image(pixels: np.ndarray, heatmap: np.ndarray, lines: list[str], *, alpha: float = 0.4,
                        max_side: int = MAX_SIDE) -> np.ndarray:
    """``uint8 (H, W, 3)``: banner, overlay and colour scale."""
    from PIL import Image, ImageDraw

    from .explain import _colormap, overlay_rgb
    from .heat_style import HEAT_CMAP_DEFAULT, HEAT_FLOOR_DEFAULT

    rgb = Image.fromarray(overlay_rgb(pixels, heatmap, alpha))
    scale = min(1.0, max_side / max(rgb.size))
    if scale < 1.0:
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                         Image.Resampling.LANCZOS)
    w, h = rgb.size
    font_px = max(10, min(28, w // 45))
    font = _font(font_px)
    banner_h = len(lines) * (font_px + 6) + 10
    bar_w = max(40, w // 12)
    canvas = Image.new("RGB", (w + bar_w, h + banner_h), (0, 0, 0))
    canvas.paste(rgb, (0, banner_h))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((6, 5 + i * (font_px + 6)), line, fill=(255, 255, 0) if i == 0 else (255, 255, 255), font=font)
    # colour scale: top = 1 (most evidence for COVID), bottom = 0
    top, bottom = banner_h + font_px + 10, h + banner_h - font_px - 10
    if bottom - top > 10:
        ramp = np.linspace(1.0, 0.0, bottom - top, dtype=np.float32)
        colours = (_colormap(HEAT_CMAP_DEFAULT)(ramp)[:, :3] * 255).astype(np.uint8)
        # below the level the map is not drawn: dim that part of the scale and mark the level
        colours[ramp < HEAT_FLOOR_DEFAULT] //= 3
        strip = np.repeat(colours[:, None, :], bar_w // 3, axis=1)
        x0 = w + (bar_w - bar_w // 3) // 2
        canvas.paste(Image.fromarray(strip), (x0, top))
        small = _font(max(9, font_px * 3 // 4))
        draw.text((w + 4, top - font_px - 4), "high", fill=(255, 255, 255), font=small)
        draw.text((w + 4, bottom + 4), "low", fill=(255, 255, 255), font=small)
        y_level = top + int(round((1.0 - HEAT_FLOOR_DEFAULT) * (bottom - top)))
        draw.line((x0 - 3, y_level, x0 + bar_w // 3 + 2, y_level), fill=(255, 255, 255), width=1)
        draw.text((w + 2, y_level + 2), f"{HEAT_FLOOR_DEFAULT:g}", fill=(255, 255, 255), font=small)
    return np.asarray(canvas, dtype=np.uint8)


def build_sc(source, picture: np.ndarray, *, series_uid: str, series_number: int, sop_uid: str,
             instance_number: int, stamp: ModelStamp, manufacturer: str):
    """The ``highdicom.sc.SCImage`` of ``picture`` (RGB uint8) in ``source``'s study."""
    from highdicom.sc import SCImage
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian

    orientation = source.get("PatientOrientation")
    laterality = str(source.get("Laterality", "") or "").upper()
    known = orientation is not None and len(orientation) == 2 and all(str(v) for v in orientation)
    sc = SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=np.ascontiguousarray(picture), photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT",
        patient_orientation=tuple(str(v) for v in orientation) if known else ("L", "F"),
        series_instance_uid=series_uid, series_number=series_number, sop_instance_uid=sop_uid,
        instance_number=instance_number, manufacturer=manufacturer, transfer_syntax_uid=ExplicitVRLittleEndian,
        laterality=laterality if laterality in ("R", "L") else None,
        series_description=SC_SERIES_DESCRIPTION, manufacturer_model_name="Chest X-ray Assistant",
        software_versions=stamp.app_version)
    if not known:
        sc.PatientOrientation = ""  # Type 2: the source does not say; we do not guess
    body_part = str(source.get("BodyPartExamined", "") or "")
    if body_part:
        sc.BodyPartExamined = body_part
    if "Laterality" not in sc and not body_part:
        sc.Laterality = ""  # Type 2C: the body part is not recorded, so whether it is paired is unknown
    sc.BurnedInAnnotation = "YES"
    sc.DerivationDescription = (f"Grad-CAM heatmap of {stamp.label} over the source radiograph, with the "
                                f"result banner burned in; {RESEARCH_BANNER.lower()}")[:1024]
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [ref]
    return sc


__all__ = ["render_result_image", "build_sc", "banner_lines", "RESEARCH_BANNER"]
