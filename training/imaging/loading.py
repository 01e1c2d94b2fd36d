"""The one image loader of the project: PNG, JPEG, BMP, TIFF and DICOM.

Every front end (GUI, command line, training data scan) reads images through
:func:`load_image`.  It returns a :class:`LoadedImage` whose ``pixels`` follow
the input contract of :mod:`training.imaging.resize`: ``numpy.float32`` of shape
``(H, W)`` in ``[0, 1]``, 1 = white, as a radiologist sees it (DICOM window
applied, MONOCHROME1 inverted).  Anything that cannot or must not be classified
raises :class:`training.common.errors.ImageRefused` with a one-line reason and a
stable ``code``; no other exception leaves :func:`load_image`.

DICOM pipeline (see docs/LOADER.md)::

    stored values -> Modality LUT (LUT Sequence or Rescale Slope/Intercept)  = raw
    raw -> VOI LUT Sequence | Window Center/Width | robust percentiles      = [0, 1]
    MONOCHROME1 -> 1 - x

Header gates (modality, body part, view) refuse by default and turn into
warnings with ``check_header=False`` ("classify anyway").
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from training.common.errors import ImageRefused
from training.common.formatting import clause
from training.imaging.dicom_header import has_dicm, value_text

# pydicom warns (with its site-packages path) about header values that break the
# standard's length/VR rules - common in real files and harmless for reading the
# pixels.  They are not shown to the user; everything that matters for the image
# becomes a plain-language warning or refusal here.
warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")

__all__ = [
    "SUPPORTED_SUFFIXES",
    "MAX_PIXELS",
    "MAX_FILE_BYTES",
    "MIN_SIDE",
    "ImageMeta",
    "LoadedImage",
    "load_image",
    "header_refusal",
    "apply_window",
    "find_images",
    "walk_folder",
    "unique_paths",
]

SUPPORTED_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"})

MAX_PIXELS = 64_000_000  # refused before decoding (decompression-bomb guard)
# refused before reading: the largest uncompressed single frame under MAX_PIXELS is
# 64 MP x 8 bytes (double-float DICOM pixels) = 512 MB, plus its header
MAX_FILE_BYTES = 600_000_000
MIN_SIDE = 64  # either side smaller than this is refused

# ITU-R BT.601 luma, the weights Pillow's convert("L") uses
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

_U8_TO_UNIT = np.arange(256, dtype=np.float32) / np.float32(255.0)  # the paper's "divide by 255"

_PILLOW_KINDS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "BMP": "bmp", "DIB": "bmp", "TIFF": "tiff"}


# --------------------------------------------------------------------------- types


@dataclass
class ImageMeta:
    """What is known about an image besides its pixels."""

    path: str
    kind: str  # 'png' | 'jpeg' | 'bmp' | 'tiff' | 'dicom'
    modality: str | None = None
    body_part: str | None = None
    view: str | None = None
    photometric: str | None = None  # DICOM Photometric Interpretation; None for other files
    bits: int = 8
    original_size: tuple[int, int] = (0, 0)  # (rows, cols)
    window: tuple[float, float] | None = None  # (center, width) in raw units
    window_source: str = "none"  # 'VOI LUT' | 'file window' | 'auto (percentiles)' | 'none'
    transfer_syntax: str | None = None  # "JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50)"
    patient: dict[str, str] = field(default_factory=dict)  # identifiers; hidden by default
    extra: dict[str, str] = field(default_factory=dict)  # descriptions, manufacturer, ...
    colour: float = 0.0  # mean chroma (max - min of R, G, B, in [0, 1]) before conversion to grey; 0 for grey
    # the header refusals of a file loaded with the checks off, as the strict check raises them (sentence,
    # ImageRefused code), in order: a viewer decodes once and can still show the refusal (:func:`header_refusal`)
    header_refusals: tuple[tuple[str, str], ...] = ()
    # how the pixels were turned from the file's: (counter-clockwise quarter turns, mirrored left-right first),
    # by the orientation check or the user (``training.imaging.turn``); ``user_turned``: the user chose it,
    # so no automatic orientation check runs on them
    turn: tuple[int, bool] = (0, False)
    user_turned: bool = False

    @property
    def header_overridden(self) -> tuple[str, ...]:
        """The header refusals the user overrode ("Classify anyway" / --allow-any-header), as clauses:
        a result is then not valid."""
        return tuple(clause(reason) for reason, _ in self.header_refusals)


@dataclass
class LoadedImage:
    pixels: np.ndarray  # float32 (H, W) in [0, 1], 1 = white
    meta: ImageMeta
    warnings: list[str] = field(default_factory=list)
    raw: np.ndarray | None = None  # DICOM only: float32 after modality LUT, before VOI
    invert: bool = False  # True for MONOCHROME1


# --------------------------------------------------------------------------- window


def apply_window(raw: np.ndarray, center: float, width: float, invert: bool = False) -> np.ndarray:
    """Linear window: ``center - width/2`` -> 0, ``center + width/2`` -> 1, clipped.

    ``invert`` (MONOCHROME1) returns ``1 - x``.  The result is ``float32``
    ``(H, W)`` in ``[0, 1]``.  Used by the loader and by the GUI's window/level.
    """
    center = float(center)
    width = float(width)
    if not (np.isfinite(center) and np.isfinite(width)) or width <= 0:
        raise ValueError(f"window width must be a positive number, got center={center}, width={width}")
    lo = center - width / 2.0
    out = np.asarray(raw, dtype=np.float32) - np.float32(lo)
    out *= np.float32(1.0 / width)
    np.clip(out, 0.0, 1.0, out=out)
    np.nan_to_num(out, copy=False, nan=0.0)
    if invert:
        np.subtract(np.float32(1.0), out, out=out)
    return out


def _subsample(a: np.ndarray, target: int = 512 * 512) -> np.ndarray:
    step = max(1, int(np.sqrt(a.size / target)))
    return a[::step, ::step]


def _percentile_window(raw: np.ndarray, mask_value: float | None = None) -> tuple[float, float]:
    sample = _subsample(raw).astype(np.float64, copy=False).ravel()
    sample = sample[np.isfinite(sample)]
    if mask_value is not None:
        kept = sample[sample != mask_value]
        if kept.size > 0.05 * sample.size:
            sample = kept
    if sample.size == 0:
        return 0.5, 1.0
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if not hi > lo:
        lo, hi = float(sample.min()), float(sample.max())
    if not hi > lo:  # constant image
        return float(lo), 1.0
    return float((lo + hi) / 2.0), float(hi - lo)


def _window_usable(raw: np.ndarray, center: float, width: float) -> bool:
    """A header window is used unless it covers (almost) none of the data."""
    if not (np.isfinite(center) and np.isfinite(width)) or width <= 0:
        return False
    sample = _subsample(raw)
    lo, hi = center - width / 2.0, center + width / 2.0
    dmin, dmax = float(np.nanmin(sample)), float(np.nanmax(sample))
    if hi < dmin or lo > dmax:  # entirely outside the data range
        return False
    inside = np.count_nonzero((sample > lo) & (sample < hi))
    return inside >= 0.01 * sample.size


# --------------------------------------------------------------------------- helpers


def _refuse(reason: str, code: str) -> ImageRefused:
    return ImageRefused(reason, code=code)


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:  # a multi-byte char cut at the end is still text
        if exc.start >= len(head) - 3:
            return True
    printable = sum(1 for b in head if 32 <= b < 127 or b in (9, 10, 13))
    return printable >= 0.95 * len(head)


def _sniff(head: bytes) -> str | None:
    # DICOM first: some DICOM preambles are TIFF headers (dual-personality files)
    if has_dicm(head):
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    return None


def _size_text(n: int) -> str:
    """Bytes as a short decimal size: '4.3 GB', '600 MB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value >= 100 or value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def _size_checks(rows: int, cols: int) -> None:
    if rows * cols > MAX_PIXELS:
        raise _refuse(
            f"The image is {cols} x {rows} pixels ({rows * cols / 1e6:.0f} megapixels); "
            f"images over {MAX_PIXELS // 1_000_000} megapixels are refused.",
            "too_large",
        )
    if rows < MIN_SIDE or cols < MIN_SIDE:
        raise _refuse(
            f"The image is only {cols} x {rows} pixels; at least {MIN_SIDE} x {MIN_SIDE} is needed.",
            "too_small",
        )


def _to_grey(arr: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H, W) float32 by luminance (alpha dropped)."""
    if arr.ndim == 2:
        return arr.astype(np.float32, copy=False)
    if arr.shape[2] == 1:
        return arr[..., 0].astype(np.float32, copy=False)
    if arr.shape[2] == 2:  # LA
        return arr[..., 0].astype(np.float32, copy=False)
    rgb = arr[..., :3].astype(np.float32, copy=False)
    return rgb @ _LUMA


def _chroma(arr: np.ndarray) -> float:
    """Mean chroma of an RGB(A) array in [0, 1] (0 for grey images): how much
    colour a picture has, for the chest-radiograph gate."""
    if arr.ndim != 3 or arr.shape[2] < 3:
        return 0.0
    s = _subsample(arr)[..., :3].astype(np.float32)
    top = float(np.iinfo(arr.dtype).max) if np.issubdtype(arr.dtype, np.integer) else max(float(s.max()), 1.0)
    return float((s.max(axis=2) - s.min(axis=2)).mean() / top)


# --------------------------------------------------------------------------- entry point


MAX_ASPECT = 4.0  # longer side / shorter side above this: not a radiograph's shape
BLANK_SPREAD = 0.02  # 1st-99th percentile grey spread below this (of [0, 1]): a blank picture


def _content_checks(img: LoadedImage) -> LoadedImage:
    """Refuse decoded pictures no model may judge, in classification and in
    training data alike: non-finite pixel values, blank pictures, absurd shapes."""
    rows, cols = img.pixels.shape
    if max(rows, cols) > MAX_ASPECT * min(rows, cols):
        raise _refuse(f"The image is {cols} x {rows} pixels: far too narrow or wide for a radiograph "
                      "(its size information may be damaged).", "aspect")
    raw = img.raw
    if raw is not None:
        bad = ~np.isfinite(_subsample(raw))
        if bad.mean() > 0.005:
            raise _refuse("The pixel values are not valid numbers (the DICOM rescale slope or intercept "
                          "is broken).", "invalid_pixels")
    lo, hi = np.percentile(_subsample(img.pixels), [1.0, 99.0])
    if hi - lo < BLANK_SPREAD:
        raise _refuse("The image is blank: almost every pixel has the same grey level.", "blank")
    return img


def load_image(path: str | os.PathLike, *, check_header: bool = True) -> LoadedImage:
    """Load one image file; raise :class:`ImageRefused` for anything unusable.

    ``check_header=False`` turns the DICOM header gates (modality, body part,
    view) into warnings.  Every unexpected failure is reported as
    ``ImageRefused(code='corrupt')`` naming the exception type.  Decoded
    pictures that are blank, hold non-finite values or have an absurd aspect
    ratio are refused too (codes ``blank``, ``invalid_pixels``, ``aspect``).
    """
    try:
        return _content_checks(_load(Path(path), check_header))
    except ImageRefused:
        raise
    except MemoryError:
        raise _refuse("The image is too large to load with the memory available.", "too_large") from None
    except Exception as exc:  # the catch-all: never a traceback to the user
        raise _refuse(
            f"The image file is damaged or could not be read ({type(exc).__name__}).", "corrupt"
        ) from exc


def header_refusal(img: LoadedImage) -> ImageRefused | None:
    """The refusal ``load_image(check_header=True)`` raises for an image loaded with
    ``check_header=False`` (its first header gate that fired), or None: a viewer
    decodes a file once and can still show what the header check says."""
    refusals = img.meta.header_refusals
    return _refuse(*refusals[0]) if refusals else None


def _load(p: Path, check_header: bool) -> LoadedImage:
    try:
        st = p.stat()
    except FileNotFoundError:
        raise _refuse("The file cannot be found (it may have been moved or deleted).", "unreadable") from None
    except PermissionError:
        raise _refuse("The file cannot be opened (permission denied).", "unreadable") from None
    except OSError as exc:
        raise _refuse(f"The file cannot be opened ({exc.strerror or type(exc).__name__}).", "unreadable") from None
    if p.is_dir():
        raise _refuse("This is a folder, not an image file.", "unreadable")
    special = _special_file(p)
    if special:  # checked before open(): opening a named pipe blocks until someone writes to it
        raise _refuse(f"This is a {special}, not an image file.", "unreadable")
    if st.st_size == 0:
        raise _refuse("The file is empty (0 bytes).", "empty")
    if st.st_size > MAX_FILE_BYTES:  # checked before reading: parsing gigabytes of zeros takes hours
        raise _refuse(
            f"The file is {_size_text(st.st_size)} ({st.st_size:,} bytes); image files over "
            f"{_size_text(MAX_FILE_BYTES)} are refused without being read (no single radiograph is that large; "
            "the file may be damaged).",
            "too_large",
        )
    try:
        with open(p, "rb") as fh:
            head = fh.read(512)
    except PermissionError:
        raise _refuse("The file cannot be opened (permission denied).", "unreadable") from None
    except OSError as exc:
        raise _refuse(f"The file cannot be opened ({exc.strerror or type(exc).__name__}).", "unreadable") from None

    kind = _sniff(head)
    if kind == "dicom":
        return _load_dicom(p, check_header, magic=True)
    if kind is not None:
        return _load_pillow(p, magic=True)
    if _looks_like_text(head):
        raise _refuse("This file is not an image (it looks like text).", "not_image")
    # no known signature: a DICOM without preamble, or another format
    suffix = p.suffix.lower()
    if suffix in (".dcm", ".dicom", "") or suffix not in SUPPORTED_SUFFIXES:
        ds = _try_read_dicom(p)
        if ds is not None:
            return _load_dicom(p, check_header, magic=False, ds=ds)
        return _load_pillow(p, magic=False)
    loaded = _load_pillow(p, magic=False, quiet=True)
    if loaded is not None:
        return loaded
    ds = _try_read_dicom(p)
    if ds is not None:
        return _load_dicom(p, check_header, magic=False, ds=ds)
    raise _not_image()


def _not_image(fmt: str | None = None) -> ImageRefused:
    if fmt:
        return _refuse(
            f"This is a {fmt} file; only PNG, JPEG, BMP, TIFF and DICOM images are supported.", "not_image"
        )
    return _refuse(
        "This file is not an image in a supported format (PNG, JPEG, BMP, TIFF or DICOM).", "not_image"
    )


# --------------------------------------------------------------------------- Pillow


# EXIF orientation values other than 1 (as stored) and what applying them does
EXIF_ORIENTATION_WORDS = {2: "mirrored left-right", 3: "rotated 180\u00b0", 4: "mirrored top-bottom",
                          5: "mirrored and rotated", 6: "rotated 90\u00b0 clockwise", 7: "mirrored and rotated",
                          8: "rotated 90\u00b0 counter-clockwise"}


def _load_pillow(p: Path, *, magic: bool, quiet: bool = False) -> LoadedImage | None:
    im = _open_pillow(p, magic=magic, quiet=quiet)
    if im is None:
        return None
    with im:
        fmt = (im.format or "").upper()
        kind = _PILLOW_KINDS.get(fmt)
        if kind is None:
            raise _not_image(fmt or "unknown")
        warnings: list[str] = []
        arr, mode = _pillow_array(im, kind, warnings)
    pixels, bits, chroma = _pillow_pixels(arr, warnings)
    meta = ImageMeta(
        path=str(p),
        kind=kind,
        bits=bits,
        original_size=(int(pixels.shape[0]), int(pixels.shape[1])),
        window=None,
        window_source="none",
        extra={"Format": fmt, "Mode": mode},
        colour=chroma,
    )
    return LoadedImage(pixels=pixels, meta=meta, warnings=warnings, raw=None, invert=False)


def _open_pillow(p: Path, *, magic: bool, quiet: bool):
    """Pillow's image of ``p``, its header read (None: not readable and ``quiet``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(p)
    except Image.DecompressionBombError:
        raise _refuse(
            f"The image is too large to load safely (over {MAX_PIXELS // 1_000_000} megapixels).", "too_large"
        ) from None
    except UnidentifiedImageError:
        if quiet:
            return None
        if magic:
            raise _refuse("The image file is damaged or incomplete (unreadable header).", "corrupt") from None
        raise _not_image() from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if "decompressed data too large" in str(exc).lower():  # Pillow's guard against zlib bombs in text chunks
            raise _refuse("The image file holds a compressed block that would expand to an absurd size (a "
                          "decompression bomb); it is refused.", "too_large") from None
        if quiet:
            return None
        if not magic:
            raise _not_image() from None
        raise _refuse("The image file is damaged or incomplete (its header cannot be read).", "corrupt") from None


def _pillow_array(im, kind: str, warnings: list[str]) -> tuple[np.ndarray, str]:
    """Decode an opened Pillow image (size checked first, EXIF orientation applied) into
    (array, the file's mode); notes go to ``warnings``."""
    from PIL import Image, ImageOps

    cols, rows = im.size
    _size_checks(rows, cols)  # before decoding
    if getattr(im, "n_frames", 1) > 1 and kind == "tiff":
        warnings.append(f"The TIFF holds {im.n_frames} pages; only the first was used.")
    try:
        im.load()
    except Image.DecompressionBombError:
        raise _refuse("The image is too large to load safely.", "too_large") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc).lower()
        if "truncat" in msg or "broken" in msg or isinstance(exc, EOFError):
            raise _refuse("The image file is damaged or incomplete (truncated).", "corrupt") from None
        raise _refuse(f"The image file is damaged and cannot be decoded ({type(exc).__name__}).", "corrupt") from None
    try:  # phone photos of films (JPEG, TIFF, and PNG's eXIf chunk): honour the EXIF orientation
        tag = im.getexif().get(0x0112, 1)
        if tag in EXIF_ORIENTATION_WORDS:
            im = ImageOps.exif_transpose(im)
            warnings.append(f"The file's EXIF orientation tag ({tag}) was applied: the picture was "
                            f"{EXIF_ORIENTATION_WORDS[tag]}, as the camera recorded.")
    except Exception:  # a bad EXIF block never refuses an image
        pass
    mode = im.mode
    if mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    return np.asarray(im), mode


def _pillow_pixels(arr: np.ndarray, warnings: list[str]) -> tuple[np.ndarray, int, float]:
    """(grey float32 pixels in [0, 1], bits, colour measure) of a decoded Pillow array;
    notes on transparency, colour and stretched contrast go to ``warnings``."""
    bits = 8
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        alpha = arr[..., -1]
        amax = np.iinfo(alpha.dtype).max if np.issubdtype(alpha.dtype, np.integer) else 1.0
        if np.any(_subsample(alpha) < amax):
            warnings.append("The image has transparent areas; transparency was ignored.")
    chroma = _chroma(arr)  # > 0 exactly when the sampled channels differ somewhere
    if chroma > 0:
        warnings.append("Colour image converted to grey.")
    dt = arr.dtype
    if dt == np.uint8 and arr.ndim == 2:  # the common case: one table lookup, exactly x / 255
        pixels = _U8_TO_UNIT[arr]
    elif dt == np.uint8 or dt == np.bool_:
        pixels = _to_grey(arr) * np.float32(1.0 if dt == np.bool_ else 1.0 / 255.0)
    elif dt.kind == "u" and dt.itemsize == 2:  # 16-bit: full 16-bit scale, 65535 -> 1
        bits = 16
        pixels = _to_grey(arr) * np.float32(1.0 / 65535.0)
    elif np.issubdtype(dt, np.integer):  # mode 'I' (32-bit): normally 16-bit data
        bits, pixels = _wide_int_pixels(_to_grey(arr), warnings)
    else:  # float TIFF
        bits = 32
        pixels = _float_pixels(arr, warnings)
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    if dt != np.uint8:
        np.clip(pixels, 0.0, 1.0, out=pixels)
    return pixels, bits, chroma


def _wide_int_pixels(grey: np.ndarray, warnings: list[str]) -> tuple[int, np.ndarray]:
    """A 32-bit integer image: 16-bit data on the 16-bit scale, else stretched to its own range."""
    lo, hi = float(grey.min()), float(grey.max())
    if lo >= 0 and hi <= 65535:
        return 16, grey * np.float32(1.0 / 65535.0)
    warnings.append("Unusual 32-bit image: contrast stretched to its own range.")
    return 32, (grey - np.float32(lo)) / np.float32(max(hi - lo, 1.0))


def _float_pixels(arr: np.ndarray, warnings: list[str]) -> np.ndarray:
    """A floating-point image: kept when in [0, 1], else stretched to its own range."""
    grey = np.nan_to_num(_to_grey(arr), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(grey.min()), float(grey.max())
    if lo >= 0.0 and hi <= 1.0:
        return grey
    warnings.append("Floating-point image: contrast stretched to its own range.")
    return (grey - np.float32(lo)) / np.float32(max(hi - lo, 1e-12))


# --------------------------------------------------------------------------- DICOM

# transfer syntax UID -> pip package providing the decoder
_DECODER_PACKAGE = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",
}

_ALLOWED_MODALITIES = {"CR", "DX", "DR", "RG"}
_WARN_MODALITIES = {"", "OT"}
_MODALITY_NAMES = {
    "CT": "a CT image",
    "MR": "an MR image",
    "US": "an ultrasound image",
    "MG": "a mammogram",
    "NM": "a nuclear medicine image",
    "PT": "a PET image",
    "XA": "an angiography image",
    "RF": "a fluoroscopy image",
    "IO": "an intra-oral (dental) radiograph",
    "PX": "a panoramic dental radiograph",
    "DG": "a diaphanography image",
    "ES": "an endoscopy image",
    "XC": "a photograph",
    "OP": "an ophthalmic image",
    "SM": "a microscopy image",
    "SR": "a structured report",
    "PR": "a presentation state",
    "KO": "a key-object selection",
    "SEG": "a segmentation",
    "RTIMAGE": "a radiotherapy image",
    "RTDOSE": "a radiotherapy dose",
    "RTSTRUCT": "a radiotherapy structure set",
    "RTPLAN": "a radiotherapy plan",
    "ECG": "an ECG",
    "BMD": "a bone densitometry image",
}
# SOP class name words that reveal the modality when the Modality tag is absent
_SOP_MODALITY = [("CT Image", "CT"), ("MR Image", "MR"), ("Ultrasound", "US"), ("Mammography", "MG"),
                 ("Nuclear Medicine", "NM"), ("Positron Emission", "PT"), ("X-Ray Angiographic", "XA"),
                 ("Radiofluoroscopic", "RF"), ("Intra-oral", "IO")]

_CHEST_WORDS = {"CHEST", "THORAX", "LUNG", "LUNGS", "PULMONARY", "CXR", "TORAX", "TORACE", "TORAKS",
                "POITRINE", "BRUSTKORB", "THORAKS", "THORACIC_CAVITY", "CHESTABDOMEN", "CHESTABDPELVIS",
                "THORAXABDOMEN", "THORAXABD", "PORTCHEST", "CHESTPA", "CHESTAP"}
_CHEST_SUBSTRINGS = ("CHEST", "THORAX", "LUNG")
# anatomy words that mean "not a chest film" when no chest word is present
_OTHER_WORDS = {
    "TEETH", "TOOTH", "DENTAL", "DENT", "PANO", "PANORAMIC", "MANDIBLE", "MAXILLA", "JAW", "TMJ",
    "HIP", "HIPS", "KNEE", "KNEES", "SKULL", "HEAD", "BRAIN", "FACE", "FACIAL", "SINUS", "SINUSES",
    "ORBIT", "ORBITS", "NASAL", "NECK", "HAND", "HANDS", "WRIST", "FINGER", "FINGERS", "THUMB",
    "FOREARM", "ELBOW", "HUMERUS", "SHOULDER", "CLAVICLE", "SCAPULA", "ARM", "FOOT", "FEET",
    "ANKLE", "TOE", "TOES", "HEEL", "CALCANEUS", "TIBIA", "FIBULA", "FEMUR", "LEG", "PATELLA",
    "PELVIS", "SACRUM", "COCCYX", "SPINE", "CSPINE", "TSPINE", "LSPINE", "LUMBAR", "CERVICAL",
    "SACRAL", "ABDOMEN", "ABD", "KUB", "BREAST", "MAMMO", "MAMMOGRAPHY", "RIB", "RIBS", "RIBCAGE",
    "EXTREMITY", "EXTREMITIES", "JOINT",
}
_LATERAL_WORDS = {"LAT", "LATERAL", "LL", "RL", "LLAT", "RLAT", "LATERALE", "SEITLICH"}
_FRONTAL_WORDS = {"PA", "AP", "FRONTAL", "POSTEROANTERIOR", "ANTEROPOSTERIOR", "FRONT", "POSTERO", "ANTERO"}
_OBLIQUE_VIEWS = {"LAO", "RAO", "LPO", "RPO", "OBL", "OBLIQUE"}
_DECUBITUS_VIEWS = {"LLD", "RLD", "DECUBITUS"}

_PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
                 "AccessionNumber", "InstitutionName", "ReferringPhysicianName", "StudyDate",
                 "StudyTime", "StudyID", "StudyInstanceUID")
_EXTRA_KEYS = ("StudyDescription", "SeriesDescription", "ProtocolName", "Manufacturer",
               "ManufacturerModelName", "ImageType", "ConversionType", "PatientPosition",
               "Laterality", "PixelSpacing", "ImagerPixelSpacing", "PatientOrientation")


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[A-Z]+", text.upper()))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _one_line(text: str) -> str:
    """Header text on one line: control characters (newlines, tabs, NULs, ...) become spaces."""
    return " ".join(_CONTROL.sub(" ", text).split())


def _code_text(value: str, limit: int = 40) -> str:
    """A coded header value (modality, body part, view) as is when it looks
    like one (capitals, digits, spaces, underscores), else :func:`shown`."""
    return value if re.fullmatch(r"[A-Z0-9_ ]{1,16}", value) else shown(value, limit)


def shown(value: str, limit: int = 60) -> str:
    """A header value quoted for a message: one line, at most ``limit``
    characters, inside typographic quotes (so quotes, spreadsheet formulas or
    markup inside the value can never read as part of the sentence)."""
    text = _one_line(str(value)).replace("\u201c", '"').replace("\u201d", '"')
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "\u2026"
    return f"\u201c{text}\u201d"


def _get_str(ds, keyword: str) -> str | None:
    """Header value as a stripped string (first value if multi-valued); None if absent/empty."""
    try:
        if keyword not in ds:
            return None
        value = ds[keyword].value
    except Exception:
        return None
    if value is None:
        return None
    try:
        from pydicom.multival import MultiValue

        if isinstance(value, (MultiValue, list, tuple)):
            if keyword in ("ImageType", "PixelSpacing", "ImagerPixelSpacing", "PatientOrientation"):
                value = value_text(value)
            elif len(value) == 0:
                return None
            else:
                value = value[0]
    except Exception:
        pass
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    text = _one_line(str(value))
    return text or None


def _first_float(ds, keyword: str) -> float | None:
    try:
        if keyword not in ds:
            return None
        value = ds[keyword].value
        if value is None or value == "":
            return None
        if not isinstance(value, (str, bytes, int, float)) and hasattr(value, "__len__"):
            if len(value) == 0:
                return None
            value = value[0]
        out = float(value)
        return out if np.isfinite(out) else None
    except Exception:
        return None


def _plausible_dataset_start(head: bytes) -> bool:
    """Whether ``head`` can be the first element of a DICOM data set without a
    preamble: an even, non-zero group below the pixel data, read little- or
    big-endian.  Keeps a full parse away from files of zeros or noise: pydicom
    reads 20 MB of zeros as millions of empty elements in about 6 s, so 4 GB
    would take over 20 minutes."""
    if len(head) < 8:
        return False
    for order in ("<", ">"):
        group = int.from_bytes(head[0:2], "little" if order == "<" else "big")
        if group and group % 2 == 0 and group <= 0x7FE0:
            return True
    return False


def _try_read_dicom(p: Path):
    """Read a file that lacks the DICM signature; return the dataset only if it
    really looks like DICOM, else None."""
    import pydicom

    try:
        with open(p, "rb") as fh:
            if not _plausible_dataset_start(fh.read(8)):
                return None
    except OSError:
        return None
    try:
        ds = pydicom.dcmread(p, force=True)
        # force=True parses lazily-ish; touch the elements to make sure they parse
        keys = [elem.keyword for elem in ds]
    except Exception:
        return None
    markers = {"SOPClassUID", "Rows", "Columns", "PixelData", "Modality", "StudyInstanceUID",
               "SeriesInstanceUID", "PatientID", "SOPInstanceUID"}
    if len(markers.intersection(keys)) < 2:
        return None
    return ds


def _uid_text(uid) -> str:
    try:
        name = uid.name
    except Exception:
        name = str(uid)
    return f"{name} ({uid})" if name and name != str(uid) else str(uid)


@dataclass
class _DicomHeader:
    """The header facts the loader decides with (read once)."""

    modality: str | None
    body_part: str | None
    view: str | None
    photometric: str
    bits: int | None
    patient: dict
    extra: dict
    sop_name: str


def _load_dicom(p: Path, check_header: bool, *, magic: bool, ds=None) -> LoadedImage:
    """A DICOM file -> the image contract: transfer syntax, header facts and
    gates, size checks, decoding, then modality LUT -> VOI -> MONOCHROME1."""
    if ds is None:
        ds = _read_dataset(p)
    warnings: list[str] = []
    overridden: list[tuple[str, str]] = []
    tsuid, ts_text = _transfer_syntax(ds)
    hdr = _header_facts(ds, ts_text)
    _check_has_image(p, ds, hdr.sop_name)
    _header_gates(ds, hdr, check_header, warnings, overridden)
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except Exception:
        raise _refuse("The DICOM header lacks the image size (Rows/Columns).", "corrupt") from None
    _size_checks(rows, cols)  # before decoding
    _check_decoder(tsuid)
    arr = np.asarray(_pixel_array(p, ds, tsuid, rows, cols))
    bits = hdr.bits if hdr.bits is not None else int(arr.dtype.itemsize * 8)
    pixels, raw, window, source, chroma, invert = _dicom_display(arr, ds, hdr.photometric, bits, warnings)
    meta = ImageMeta(
        path=str(p), kind="dicom", modality=hdr.modality, body_part=hdr.body_part, view=hdr.view,
        photometric=hdr.photometric, bits=int(bits), original_size=(int(pixels.shape[0]), int(pixels.shape[1])),
        window=None if window is None else (float(window[0]), float(window[1])), window_source=source,
        transfer_syntax=ts_text, patient=hdr.patient, extra=hdr.extra, colour=chroma,
        header_refusals=tuple(overridden),
    )
    return LoadedImage(pixels=pixels, meta=meta, warnings=warnings, raw=np.ascontiguousarray(raw), invert=invert)


def _read_dataset(p: Path):
    import pydicom

    try:
        return pydicom.dcmread(p, force=True)
    except Exception as exc:
        raise _refuse(f"The DICOM file is damaged or incomplete ({type(exc).__name__}).", "corrupt") from None


def _transfer_syntax(ds):
    """(UID, text) of the transfer syntax; files without File Meta: what pydicom detected."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta_ds = getattr(ds, "file_meta", None)
    tsuid = meta_ds.get("TransferSyntaxUID") if meta_ds is not None else None
    assumed = False
    if not tsuid:
        assumed = True
        enc = getattr(ds, "original_encoding", (True, True))
        implicit, little = (enc if enc and enc[0] is not None else (True, True))
        tsuid = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        if meta_ds is None:
            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = tsuid
    tsuid = UID(str(tsuid))
    ts_text = _uid_text(tsuid) + (" - assumed (no file meta information)" if assumed else "")
    if not tsuid.is_transfer_syntax:
        raise _refuse(f"This DICOM names a transfer syntax this program does not know ({shown(str(tsuid), 64)}), "
                      "so its image data cannot be decoded.", "decoder")
    return tsuid, ts_text


def _header_facts(ds, ts_text: str) -> _DicomHeader:
    from pydicom.uid import UID

    def upper(key):
        v = _get_str(ds, key)
        return v.upper() if v else None

    bits = None
    for key in ("BitsStored", "BitsAllocated"):
        try:
            if key in ds and ds[key].value:
                bits = int(ds[key].value)
                break
        except Exception:
            pass
    from training.imaging.dicom_charset import (
        decoded_text,  # names without a valid declared charset: documented fallback
    )

    patient = {k: v for k in _PATIENT_KEYS if (v := (decoded_text(ds, k) or _get_str(ds, k)))}
    extra = {k: v for k in _EXTRA_KEYS if (v := _get_str(ds, k))}
    sop = ds.get("SOPClassUID")
    sop_name = ""
    if sop:
        try:
            sop_name = UID(str(sop)).name
        except Exception:
            sop_name = str(sop)
        extra["SOPClassUID"] = sop_name or str(sop)
    extra["TransferSyntax"] = ts_text
    return _DicomHeader(modality=upper("Modality"), body_part=upper("BodyPartExamined"), view=upper("ViewPosition"),
                        photometric=(_get_str(ds, "PhotometricInterpretation") or "MONOCHROME2").upper(),
                        bits=bits, patient=patient, extra=extra, sop_name=sop_name)


def _check_has_image(p: Path, ds, sop_name: str) -> None:
    """Refuse a DICOM without image data, with empty image data, or with several frames."""
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise _no_pixels(p, ds, sop_name)
    try:
        empty = "PixelData" in ds and len(ds.PixelData or b"") == 0
    except Exception:
        empty = False
    if empty:
        raise _refuse("This DICOM file's image data is empty (0 bytes); it is incomplete or damaged.", "corrupt")
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except Exception:
        frames = 1
    if frames > 1:
        raise _refuse(f"This DICOM holds {frames} frames (a cine/multi-frame series); "
                      "only single chest radiographs can be classified.", "multiframe")


def _header_gates(ds, hdr: _DicomHeader, check_header: bool, warnings: list[str],
                  overridden: list[tuple[str, str]] | None = None) -> None:
    """Modality, body part and view: refuse (or, overridden, warn about and
    record ``(reason, code)`` in ``overridden``) what is not a frontal chest film."""

    def gate(reason: str, code: str) -> None:
        if check_header:
            raise _refuse(reason, code)
        warnings.append(f"{clause(reason)} (header check overridden).")
        if overridden is not None:
            overridden.append((reason, code))

    _modality_gate(hdr, gate, warnings)
    descriptions = " / ".join(
        dict.fromkeys(v for k in ("StudyDescription", "SeriesDescription", "ProtocolName") if (v := _get_str(ds, k)))
    )
    desc_tokens = _tokens(descriptions)
    _body_part_gate(hdr.body_part, descriptions, desc_tokens, gate, warnings)
    try:
        vcs = ds.get("ViewCodeSequence")
        view_code = _get_str(vcs[0], "CodeMeaning") if vcs else None
    except Exception:
        view_code = None
    _view_gate(hdr.view, view_code, desc_tokens, gate, warnings)


def _modality_gate(hdr: _DicomHeader, gate, warnings: list[str]) -> None:
    mod = hdr.modality
    if not mod and hdr.sop_name:
        for word, m in _SOP_MODALITY:
            if word.lower() in hdr.sop_name.lower():
                mod = m
                break
    mod = mod or ""
    if mod in _ALLOWED_MODALITIES:
        return
    if mod in _WARN_MODALITIES:
        if mod == "OT":
            warnings.append("Modality OT (other): not confirmed as a radiograph by the DICOM header.")
        else:
            warnings.append("Modality not recorded in the DICOM header (secondary capture?).")
    elif mod in _MODALITY_NAMES:
        gate(f"This DICOM is {_MODALITY_NAMES[mod]}, not a chest radiograph (modality {mod}).", "modality")
    else:
        gate(f"This DICOM records modality {_code_text(mod, 16)}, which is not a chest radiograph modality "
             "(CR, DX or DR).", "modality")


def _body_part_gate(body_part, descriptions: str, desc_tokens, gate, warnings: list[str]) -> None:
    if body_part:
        bp_tokens = _tokens(body_part)
        chest = bool(bp_tokens & _CHEST_WORDS) or (
            any(s in body_part for s in _CHEST_SUBSTRINGS) and "RIB" not in body_part
        )
        if not chest:
            gate(f"This DICOM records body part {_code_text(body_part)}, not a chest radiograph.", "body_part")
        return
    chest_words = desc_tokens & _CHEST_WORDS
    other_words = desc_tokens & _OTHER_WORDS
    if other_words and not chest_words:
        word = sorted(other_words)[0]
        gate(f"The DICOM description mentions {word}, not a chest radiograph: {shown(descriptions, 80)}.",
             "body_part")
    elif not chest_words:
        warnings.append("Body part not recorded in the DICOM header.")


def _view_gate(view, view_code, desc_tokens, gate, warnings: list[str]) -> None:
    lateral_msg = "This is a lateral view; the model was trained on frontal (PA/AP) chest radiographs."
    view_tokens = _tokens(view or "")
    code_tokens = _tokens(view_code or "")
    if view_tokens & _LATERAL_WORDS or (not view and code_tokens & _LATERAL_WORDS and not code_tokens & _FRONTAL_WORDS):
        gate(lateral_msg, "view")
    elif view in ("AP",) or (not view and ("AP" in desc_tokens or "ANTEROPOSTERIOR" in code_tokens or "ANTERO" in code_tokens)):
        warnings.append("AP view (often a portable film): image quality and heart size differ from PA.")
    elif not view and desc_tokens & _LATERAL_WORDS and not desc_tokens & _FRONTAL_WORDS:
        gate(lateral_msg, "view")
    if view_tokens & _OBLIQUE_VIEWS:
        warnings.append(f"Oblique view ({_code_text(view, 16)}); the model was trained on frontal films.")
    elif view_tokens & _DECUBITUS_VIEWS:
        warnings.append(f"Decubitus view ({_code_text(view, 16)}); the model was trained on upright frontal films.")


def _check_decoder(tsuid) -> None:
    """A compressed transfer syntax needs an installed decoder: a readable refusal otherwise."""
    if not (tsuid.is_compressed or tsuid.is_encapsulated):
        return
    from pydicom.pixels import get_decoder

    try:
        available = get_decoder(tsuid).is_available
    except NotImplementedError:
        raise _refuse(
            f"Cannot decompress this DICOM: {_uid_text(tsuid)} is not supported by this program.", "decoder"
        ) from None
    if not available:
        raise _decoder_error(tsuid)


def _dicom_display(arr: np.ndarray, ds, photometric: str, bits: int, warnings: list[str]):
    """Stored values -> (pixels in [0, 1], raw, window, window source, chroma, invert):
    colour and palette images to grey; otherwise modality LUT, then VOI, then MONOCHROME1."""
    colour = arr.ndim == 3
    chroma = 0.0
    invert = photometric == "MONOCHROME1"
    window = None
    source = "none"
    raw = None
    if photometric == "PALETTE COLOR" and not colour:
        from pydicom.pixels import apply_color_lut

        try:
            rgb = np.asarray(apply_color_lut(arr, ds))
        except Exception:
            raise _refuse("The colour palette of this PALETTE COLOR DICOM is missing or damaged, so the image "
                          "cannot be shown.", "corrupt") from None
        top = 65535.0 if rgb.dtype == np.uint16 or rgb.max() > 255 else 255.0
        raw, chroma = _to_grey(rgb), _chroma(rgb)
        window = (top / 2.0, top)
        warnings.append("Palette-colour DICOM converted to grey.")
        invert = False
    elif colour:
        if arr.shape[2] == 1:
            arr = arr[..., 0]
            colour = False
        else:
            top = float(2 ** min(bits, 16) - 1) if np.issubdtype(arr.dtype, np.integer) else float(arr.max() or 1.0)
            raw, chroma = _to_grey(arr), _chroma(arr)
            window = (top / 2.0, top)
            warnings.append(f"Colour DICOM ({photometric}) converted to grey.")
            invert = False
    if not colour and photometric != "PALETTE COLOR":
        from pydicom.pixels import apply_modality_lut

        try:
            modality_out = apply_modality_lut(arr, ds)
        except Exception:
            warnings.append("The DICOM modality LUT could not be applied; stored values used.")
            modality_out = arr
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, refused by _content_checks
            raw = np.asarray(modality_out, dtype=np.float32)
        if raw.ndim != 2:
            raise _refuse(f"Unexpected DICOM image shape {raw.shape}.", "corrupt")
        pixels, window, source = _voi(ds, raw, modality_out, bits, warnings)
        if invert:
            np.subtract(np.float32(1.0), pixels, out=pixels)
    else:
        pixels = apply_window(raw, window[0], window[1], False)
    return np.ascontiguousarray(pixels, dtype=np.float32), raw, window, source, chroma, invert


GUARD_COMPRESSED = True  # decode compressed pixel data in a worker process with a time limit


def _pixel_array(p: Path, ds, tsuid, rows: int, cols: int):
    """Decode the pixel data.  Compressed data is first checked (JPEG 2000
    main header) and then decoded by :mod:`training.imaging.decode_guard` in a worker
    process, so a decoder that hangs or crashes costs a refusal, not the program."""
    from training.imaging import decode_guard
    from training.imaging.j2k_header import J2K_TRANSFER_SYNTAXES, codestream_problem

    compressed = tsuid.is_compressed or tsuid.is_encapsulated
    if compressed and str(tsuid) in J2K_TRANSFER_SYNTAXES:
        problem = _j2k_problem(ds, rows, cols, codestream_problem)
        if problem:
            raise _refuse(f"The compressed image data in this DICOM is damaged: {problem}; "
                          "it was not decoded.", "corrupt")
    try:
        if compressed and GUARD_COMPRESSED:
            try:
                return decode_guard.run(decode_guard.dicom_pixel_array, str(p),
                                        timeout=decode_guard.DECODE_TIMEOUT_S)
            except decode_guard.DecodeFailed as exc:
                raise _DecodeError(exc.type_name, exc.message) from None
            except decode_guard.GuardUnavailable:
                pass  # e.g. Windows: decoded here, protected by the header check above only
        return ds.pixel_array
    except decode_guard.DecodeTimeout:
        raise _refuse(
            f"Decoding the compressed image data in this DICOM ({tsuid.name}) did not finish within "
            f"{decode_guard.DECODE_TIMEOUT_S:.0f} seconds and was stopped; the file is probably damaged.",
            "timeout",
        ) from None
    except decode_guard.DecodeCrashed:
        raise _refuse(
            f"The decoder for the compressed image data in this DICOM ({tsuid.name}) crashed; "
            "the file is probably damaged.",
            "corrupt",
        ) from None
    except decode_guard.DecodeAbandoned:
        raise _refuse("Stopped before this image was decoded (the program is closing).", "cancelled") from None
    except Exception as exc:
        type_name = exc.type_name if isinstance(exc, _DecodeError) else type(exc).__name__
        msg = str(exc).lower()
        if type_name == "MemoryError":
            raise _refuse("The image is too large to decode with the memory available.", "too_large") from None
        if "missing" in msg and ("plugin" in msg or "dependenc" in msg) or "no pixel data decoders" in msg:
            raise _decoder_error(tsuid) from None
        if tsuid.is_compressed:
            raise _refuse(
                f"The compressed image data in this DICOM is damaged and cannot be decoded ({tsuid.name}).",
                "corrupt",
            ) from None
        raise _refuse(
            _plain_pixel_error(str(exc)) or f"The image data in this DICOM is damaged or incomplete ({type_name}).", "corrupt"
        ) from None


# pydicom's messages about unreadable pixel data -> plain words: (pattern, sentence from the match)
_PIXEL_ERRORS = (
    (r"pixel data is less than expected \((\d+) vs (\d+) bytes\)",
     lambda m: (f"The image data in this DICOM is incomplete: the file holds {int(m.group(1)):,} of the "
                f"{int(m.group(2)):,} bytes its header announces (the file was cut short, or its image size is "
                "recorded wrongly).")),
    (r"invalid literal for int\(\) with base 10: '([^']*)'",
     lambda m: f"The DICOM header holds {shown(m.group(1), 20)} where a number is needed, so the image cannot be read."),
    (r"\) '([^']+)' value of '([^']*)' is invalid",
     lambda m: (f"The DICOM header is damaged: its {shown(m.group(1), 40)} value {shown(m.group(2), 20)} is "
                "impossible, so the image cannot be read.")),
    (r"Missing required element: \([0-9A-Fa-f,]+\) '([^']+)'",
     lambda m: f"The DICOM header lacks a required field ({shown(m.group(1), 40)}), so the image cannot be read."),
    (r"Unknown \([0-9A-Fa-f,]+\) '([^']+)' value '([^']*)'",
     lambda m: (f"The DICOM header gives an unknown {shown(m.group(1), 40)} ({shown(m.group(2), 20)}), so the "
                "image cannot be read.")),
)


def _plain_pixel_error(message: str) -> str:
    """pydicom's message about unreadable pixel data, in plain words ('' when not recognised)."""
    for pattern, sentence in _PIXEL_ERRORS:
        m = re.search(pattern, message)
        if m:
            return sentence(m)
    return ""


class _DecodeError(Exception):
    """An exception raised inside the decode worker, re-raised here by type name."""

    def __init__(self, type_name: str, message: str):
        super().__init__(message)
        self.type_name = type_name


def _j2k_problem(ds, rows: int, cols: int, check) -> str:
    """The JPEG 2000 header problem of the (first) frame, or ''."""
    from pydicom.encaps import generate_frames

    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    except StopIteration:
        return "the encapsulated pixel data holds no image fragment"
    except Exception:
        return "the encapsulated pixel data is malformed"
    return check(bytes(frame), rows, cols)


def _no_pixels(p: Path, ds, sop_name: str) -> ImageRefused:
    """The refusal for a DICOM without pixel data: a damaged or cut-short file
    (fault-corpus cases d17, d87, d88) is told apart from a complete file that
    simply holds no image (a structured report, a presentation state)."""
    try:
        size = p.stat().st_size
    except OSError:
        size = 0
    meta = getattr(ds, "file_meta", None)
    has_meta = meta is not None and len(meta) > 1  # the loader itself may have added a Transfer Syntax
    if len(ds) == 0 and not has_meta:
        return _refuse(f"This DICOM file is damaged: it holds nothing after its DICOM signature ({size} bytes in "
                       "all; no header, no image).", "corrupt")
    last, length, tell = None, 0, 0
    try:  # an element that claims more bytes than the file holds: pydicom stops reading there
        import pydicom

        fresh = pydicom.dcmread(p, force=True)  # read again: the elements above are converted, their lengths gone
        if len(fresh):
            last = fresh.get_item(max(fresh.keys()))
            length, tell = int(getattr(last, "length", 0) or 0), int(getattr(last, "value_tell", 0) or 0)
    except Exception:
        last = None
    if last is not None and length != 0xFFFFFFFF and tell + length > size > 0:
        try:
            from pydicom.datadict import dictionary_description

            field = dictionary_description(last.tag)
        except Exception:
            field = "a header field"
        return _refuse(f"This DICOM file is damaged: its header says the field {shown(field, 40)} is "
                       f"{_size_text(length)} long, more than the whole file ({_size_text(size)}), so the image "
                       "after it cannot be found.", "corrupt")
    if len(ds) == 0:
        return _refuse(f"This DICOM file is cut short: it ends after {size} bytes, inside its header, before the "
                       "patient and image information.", "corrupt")
    if "image storage" in sop_name.lower():
        return _refuse(f"This DICOM file is marked as an image ({sop_name}) but holds no pixel data; it is "
                       "incomplete or damaged.", "no_pixels")
    return _refuse("This DICOM file holds no image (no pixel data) - e.g. a structured report.", "no_pixels")


def _decoder_error(tsuid) -> ImageRefused:
    package = _DECODER_PACKAGE.get(str(tsuid))
    if package:
        return _refuse(
            f"Cannot decompress this DICOM: {_uid_text(tsuid)} needs the package {package}.", "decoder"
        )
    return _refuse(f"Cannot decompress this DICOM: no decoder for {_uid_text(tsuid)}.", "decoder")


def _voi(ds, raw: np.ndarray, modality_out: np.ndarray, bits: int, warnings: list[str]):
    """raw (after modality LUT) -> (pixels [0, 1] not yet inverted, window, source)."""
    # 1. VOI LUT Sequence
    try:
        has_lut = bool(ds.get("VOILUTSequence"))
    except Exception:
        has_lut = False
    if has_lut:
        try:
            from pydicom.pixels import apply_voi

            item = ds.VOILUTSequence[0]
            n, first = int(item.LUTDescriptor[0]) or 65536, int(item.LUTDescriptor[1])
            ints = np.rint(np.asarray(modality_out, dtype=np.float64)).astype(np.int64)
            out = np.asarray(apply_voi(ints, ds, 0), dtype=np.float32)
            probe = np.asarray(apply_voi(np.arange(first, first + n, dtype=np.int64), ds, 0), dtype=np.float32)
            lo, hi = float(probe.min()), float(probe.max())
            if hi > lo:
                pixels = (out - np.float32(lo)) * np.float32(1.0 / (hi - lo))
                np.clip(pixels, 0.0, 1.0, out=pixels)
                spread = np.ptp(_subsample(pixels))
                if spread > 0 or np.ptp(_subsample(raw)) == 0:
                    # the LUT's input span as the nearest linear window (start point for manual W/L)
                    return pixels.astype(np.float32, copy=False), (first + n / 2.0, float(n)), "VOI LUT"
                warnings.append("The DICOM VOI LUT does not cover the image data; contrast set automatically.")
            else:
                warnings.append("The DICOM VOI LUT is flat; contrast set automatically.")
        except Exception:
            warnings.append("The DICOM VOI LUT could not be applied; contrast set automatically.")

    # 2. Window Center / Width (first value)
    center, width = _first_float(ds, "WindowCenter"), _first_float(ds, "WindowWidth")
    if center is not None and width is not None:
        if _window_usable(raw, center, width):
            return apply_window(raw, center, width, False), (center, width), "file window"
        warnings.append(
            f"The DICOM display window (center {center:g}, width {width:g}) does not fit the image data; "
            "contrast set automatically."
        )

    # 3. No usable window.  8-bit data with an identity modality LUT is already a
    #    display image: map 0..255 like a PNG (the paper's /255) unless it uses
    #    only a small part of that range.
    pad = _first_float(ds, "PixelPaddingValue")
    c, w = _percentile_window(raw, pad)
    identity = "ModalityLUTSequence" not in ds and (_first_float(ds, "RescaleSlope") or 1.0) == 1.0 and (
        _first_float(ds, "RescaleIntercept") or 0.0
    ) == 0.0
    if bits <= 8 and identity and w >= 64 and float(raw.min()) >= 0 and float(raw.max()) <= 255:
        return apply_window(raw, 127.5, 255.0, False), (127.5, 255.0), "none"
    return apply_window(raw, c, w, False), (c, w), "auto (percentiles)"


# --------------------------------------------------------------------------- find_images


def _special_file(path: Path) -> str:
    """'named pipe', 'device', 'socket' for such entries (without opening
    them); '' for regular files, folders and paths that cannot be checked."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ""
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return ""


def find_images(paths) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders into the image files to classify.

    * Folders are walked recursively in sorted order; hidden files and folders
      (name starting with ".") are ignored.  A folder entry is kept when its
      suffix is in :data:`SUPPORTED_SUFFIXES`, when it has no suffix (DICOM
      files often have none), or when it carries the DICOM signature
      (``DICM`` at byte 128).  Other entries go to ``skipped`` with a reason
      such as ``'not an image file (.csv)'``; a ``DICOMDIR`` index is skipped.
    * Paths given explicitly as files are always kept (a broken one becomes an
      error row later), and so are paths that do not exist (``load_image``
      then refuses them as unreadable).
    * A file reached twice (given twice, or inside a given folder) is listed once.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    add = files.append  # a file reached twice is dropped at the end (unique_paths)

    for item in paths:
        p = Path(item)
        if not p.is_dir():
            add(p)
            continue
        entries, unreadable = walk_folder(p)
        skipped.extend(unreadable)
        for f, why in sorted(entries, key=lambda e: e[0].relative_to(p).parts):
            if why:
                skipped.append((f, why))
            else:
                add(f)
    return unique_paths(files), skipped


def walk_folder(folder: str | os.PathLike) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """The one folder walk (:func:`find_images`, ``training.train.data.scan_folders``).

    Returns ``(entries, unreadable)``.  ``entries``: every file below ``folder``
    in walk order (each folder's files by name, then its sub-folders by name;
    hidden files and folders - name starting with "." - are ignored), each with
    ``""`` when it is an image file to read, else the reason it is passed over:
    a named pipe, device or socket (never opened: it would block the scan), a
    ``DICOMDIR`` index, or a suffix that is not an image's (a file with the
    DICOM signature or without a suffix is kept).  ``unreadable``: the
    sub-folders that could not be listed, with the reason."""
    root_path = Path(folder)
    entries: list[tuple[Path, str]] = []
    errors: list[OSError] = []
    for root, dirs, names in os.walk(root_path, onerror=errors.append):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                f = Path(root) / name
                entries.append((f, _passed_over(f)))
    unreadable = []
    for err in errors:
        why = "permission denied" if isinstance(err, PermissionError) else (err.strerror or type(err).__name__)
        unreadable.append((Path(err.filename or root_path), f"folder cannot be read ({why})"))
    return entries, unreadable


def _passed_over(f: Path) -> str:
    """Why the walk passes over the file ``f`` ("" when it is an image file to read)."""
    suffix = f.suffix.lower()
    special = _special_file(f)
    if special:  # never opened: a named pipe would block the scan
        return f"not a regular file ({special})"
    if f.name.upper() == "DICOMDIR":
        return "DICOM directory index (DICOMDIR), not an image"
    if suffix in SUPPORTED_SUFFIXES or suffix == "" or has_dicm(f):
        return ""
    return f"not an image file ({suffix})"


def unique_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """``paths`` in their order, each file once: another spelling of the same
    path (relative or absolute; letter case on Windows) is dropped.  The one
    rule for :func:`find_images` and :func:`training.imaging.dicomdir.find_inputs`."""
    seen: set[str] = set()
    out: list[Path] = []
    for f in paths:
        key = os.path.normcase(os.path.abspath(f))
        if key not in seen:
            seen.add(key)
            out.append(Path(f))
    return out
