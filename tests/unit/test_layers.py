"""The layout is the architecture: imports flow one way, and one module runs programs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "allmende"
MODULES = sorted(p for p in SRC.rglob("*.py"))

#: What every layer may import: the exception tree and the package itself (its version).
ROOT = frozenset({"errors", "__init__"})

#: Each top-level module or package of allmende and the others it may import besides itself.
#: A name missing here fails the tests: a new layer says where it sits.
ALLOWED: dict[str, frozenset[str]] = {
    "__init__": frozenset(),
    "errors": frozenset(),
    # Programs that run on the hosts, by the hosts' Python: nothing of allmende is there.
    "onhost": frozenset(),
    "execute": ROOT,
    "inventory": ROOT,
    "state": ROOT,
    "checks": ROOT | {"inventory", "render"},
    "render": ROOT | {"inventory"},
    "importers": ROOT | {"inventory"},
    "connectors": ROOT | {"inventory", "execute", "onhost"},
    # Engines may reach into their containers (Incus: a connector over `incus exec`).
    "engines": ROOT | {"inventory", "render", "connectors", "execute", "onhost"},
    # The database servers allmende provisions: SQL and argument lists, nothing run.
    "databases": ROOT | {"inventory"},
    "plan": ROOT | {"inventory", "render", "connectors", "engines", "onhost", "databases"},
    "apply": ROOT | {"inventory", "render", "connectors", "plan", "state", "execute", "engines"},
}
#: The recurring jobs (backups, certificates, the watcher): hosts change here too, as in apply,
#: through apply's own steps where they are the same (HAProxy's reload, the host's lock).
ALLOWED["operations"] = ALLOWED["apply"] | {"onhost", "apply"}
#: The watcher: probes, alerts (operations.notify) and backup freshness (operations.archives).
ALLOWED["watch"] = ALLOWED["operations"] | {"operations"}
#: The surfaces: actions over every layer, the command line over the actions.
ALLOWED["actions"] = frozenset(ALLOWED) - {"onhost"}
ALLOWED["cli"] = ALLOWED["actions"] | {"actions"}
ALLOWED["__main__"] = frozenset({"cli"})


def _is_module(dotted: str) -> bool:
    """Return whether a dotted name (``allmende.x.y``) is a module or package of allmende."""
    path = SRC.joinpath(*dotted.split(".")[1:])
    return path.is_dir() or path.with_suffix(".py").is_file()


def _imports(path: Path) -> set[str]:
    """Return the absolute names of the modules a file imports: relative imports resolved,
    ``from allmende import execute`` as ``allmende.execute``."""
    tree = ast.parse(path.read_text())
    package = ["allmende", *path.relative_to(SRC).parent.parts]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                child = f"{module}.{alias.name}"
                inside = module == "allmende" or module.startswith("allmende.")
                names.add(child if inside and _is_module(child) else module)
    return names


def _layer(path: Path) -> str:
    parts = path.relative_to(SRC).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def _target(name: str) -> str | None:
    """Given an imported module's name, return the top-level name inside allmende it is in
    (``__init__`` for the package itself), or None for a module outside allmende."""
    if name == "allmende":
        return "__init__"
    return name.split(".")[1] if name.startswith("allmende.") else None


def test_every_top_level_name_has_an_entry() -> None:
    unknown = {_layer(p) for p in MODULES} - set(ALLOWED)
    assert unknown == set(), f"say in ALLOWED what {sorted(unknown)} may import"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_flow_one_way(path: Path) -> None:
    layer = _layer(path)
    assert layer in ALLOWED, f"allmende.{layer} has no entry in ALLOWED"
    for name in _imports(path):
        target = _target(name)
        if target is None or target == layer:
            continue
        assert target in ALLOWED, f"{name} is in no layer that ALLOWED knows"
        assert target in ALLOWED[layer], f"{layer} must not import allmende.{target}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_only_execute_runs_programs(path: Path) -> None:
    if path.name == "execute.py":
        return
    imported = _imports(path)
    assert "subprocess" not in imported, f"{path.name} runs programs: use allmende.execute"
    assert "os.system" not in path.read_text()
