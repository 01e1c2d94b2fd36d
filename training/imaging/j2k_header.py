"""Structural check of a JPEG 2000 (or HTJ2K) codestream before any decoder sees it.

A damaged JPEG 2000 frame can hang the decoding path: pydicom's own JP2 box
walk (``pydicom.pixels.utils.get_j2k_parameters``, run before openjpeg) loops
for ever on a box of length 0 - fault-corpus case d78 - and openjpeg has had
hangs and huge allocations on absurd tile layouts.  :func:`codestream_problem`
reads only the JP2 boxes and the SOC/SIZ main-header markers (ISO/IEC 15444-1
Annex A.5.1 and Annex I) and says, in a few plain words, what is wrong; the
loader refuses such a file without decoding it.  Every read is bounds-checked
and every loop advances, so this function itself always ends quickly.
"""

from __future__ import annotations

import struct

__all__ = ["J2K_TRANSFER_SYNTAXES", "codestream_problem"]

# JPEG 2000 family transfer syntaxes (Part 1, Part 2, HTJ2K)
J2K_TRANSFER_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
})

_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_SOC, _SIZ = b"\xff\x4f", b"\xff\x51"
MAX_TILES = 65535  # Isot is 16 bits: a codestream cannot address more tiles
MAX_COMPONENTS = 4  # a radiograph has 1 (grey) or 3 (colour); the standard allows 16384


def _codestream_start(data: bytes) -> tuple[int, str]:
    """Offset of the J2K codestream inside ``data`` (0 for a raw codestream,
    after the ``jp2c`` box header for a JP2 file) or (-1, problem)."""
    if not data.startswith(_JP2_SIGNATURE):
        return 0, ""
    offset, end = len(_JP2_SIGNATURE), len(data)
    while offset + 8 <= end:
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        header = 8
        if length == 1:  # 64-bit length follows
            if offset + 16 > end:
                return -1, "a JPEG 2000 box header is cut short"
            (length,) = struct.unpack(">Q", data[offset + 8:offset + 16])
            header = 16
        if kind == b"jp2c":
            return offset + header, ""
        if length == 0:  # "to the end of the file": only the codestream box may say that
            return -1, "a JPEG 2000 box before the image data has length 0"
        if length < header:
            return -1, f"a JPEG 2000 box has an impossible length ({length} bytes)"
        offset += length
    return -1, "the JPEG 2000 file holds no image codestream (no 'jp2c' box)"


def codestream_problem(data: bytes, rows: int | None = None, cols: int | None = None) -> str:
    """'' when ``data`` (one encapsulated frame) starts like a sound JPEG 2000
    codestream whose size matches ``rows`` x ``cols``; else a short
    plain-language description of the damage."""
    start, problem = _codestream_start(data)
    if start < 0:
        return problem
    cs = memoryview(data)[start:]
    if bytes(cs[:2]) != _SOC:
        return "the JPEG 2000 image data does not start with a start-of-codestream marker"
    if bytes(cs[2:4]) != _SIZ:
        return "the JPEG 2000 image header (SIZ) is missing"
    if len(cs) < 6:
        return "the JPEG 2000 image header is cut short"
    (lsiz,) = struct.unpack(">H", cs[4:6])
    if len(cs) < 4 + lsiz or lsiz < 41:
        return "the JPEG 2000 image header is cut short"
    (_rsiz, xsiz, ysiz, xosiz, yosiz, xtsiz, ytsiz, xtosiz, ytosiz, csiz) = struct.unpack(
        ">HIIIIIIIIH", cs[6:42])
    if lsiz != 38 + 3 * csiz:
        return "the JPEG 2000 image header is inconsistent (its length does not match its component count)"
    if not 1 <= csiz <= MAX_COMPONENTS:
        return f"the JPEG 2000 image declares {csiz} colour components"
    width, height = xsiz - xosiz if xsiz > xosiz else 0, ysiz - yosiz if ysiz > yosiz else 0
    if width == 0 or height == 0:
        return "the JPEG 2000 image header declares an empty image"
    if xtsiz == 0 or ytsiz == 0 or xtosiz > xosiz or ytosiz > yosiz:
        return "the JPEG 2000 image header declares an impossible tile layout"
    tiles = -(-(xsiz - xtosiz) // xtsiz) * -(-(ysiz - ytosiz) // ytsiz)
    if tiles > MAX_TILES:
        return f"the JPEG 2000 image header declares {tiles:,} tiles (at most {MAX_TILES:,} are possible)"
    for i in range(csiz):
        ssiz, xr, yr = cs[42 + 3 * i], cs[43 + 3 * i], cs[44 + 3 * i]
        if (ssiz & 0x7F) + 1 > 38 or xr == 0 or yr == 0:
            return "the JPEG 2000 image header declares an impossible sample format"
    if rows is not None and cols is not None and (int(rows), int(cols)) != (height, width):
        return (f"the JPEG 2000 image is {width} x {height} pixels but the DICOM header says "
                f"{int(cols)} x {int(rows)}")
    return ""
