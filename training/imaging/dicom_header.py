"""What every reader of a DICOM file shares: the file signature (``DICM`` after the 128-byte preamble) and a header value as text.

:func:`has_dicm` is the one signature check (the loader's sniffing, the folder
walk, study information).  :func:`value_text` / :func:`header_text` turn a
value as pydicom gives it (str, ``PersonName``, UID, IS/DS, ``MultiValue``)
into plain text: nothing for an absent value, several values joined with
DICOM's separator ``\\``.  Text that may be in another character set and is
shown to people (names, descriptions) is decoded by
:func:`training.imaging.dicom_charset.decoded_text`, which builds on this."""

from __future__ import annotations

import os

PREAMBLE = 128  # bytes before the signature in a DICOM Part 10 file
SIGNATURE = b"DICM"
HEAD = PREAMBLE + len(SIGNATURE)  # bytes to read to see the signature


def has_dicm(source: bytes | bytearray | memoryview | str | os.PathLike) -> bool:
    """Whether a file (given by its path) or its first bytes carry the DICOM
    signature at byte 128.  A path that cannot be read: False."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        head = bytes(source[:HEAD])
    else:
        try:
            with open(source, "rb") as fh:
                head = fh.read(HEAD)
        except OSError:
            return False
    return len(head) == HEAD and head[PREAMBLE:HEAD] == SIGNATURE


def value_text(value) -> str:
    """A header value as text: ``None`` -> ``""``; a list, tuple or
    ``MultiValue`` -> its values joined with ``\\``; anything else -> ``str()``."""
    if value is None:
        return ""
    from pydicom.multival import MultiValue

    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def header_text(ds, keyword: str) -> str:
    """:func:`value_text` of ``keyword`` in the dataset ``ds`` (``""`` when absent)."""
    return value_text(ds.get(keyword))


__all__ = ["has_dicm", "value_text", "header_text", "PREAMBLE", "SIGNATURE", "HEAD"]
