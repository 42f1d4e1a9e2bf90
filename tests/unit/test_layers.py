"""The layout is the architecture: imports flow one way, and one module runs programs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "allmende"
MODULES = sorted(p for p in SRC.rglob("*.py"))

#: Each layer and the allmende packages it may import (besides itself and allmende.errors).
ALLOWED = {
    "inventory": {"inventory"},
    "checks": {"inventory"},
    "render": {"inventory"},
    "importers": {"inventory"},
    "connectors": {"inventory", "execute"},
    "plan": {"inventory", "render", "connectors"},
    "state": set(),
    "apply": {"inventory", "render", "connectors", "plan", "state", "execute"},
    "actions": {
        "inventory",
        "checks",
        "render",
        "execute",
        "operations",
        "apply",
        "plan",
        "connectors",
        "state",
        "importers",
    },
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _layer(path: Path) -> str:
    parts = path.relative_to(SRC).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_flow_one_way(path: Path) -> None:
    layer = _layer(path)
    if layer not in ALLOWED:
        return
    for name in _imports(path):
        if not name.startswith("allmende."):
            continue
        target = name.split(".")[1]
        if target in (layer, "errors", "__init__"):
            continue
        assert target in ALLOWED[layer], f"{layer} must not import allmende.{target}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_only_execute_runs_programs(path: Path) -> None:
    if path.name == "execute.py":
        return
    imported = _imports(path)
    assert "subprocess" not in imported, f"{path.name} runs programs: use allmende.execute"
    assert "os.system" not in path.read_text()
