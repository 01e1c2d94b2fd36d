"""A secondary capture image of a result: the radiograph with its Grad-CAM
heatmap, a colour scale and a burned-in banner (result, P(COVID), threshold,
model, "research use only"), built with highdicom's ``SCImage`` in a new
series of the source's study (docs/DICOM_EXPORT.md).  For a three-class
model (v2) the banner also gives P(Normal), P(other pneumonia) and the lung
involvement, and when the result has a lesion map its contours at
``LESION_LEVEL`` (0.5) are drawn over the heatmap as thin lines, in the app's
lesion colour (``training.inference.lesion_overlay.LESION_RGB``, magenta).

``render_result_image`` draws the picture (PIL, no Qt): the image scaled to
at most ``max_side`` pixels, the banner above it, the colour scale to its
right.  ``build_sc`` wraps it as an SC instance that refers to its source
(Source Image Sequence) and says that its annotation is burned in.
``draw_lesion_contours`` draws the lesion contours on any RGB picture (also
used for ``xray-classify --heatmaps``)."""

from __future__ import annotations

import numpy as np

from training.imaging.dicom_header import header_text
from training.inference.lesion_overlay import LESION_RGB
from training.inference.result import CATEGORY_PNEUMONIA, LESION_LEVEL, PNEUMONIA
from training.model.audit import ModelStamp

SC_SERIES_DESCRIPTION = "AI heatmap (research use only)"
RESEARCH_BANNER = "RESEARCH USE ONLY - NOT FOR DIAGNOSIS"
MAX_SIDE = 1024
# lesion contours: the app's lesion colour (magenta), apart from the heatmap's colours, the grey image and the cyan
# lung outline
LESION_CONTOUR_RGB = tuple(int(v) for v in LESION_RGB)
LESION_LEGEND = f"Magenta contours: lesion map at P >= {LESION_LEVEL:g}"
PNEUMONIA_VERDICT = "Other pneumonia - not a COVID-19 pattern"


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def banner_lines(category: str, p_covid: float | None, threshold: float | None, stamp: ModelStamp, *,
                 probs: dict | None = None, lung_involvement: float | None = None,
                 lesion_contours: bool = False) -> list[str]:
    """The banner: the verdict with P(COVID) and the threshold; for a three-class model
    (``probs`` with a "Pneumonia" entry) a line with P(Normal), P(other pneumonia) and the
    lung involvement; the lesion-contour legend when contours are drawn; the model line."""
    verdict = PNEUMONIA_VERDICT if category == CATEGORY_PNEUMONIA else category
    lines = [f"{verdict}   P(COVID) {_p(p_covid)}   threshold {_p(threshold)}"]
    probs = probs or {}
    if PNEUMONIA in probs:
        involvement = "-" if lung_involvement is None else f"{100.0 * lung_involvement:.1f}%"
        lines.append(f"P(Normal) {_p(probs.get('Normal'))}   P(other pneumonia) {_p(probs.get(PNEUMONIA))}   "
                     f"Lung involvement {involvement}")
    elif lung_involvement is not None:
        lines.append(f"Lung involvement {100.0 * lung_involvement:.1f}%")
    if lesion_contours:
        lines.append(LESION_LEGEND + " (lung involvement = their area inside the lungs)")
    lines.append(f"Model {stamp.display_name}  sha256 {stamp.sha256.split(':')[-1][:12]}   {RESEARCH_BANNER}")
    return lines


def lesion_contours(lesion: np.ndarray, size: tuple[int, int], level: float = LESION_LEVEL) -> list[np.ndarray]:
    """The contours of ``lesion`` (a probability map, any size) at ``level`` as
    ``(N, 2)`` float arrays of (x, y) pixel coordinates on a picture of
    ``size`` = (width, height); contours touching the border are closed."""
    from contourpy import LineType, contour_generator  # matplotlib's contour engine

    z = np.pad(np.nan_to_num(np.asarray(lesion, dtype=np.float32)), 1)
    if not (z >= level).any():
        return []
    rows, cols = z.shape[0] - 2, z.shape[1] - 2
    sx, sy = size[0] / cols, size[1] / rows
    out = []
    for line in contour_generator(z=z, line_type=LineType.Separate).lines(level):
        if len(line) >= 2:
            # -1 (the pad), then pixel centres of the map to pixel centres of the picture; a contour along
            # the border stays on the outermost pixels (visible)
            xy = (np.asarray(line, dtype=np.float64) - 0.5) * (sx, sy) - 0.5
            out.append(np.clip(xy, 0.0, (size[0] - 1, size[1] - 1)))
    return out


def draw_lesion_contours(rgb: np.ndarray, lesion: np.ndarray | None, *, width: int | None = None) -> np.ndarray:
    """``rgb`` (uint8 (H, W, 3)) with the lesion contours at ``LESION_LEVEL`` drawn in
    ``LESION_CONTOUR_RGB`` (a thin line: 1 px, 2 px on pictures wider than 1200 px)."""
    from PIL import Image, ImageDraw

    if lesion is None:
        return rgb
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    lines = lesion_contours(lesion, image.size)
    if not lines:
        return np.asarray(image)
    draw = ImageDraw.Draw(image)
    px = width or (2 if image.width > 1200 else 1)
    for line in lines:
        draw.line([(float(x), float(y)) for x, y in line], fill=LESION_CONTOUR_RGB, width=px)
    return np.asarray(image, dtype=np.uint8)


def render_result_image(pixels: np.ndarray, heatmap: np.ndarray, lines: list[str], *, alpha: float = 0.4,
                        max_side: int = MAX_SIDE, lesion: np.ndarray | None = None) -> np.ndarray:
    """``uint8 (H, W, 3)``: banner, overlay (with the contours of ``lesion``, a lesion
    probability map on the image, when given) and colour scale."""
    from PIL import Image, ImageDraw

    from training.common.heat_style import HEAT_CMAP_DEFAULT, HEAT_FLOOR_DEFAULT
    from training.inference.explain import _colormap, overlay_rgb

    rgb = Image.fromarray(overlay_rgb(pixels, heatmap, alpha))
    scale = min(1.0, max_side / max(rgb.size))
    if scale < 1.0:
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                         Image.Resampling.LANCZOS)
    if lesion is not None:
        rgb = Image.fromarray(draw_lesion_contours(np.asarray(rgb), lesion))
    w, h = rgb.size
    bar_w = max(40, w // 12)
    font_px = max(10, min(28, w // 45))
    font = _font(font_px)
    while font_px > 8 and hasattr(font, "getlength") and max(font.getlength(s) for s in lines) > w + bar_w - 12:
        font_px -= 1  # long lines (three-class banner) fit the picture's width
        font = _font(font_px)
    banner_h = len(lines) * (font_px + 6) + 10
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
             instance_number: int, stamp: ModelStamp, manufacturer: str, lesion_contours: bool = False):
    """The ``highdicom.sc.SCImage`` of ``picture`` (RGB uint8) in ``source``'s study;
    ``lesion_contours``: the picture shows the lesion contours (said in the derivation)."""
    from highdicom.sc import SCImage
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian

    orientation = source.get("PatientOrientation")
    laterality = header_text(source, "Laterality").upper()
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
    body_part = header_text(source, "BodyPartExamined")
    if body_part:
        sc.BodyPartExamined = body_part
    if "Laterality" not in sc and not body_part:
        sc.Laterality = ""  # Type 2C: the body part is not recorded, so whether it is paired is unknown
    for key in ("StudyDescription", "PatientAge"):  # descriptive study / patient-study attributes, as the SR has
        if key not in sc and header_text(source, key):
            sc[key] = source[key]
    sc.BurnedInAnnotation = "YES"
    contours = f", lesion-map contours at P >= {LESION_LEVEL:g}" if lesion_contours else ""
    sc.DerivationDescription = (f"Grad-CAM heatmap of {stamp.display_name} over the source radiograph{contours}, with "
                                f"the result banner burned in; {RESEARCH_BANNER.lower()}")[:1024]
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [ref]
    return sc


__all__ = ["render_result_image", "build_sc", "banner_lines", "RESEARCH_BANNER", "draw_lesion_contours",
           "lesion_contours", "LESION_CONTOUR_RGB"]
