"""Writers for small synthetic test images (PNG headers, DICOM files).

Everything is built in memory with Pillow / pydicom and written to a path the
test chooses (normally under ``tmp_path``)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def chest_phantom(rows: int = 128, cols: int = 128, lo: float = 0.15, hi: float = 0.85) -> np.ndarray:
    """A crude frontal chest in [0, 1]: bright mediastinum column, dark lungs,
    bright border.  float64 (rows, cols)."""
    img = np.full((rows, cols), hi)
    r0, r1 = rows // 6, rows * 5 // 6
    lung_w = cols * 3 // 10
    img[r0:r1, cols // 2 - lung_w - cols // 20: cols // 2 - cols // 20] = lo
    img[r0:r1, cols // 2 + cols // 20: cols // 2 + cols // 20 + lung_w] = lo
    # a gentle gradient so windows and percentiles have something to work on
    img += np.linspace(0, 0.1, cols)[None, :] - 0.05
    return np.clip(img, 0.0, 1.0)


def write_png(path: Path, array: np.ndarray) -> Path:
    """uint8 (H, W) -> L, (H, W, 2) -> LA, (H, W, 3) -> RGB, (H, W, 4) -> RGBA,
    uint16 (H, W) -> 16-bit grey."""
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")
    return Path(path)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_header_only(path: Path, width: int, height: int, bit_depth: int = 8, colour_type: int = 0) -> Path:
    """A syntactically valid PNG whose header claims ``width x height`` but
    whose data is a few bytes: cheap way to test size refusals."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _chunk(
        b"IEND", b""
    )
    Path(path).write_bytes(data)
    return Path(path)


def make_dicom(
    pixels: np.ndarray | None = None,
    *,
    modality: str | None = "DX",
    body_part: str | None = "CHEST",
    view: str | None = "PA",
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
    voi_lut: tuple[int, np.ndarray] | None = None,
    descriptions: dict[str, str] | None = None,
    rows_cols: tuple[int, int] | None = None,
    sop_class: str = "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
):
    """Build an uncompressed (Explicit VR Little Endian) DICOM dataset.

    ``pixels``: uint8/uint16 (rows, cols), (frames, rows, cols) or (rows, cols, 3)
    for RGB; None -> no Pixel Data element at all.  ``rows_cols`` overrides
    the header size (with a token Pixel Data) for size-refusal tests.
    ``voi_lut``: (first_mapped, lut_data uint16)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Test^Patient"
    ds.PatientID = "TEST-0001"
    ds.PatientBirthDate = "19700101"
    ds.AccessionNumber = "ACC123"
    ds.StudyDate = "20240101"
    if modality is not None:
        ds.Modality = modality
    if body_part is not None:
        ds.BodyPartExamined = body_part
    if view is not None:
        ds.ViewPosition = view
    for key, value in (descriptions or {}).items():
        setattr(ds, key, value)

    if rows_cols is not None:
        ds.Rows, ds.Columns = rows_cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = b"\x00\x00" * 8
    elif pixels is not None:
        arr = np.asarray(pixels)
        if arr.ndim == 3 and arr.shape[-1] == 3:
            ds.set_pixel_data(arr.astype(np.uint8), "RGB", 8)
        else:
            bits = bits_stored or (8 if arr.dtype == np.uint8 else 16)
            ds.set_pixel_data(arr, photometric, bits)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if voi_lut is not None:
        first, data = voi_lut
        item = Dataset()
        data = np.asarray(data, dtype=np.uint16)
        item.LUTDescriptor = [len(data), int(first), 16]
        item.add_new(0x00283006, "US", [int(v) for v in data])  # LUT Data, VR US
        ds.VOILUTSequence = [item]
    return ds


def write_dicom(path: Path, ds, *, no_file_meta: bool = False) -> Path:
    """Write ``ds``; ``no_file_meta=True`` writes a bare Implicit VR Little
    Endian data set without preamble, 'DICM' or File Meta (old ACR-NEMA style)."""
    path = Path(path)
    if no_file_meta:
        from pydicom.filewriter import dcmwrite

        del ds.file_meta
        ds.preamble = None
        dcmwrite(path, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    else:
        ds.save_as(path, enforce_file_format=True)
    return path
