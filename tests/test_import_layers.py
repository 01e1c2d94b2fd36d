"""Imports run one way: ``xray_gui`` -> ``training``, and inside ``training``
downward through its sub-packages in the order docs/ARCHITECTURE.md gives.
Every import statement of every module is read (top level and inside
functions alike), so a lazy import cannot hide an upward edge."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "training"
# bottom first: a package may import itself and those before it, never those after
LAYERS = ["common", "imaging", "model", "gate", "inference", "train", "release", "dicom_out", "dicom_node", "cli"]


def _imports(path: Path, root: Path = REPO) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``."""
    rel = path.relative_to(root).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            # "from training import x" / "from training.gate import segmenter" name modules too
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "training" or len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return LAYERS.index(parts[1])


def test_every_module_lives_in_a_layer():
    stray = [p.name for p in CORE.glob("*.py") if p.name != "__init__.py"]
    assert not stray
    assert sorted(p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").exists()) == sorted(LAYERS)


def test_core_imports_only_downward():
    bad = []
    for path in sorted(CORE.rglob("*.py")):
        own = _layer(".".join(path.relative_to(REPO).with_suffix("").parts))
        if own is None:
            continue
        for line, mod in _imports(path):
            other = _layer(mod)
            if other is not None and other > own:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {mod} ({LAYERS[own]} -> {LAYERS[other]})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_core_never_imports_the_gui():
    bad = [f"{p.relative_to(REPO)}:{line} {mod}" for p in sorted(CORE.rglob("*.py"))
           for line, mod in _imports(p) if mod.split(".")[0] == "xray_gui"]
    assert not bad


def test_the_checker_sees_upward_and_relative_imports(tmp_path):
    # the rule must be able to fail: a common module importing inference, directly or relatively
    (tmp_path / "training" / "common").mkdir(parents=True)
    fake = tmp_path / "training" / "common" / "probe.py"
    fake.write_text("def f():\n    from training.inference import classifier\n"
                    "from ..gate.segmenter import LungSegmenter\n")
    found = [m for _, m in _imports(fake, tmp_path)]
    assert "training.inference.classifier" in found and "training.gate.segmenter" in found
    assert [m for m in found if (_layer(m) or 0) > LAYERS.index("common")]
