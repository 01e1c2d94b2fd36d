"""Character sets of DICOM text, in and out (docs/DICOM_EXPORT.md, "Character sets").

In: text values (names, IDs, descriptions: VRs SH, LO, ST, LT, UT, UC, PN) are
decoded from the file's raw bytes through pydicom's character-set handling
(Specific Character Set (0008,0005), ISO 2022 escape sequences included) when
the source declares a set and its bytes are valid in it.  When a source
declares **no** set, or bytes that are not valid in the declared one (common in
archives: Windows code pages written without a declaration), the value is
decoded by this documented **fallback**, in order:

1. pure ASCII: as it is;
2. valid UTF-8: UTF-8;
3. the code page named by the environment variable ``XRAY_DICOM_FALLBACK_CHARSET``
   (a Python codec name, e.g. ``cp1253`` for a Greek site), when set;
4. Windows-1251 (Cyrillic) when the non-ASCII bytes look like Cyrillic letters:
   at least half of the value's letters are bytes 0xC0-0xFF (А-я) or 0xA8/0xB8
   (Ё/ё) - Cyrillic names are almost all such bytes, Western names only a few;
5. otherwise Windows-1252 (Latin-1 and its Windows superset; a byte it does not
   define is read as ISO 8859-1).

Every value decoded by the fallback gets a **note** for the audit trail: which
attribute, why, which code page, and the raw bytes in hex (the SR carries it).
A declared set whose bytes are valid but wrong (e.g. Cyrillic bytes under
``ISO_IR 100``) cannot be told from right ones and is trusted: a known limit.

Out: :func:`copy_decoded` gives a dataset whose text values are Python strings
and whose Specific Character Set is ``ISO_IR 192`` (UTF-8) when any value is
not ASCII (none otherwise), so an SR or SC built from it never carries bytes
invalid for its declared set.  :func:`decoded_text` gives one value for display
(the identifiers toggle, CSV, PDF)."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass

from training.imaging.dicom_header import value_text

TEXT_VRS = ("SH", "LO", "ST", "LT", "UT", "UC", "PN")
MULTILINE_VRS = ("ST", "LT", "UT")  # may hold CR, LF, FF and TAB
UTF8 = "ISO_IR 192"
FALLBACK_ENV = "XRAY_DICOM_FALLBACK_CHARSET"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f-\x9f]")  # C0 (not TAB LF FF CR ESC) and C1 controls
_LINE_CONTROL = re.compile(r"[\t\n\x0c\r]")


@dataclass
class Decoded:
    text: str
    how: str  # "ascii" | "declared" | "fallback"
    codec: str = ""  # Python codec (or the declared set) used
    note: str = ""  # for the audit trail, only when the fallback was used


def _declared(ds) -> list[str]:
    try:
        elem = ds.get_item(0x00080005)
    except Exception:
        return []
    if elem is None:
        return []
    value = elem.value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").split("\\")
    elif isinstance(value, str):
        value = value.split("\\")
    out = [str(v).strip() for v in (value or [])]
    return out if any(out) else []


def _cyrillic_looking(raw: bytes) -> bool:
    high = sum(1 for b in raw if b >= 0xC0 or b in (0xA8, 0xB8))
    letters = high + sum(1 for b in raw if 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A)
    return high >= 2 and letters > 0 and high * 2 >= letters


def _invalid(text: str, vr: str) -> bool:
    """Decoded text that a DICOM value of ``vr`` may not hold (replacement or control characters)."""
    if "\ufffd" in text:
        return True
    body = _LINE_CONTROL.sub("", text) if vr in MULTILINE_VRS else text
    return bool(_CONTROL.search(body)) or (vr not in MULTILINE_VRS and bool(_LINE_CONTROL.search(text)))


def _decode_declared(raw: bytes, declared: list[str], vr: str) -> str | None:
    """``raw`` decoded as ``declared`` (pydicom, ISO 2022 included), or None when not valid in it."""
    from pydicom.charset import convert_encodings, decode_bytes

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            encodings = convert_encodings(declared)
            delimiters = {0x5E, 0x3D} if vr == "PN" else {0x5C, 0x0D, 0x0A, 0x09, 0x0C}
            text = decode_bytes(raw, encodings, delimiters)
    except Exception:
        return None
    if caught or _invalid(text, vr):
        return None
    return text


def decode_raw(raw: bytes, declared: list[str], vr: str = "LO", keyword: str = "") -> Decoded:
    """Decode one text value's bytes (see the module's rules)."""
    raw = bytes(raw).rstrip(b"\x00 ") if vr != "PN" else bytes(raw).rstrip(b"\x00 ")
    if all(b < 0x80 for b in raw) and b"\x1b" not in raw:
        text = raw.decode("ascii")
        if not _invalid(text, vr):
            return Decoded(text, "ascii", "ascii")
    if declared:
        text = _decode_declared(raw, declared, vr)
        if text is not None:
            return Decoded(text, "declared", "\\".join(declared))
        why = f"its bytes are not valid in the declared Specific Character Set '{chr(92).join(declared)}'"
    else:
        why = "the file declares no Specific Character Set"
    codec, text = fallback_decode(raw)
    text = _CONTROL.sub(" ", text) if vr in MULTILINE_VRS else _CONTROL.sub(" ", _LINE_CONTROL.sub(" ", text))
    name = keyword or "a text value"
    note = (f"{name}: {why}; decoded as {codec} by the documented fallback (docs/DICOM_EXPORT.md); "
            f"raw bytes (hex) {raw.hex()}")
    return Decoded(text, "fallback", codec, note)


def fallback_decode(raw: bytes) -> tuple[str, str]:
    """(codec, text) by the fallback order: UTF-8, ``XRAY_DICOM_FALLBACK_CHARSET``, Windows-1251 when the
    bytes look Cyrillic, Windows-1252 (ISO 8859-1 for the bytes it leaves undefined)."""
    try:
        return "utf-8", raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    forced = os.environ.get(FALLBACK_ENV, "").strip()
    if forced:
        try:
            return forced, raw.decode(forced)
        except (LookupError, UnicodeDecodeError):
            pass
    if _cyrillic_looking(raw):
        return "cp1251", raw.decode("cp1251", "replace")
    try:
        return "cp1252", raw.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1", raw.decode("latin-1")


def _vr(elem) -> str:
    vr = getattr(elem, "VR", None)
    if vr in (None, "UN", "OB or OW", "US or SS"):
        from pydicom.datadict import dictionary_VR

        try:
            vr = dictionary_VR(elem.tag)
        except KeyError:
            vr = "UN"
    return str(vr)


def _raw_bytes(elem) -> bytes | None:
    """The element's undecoded bytes (a raw element, or a value pydicom left as bytes)."""
    value = getattr(elem, "value", None)
    return bytes(value) if isinstance(value, (bytes, bytearray)) else None


def decode_element(ds, keyword: str) -> Decoded | None:
    """The decoded text of ``keyword`` in ``ds`` (None when absent or not a text VR)."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        return None
    try:
        elem = ds.get_item(tag)
    except Exception:
        return None
    if elem is None:
        return None
    vr = _vr(elem)
    if vr not in TEXT_VRS:
        return None
    raw = _raw_bytes(elem)
    if raw is not None:
        return decode_raw(raw, _declared(ds), vr, keyword)
    try:  # already decoded by pydicom (a dataset built in memory): as it is
        value = ds[tag].value
    except Exception:
        return None
    if value is None:
        return Decoded("", "ascii", "ascii")
    text = value_text(value)
    return Decoded(text, "ascii" if text.isascii() else "declared", "")


def decoded_text(ds, keyword: str, default: str = "") -> str:
    """One value for display (the identifiers toggle, CSV, PDF): decoded, stripped."""
    got = decode_element(ds, keyword)
    return default if got is None else got.text.strip()


def copy_decoded(src, keywords) -> tuple:
    """``(dataset, notes)``: the ``keywords`` present in ``src``, text values decoded (module rules), with
    Specific Character Set ``ISO_IR 192`` when a value is not ASCII; ``notes`` for the audit trail."""
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

    out, notes = Dataset(), []
    for key in keywords:
        if key == "SpecificCharacterSet" or key not in src:
            continue
        decoded = decode_element(src, key)
        if decoded is None:
            out[key] = src[key]
            continue
        elem = src[key]
        out[key] = DataElement(elem.tag, _vr(elem), decoded.text)
        if decoded.note:
            notes.append(decoded.note)
    if any(isinstance(e.value, str) and not e.value.isascii() for e in out) or \
            any(not str(e.value).isascii() for e in out if e.VR == "PN"):
        out.SpecificCharacterSet = UTF8
    return out, notes


__all__ = ["decode_raw", "decode_element", "decoded_text", "copy_decoded", "fallback_decode", "Decoded", "UTF8",
           "FALLBACK_ENV"]
