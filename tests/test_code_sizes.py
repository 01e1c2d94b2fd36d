"""No warehouse classes: in ``training/`` and ``xray_gui/`` no class is longer than
300 lines and no function longer than 80 (the "core in rooms" rule; lines from
``def``/``class`` to the last line of the body, docstrings included)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_CLASS, MAX_FUNCTION = 300, 80


def oversized(tree: ast.AST, where: str) -> list[str]:
    out = []
    for node in ast.walk(tree):
        length = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
        if isinstance(node, ast.ClassDef) and length > MAX_CLASS:
            out.append(f"{where}: class {node.name} has {length} lines (> {MAX_CLASS})")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and length > MAX_FUNCTION:
            out.append(f"{where}: function {node.name} has {length} lines (> {MAX_FUNCTION})")
    return out


@pytest.mark.parametrize("package", ["training", "xray_gui"])
def test_no_class_over_300_lines_and_no_function_over_80(package):
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        found += oversized(ast.parse(path.read_text(encoding="utf-8")), str(path.relative_to(ROOT)))
    assert not found, "\n".join(found)


def test_the_size_check_sees_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION))
    assert oversized(ast.parse(f"def long():\n{body}\n"), "probe.py")
    assert not oversized(ast.parse("def short():\n    return 1\n"), "probe.py")
