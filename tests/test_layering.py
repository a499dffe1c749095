"""The layers of ARCHITECTURE.md hold: no module imports a layer above its own.

Reference: the layer table in ARCHITECTURE.md itself, read here, and every import statement of
every module under src/gradtrace (top-level, nested and TYPE_CHECKING imports alike), read with
`ast`. A relative import is resolved against its package.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gradtrace"


def layer_table() -> dict[str, int]:
    """Top-level part of gradtrace (package or module) -> its layer number."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    layers: dict[str, int] = {}
    for number, names in re.findall(r"^\| (\d+) \| ([^|]+) \|", text, flags=re.M):
        for name in re.findall(r"`([\w.]+)`", names):
            layers[name] = int(number)
    return layers


def part_of(module: str) -> str:
    """ "gradtrace.cells.lstm" -> "cells"; "gradtrace" -> "__init__"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    """The dotted name of a source file: src/gradtrace/cells/lstm.py -> gradtrace.cells.lstm."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported(text: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, gradtrace module) for every import in the source `text` of `module`."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("gradtrace")]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            if target == "gradtrace":  # `from gradtrace import budgets`: the submodule
                found += [(node.lineno, f"gradtrace.{a.name}") for a in node.names]
            elif target.startswith("gradtrace."):
                found.append((node.lineno, target))
    return found


def upward(text: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of `module` that reach a layer above its own."""
    table = layer_table()
    own = table[part_of(module)]
    return [
        f"line {line}: {target} (layer {table[part_of(target)]} > {own})"
        for line, target in imported(text, module, is_package)
        if part_of(target) in table and table[part_of(target)] > own
    ]


def test_every_part_of_the_package_has_a_layer() -> None:
    table = layer_table()
    parts = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    }
    missing = sorted(parts - set(table))
    assert not missing, f"ARCHITECTURE.md gives no layer to {missing}"


def test_the_table_has_the_layers_in_order() -> None:
    table = layer_table()
    assert table["errors"] < table["records"] < table["core"] < table["cells"]
    assert table["cells"] < table["analysis"] < table["tracing"] < table["plots"] < table["cli"]


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(PACKAGE)) for p in SOURCES])
def test_no_module_imports_a_layer_above_its_own(path: Path) -> None:
    module = module_name(path)
    found = upward(path.read_text(), module, path.name == "__init__.py")
    assert not found, f"{module} imports upward: {found}"


@pytest.mark.parametrize(
    ("text", "module", "expected"),
    [
        ("from gradtrace.plots.flow import plot_flow\n", "gradtrace.core.engine", 1),
        ("import gradtrace.cli.main\n", "gradtrace.records.base", 1),
        ("from ..tracing import trace\n", "gradtrace.analysis.flow", 1),
        ("from gradtrace import budgets\n", "gradtrace.core.engine", 0),
        ("from .theory import judge\n", "gradtrace.core.engine", 0),
    ],
    ids=["absolute-up", "plain-import-up", "relative-up", "down", "same-layer"],
)
def test_the_check_catches_upward_imports(text: str, module: str, expected: int) -> None:
    assert len(upward(text, module)) == expected
