"""Merge what an import made into a file that is already there: add, never overwrite.

Keys only the import has are added; keys only the file has stay; where both have a value and
they differ, the file's value stays and the difference is reported as a conflict (except for
``description`` and ``docs``, which are the user's to write). Lists of
routes, exposed ports, uses and allows are merged item by item (by domain and path, port,
database, rule); ``depends_on`` and ``maintainers`` by name; any other list is one value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from allmende.inventory.yamlpos import KeyPath, dotted

#: List key -> the fields that identify an item of it.
IDENTITY = {
    "routes": ("domain", "path"),
    "expose": ("port", "protocol"),
    "uses": ("database",),
    "allow": ("rule",),
}
UNIONS = frozenset({"depends_on", "maintainers"})
#: Keys whose value the user is meant to write: a different value there is no conflict.
OWNED = frozenset({("description",), ("docs",)})


@dataclass
class Merged:
    """The merged data, what was added (key paths) and the conflicts (messages)."""

    data: Any
    added: list[KeyPath] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def _identity(item: Any, keys: tuple[str, ...]) -> Any:
    if not isinstance(item, dict):
        return repr(item)
    return tuple(
        item.get(k, "/" if k == "path" else "tcp" if k == "protocol" else None) for k in keys
    )


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def merge(existing: Any, imported: Any, path: KeyPath = ()) -> Merged:
    """Given the file's data and the import's, return them merged (see the module's text)."""
    result = Merged(existing)
    _merge(existing, imported, path, result)
    return result


def _merge(existing: Any, imported: Any, path: KeyPath, result: Merged) -> Any:
    if isinstance(existing, dict) and isinstance(imported, dict):
        out = dict(existing)
        for key, value in imported.items():
            if key not in existing:
                out[key] = value
                result.added.append((*path, key))
            else:
                out[key] = _merge(existing[key], value, (*path, key), result)
        if not path:
            result.data = out
        return out
    last = path[-1] if path else ""
    if isinstance(existing, list) and isinstance(imported, list) and last in IDENTITY:
        keys = IDENTITY[str(last)]
        known = {_identity(item, keys) for item in existing}
        extra = [item for item in imported if _identity(item, keys) not in known]
        for i in range(len(extra)):
            result.added.append((*path, len(existing) + i))
        return [*existing, *extra]
    if isinstance(existing, list) and isinstance(imported, list) and last in UNIONS:
        extra = [item for item in imported if item not in existing]
        if extra:
            result.added.append(path)
        return [*existing, *extra]
    if existing != imported and path not in OWNED:
        result.conflicts.append(
            f"{dotted(path)}: kept `{_shown(existing)}` (the import says `{_shown(imported)}`)"
        )
    return existing
