"""docs/ARCHITECTURE.md's module map names every module of the core, in the
sub-package it lives in, and no module that is gone (one home per concept, docs
that match the code)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_architecture_module_map_matches_the_core():
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## Where each concept lives (`training/`)", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z_0-9]+/[a-z_0-9]+\.py)` \|", section, flags=re.M))
    core = REPO / "training"
    actual = {p.relative_to(core).as_posix() for p in core.glob("*/*.py")
              if p.name != "__init__.py" and p.parent.name != "dicom_node"}
    assert listed == actual, (f"missing from the map: {sorted(actual - listed)}; "
                              f"listed but gone: {sorted(listed - actual)}")
    assert not [p.name for p in core.glob("*.py") if p.name != "__init__.py"], \
        "modules belong in a sub-package, not at the top of training/"
