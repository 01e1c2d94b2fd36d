"""Attributes a class keeps on one of its parts: the image controller and the
viewer were split into parts (one module each) and keep the parts' methods and
settings under their old names, which other modules and the tests use."""

from __future__ import annotations


def to_part(part: str, name: str) -> property:
    """``self.<part>.<name>``, read and set there (a method comes back bound to the part)."""
    return property(lambda self: getattr(getattr(self, part), name),
                    lambda self, value: setattr(getattr(self, part), name, value),
                    doc=f"``self.{part}.{name}``")


def to_parts(part: str, *names: str) -> tuple[property, ...]:
    """:func:`to_part` for each of ``names``, in order."""
    return tuple(to_part(part, n) for n in names)
