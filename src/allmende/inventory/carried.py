"""Configuration files the inventory carries: ``files/<service>/...``, named by the ``files`` of
a service's components and read by the loader (renderers read no files).

A source names a regular file or a directory (every regular file below it is carried), text or
binary. A file with an executable bit in the inventory (Git keeps it) is handed over executable
(``executable``). A link, a missing source or one that cannot be read is a problem located at
the component's entry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from allmende.errors import Problem
from allmende.inventory.hostpaths import CARRIED
from allmende.inventory.inventory import Inventory


def carried_key(service: str, source: str) -> str:
    """Return the key of a carried file in ``Inventory.carried``: ``<service>/<source>``."""
    return f"{service}/{source.strip('/')}"


def under(carried: Mapping[str, bytes], service: str, source: str) -> dict[str, bytes]:
    """Return the carried files of a source, by their path relative to ``files/<service>/``:
    the file itself, or every file of the directory."""
    key = carried_key(service, source)
    prefix = f"{service}/"
    return {
        k.removeprefix(prefix): v for k, v in carried.items() if k == key or k.startswith(f"{key}/")
    }


def _regular(path: Path, root: Path) -> Iterator[Path]:
    if path.is_symlink():
        raise OSError(f"{path.relative_to(root).as_posix()} is a link; carry the file itself")
    if path.is_file():
        yield path
        return
    if not path.is_dir():
        raise OSError("no such file or directory")
    for child in sorted(path.iterdir()):
        yield from _regular(child, root)


def executable(inventory: Inventory, service: str, relative: str) -> bool:
    """Return whether the carried file ``files/<service>/<relative>`` is executable."""
    return carried_key(service, relative) in inventory.executable


def read_carried(
    inventory: Inventory,
) -> tuple[dict[str, bytes], frozenset[str], list[Problem]]:
    """Return every carried file the inventory's components name, the keys of those that are
    executable, and the problems found."""
    root = inventory.root
    found: dict[str, bytes] = {}
    runs: set[str] = set()
    problems: list[Problem] = []
    for name, service in sorted(inventory.services.items()):
        base = root / CARRIED / name
        for cname, component in sorted(service.components.items()):
            sources = [
                (("components", cname, "files", t), f.source) for t, f in component.files.items()
            ]
            if component.build is not None:
                sources.append((("components", cname, "build", "context"), component.build.context))
            for path, source in sorted(sources):
                shown = f"{CARRIED}/{name}/{source}"
                try:
                    for regular in _regular(base / source, root):
                        relative = regular.relative_to(base).as_posix()
                        found[carried_key(name, relative)] = regular.read_bytes()
                        if regular.stat().st_mode & 0o111:
                            runs.add(carried_key(name, relative))
                except OSError as exc:
                    problems.append(
                        Problem(
                            inventory.where("service", name, path),
                            ".".join(path[:3]),
                            f"cannot carry {shown}: {exc.strerror or exc}",
                            f"put the file at {shown} in the inventory",
                        )
                    )
    return found, frozenset(runs), problems
