"""docs/ARCHITECTURE.md's module map names every module of the core, and no
module that is gone (issue 12: one home per concept, docs that match the code)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_architecture_module_map_matches_the_core():
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## Where each concept lives (`training/`)", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z_0-9]+\.py)` \|", section, flags=re.M))
    actual = {p.name for p in (REPO / "training").glob("*.py")} - {"__init__.py"}
    assert listed == actual, (f"missing from the map: {sorted(actual - listed)}; "
                              f"listed but gone: {sorted(listed - actual)}")
