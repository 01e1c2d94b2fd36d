"""Turning an image: quarter turns and a left-right mirror of a loaded image,
with its DICOM values (for window/level) and its record of how it was turned.

One convention everywhere: ``quarter_turns`` counts counter-clockwise quarter
turns (numpy ``rot90``), applied after the optional left-right mirror.  A film
"stored rotated 90 degrees clockwise" is made upright by one quarter turn.
The viewer's Rotate and Flip tools and the orientation check both use it; the
turn is kept in ``ImageMeta.turn`` so markers and exports follow it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from training.imaging.loading import LoadedImage

TURN_WORDS = {1: "90\u00b0 to the left", 2: "180\u00b0", 3: "90\u00b0 to the right"}


def compose(first: tuple[int, bool], then: tuple[int, bool]) -> tuple[int, bool]:
    """The single (quarter turns, mirror) equal to ``first`` followed by ``then``.

    A mirror after ``k`` turns equals the mirror first and ``-k`` turns:
    ``fliplr(rot90(x, k)) == rot90(fliplr(x), -k)``."""
    k1, f1 = int(first[0]) % 4, bool(first[1])
    k2, f2 = int(then[0]) % 4, bool(then[1])
    return ((k2 - k1) % 4 if f2 else (k1 + k2) % 4), f1 != f2


def turn_array(a: np.ndarray, quarter_turns: int = 0, mirror: bool = False) -> np.ndarray:
    out = a[:, ::-1] if mirror else a
    k = int(quarter_turns) % 4
    return np.ascontiguousarray(np.rot90(out, k) if k else out)


def turned(image: LoadedImage, quarter_turns: int = 0, mirror: bool = False, *, note: str | None = None,
           by_user: bool = False) -> LoadedImage:
    """A copy of ``image`` mirrored (first) and turned; ``note`` is added to its warnings (the
    result's notes, CSV and PDF carry it); ``by_user`` marks it as the user's choice."""
    meta = dataclasses.replace(image.meta, turn=compose(image.meta.turn, (quarter_turns, mirror)),
                               user_turned=image.meta.user_turned or by_user)
    return dataclasses.replace(
        image, pixels=turn_array(image.pixels, quarter_turns, mirror),
        raw=None if image.raw is None else turn_array(image.raw, quarter_turns, mirror),
        meta=meta, warnings=list(image.warnings) + ([note] if note else []))


def user_turn_note(quarter_turns: int, mirror: bool) -> str:
    """What a result says after the user rotated or flipped the image in the viewer."""
    parts = (["flipped left-right"] if mirror else []) + (
        [f"rotated {TURN_WORDS[int(quarter_turns) % 4]}"] if int(quarter_turns) % 4 else [])
    return f"The image was {' and '.join(parts)} by the user before classification."


def turn_markers(markers: dict[str, str], turn: tuple[int, bool]) -> dict[str, str]:
    """Edge markers (``left``/``right``/``top``/``bottom``) of the file's frame, after ``turn``."""
    out = dict(markers)
    k, mirror = int(turn[0]) % 4, bool(turn[1])
    if mirror:
        out = {{"left": "right", "right": "left"}.get(e, e): v for e, v in out.items()}
    for _ in range(k):  # one counter-clockwise quarter turn: the top edge goes to the left, ...
        out = {{"top": "left", "right": "top", "bottom": "right", "left": "bottom"}[e]: v for e, v in out.items()}
    return out


__all__ = ["compose", "turn_array", "turned", "user_turn_note", "turn_markers", "TURN_WORDS"]
