"""Load an inventory directory into an Inventory, or fail with every problem at once."""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from allmende.errors import InventoryError, Location, Problem
from allmende.inventory import dnsnames
from allmende.inventory.carried import read_carried
from allmende.inventory.inventory import COLLECTIVE_FILE, DIRECTORIES, Inventory, Kind
from allmende.inventory.models import Collective, Host, Service, Zone
from allmende.inventory.resolve import resolve
from allmende.inventory.safenames import why_unsafe
from allmende.inventory.secrets import SecretStore
from allmende.inventory.validate import validate
from allmende.inventory.yamlpos import Document, KeyPath, parse

MODELS: dict[Kind, type[BaseModel]] = {
    "collective": Collective,
    "host": Host,
    "service": Service,
    "zone": Zone,
}
SUFFIXES = (".yaml", ".yml")


def _inside(root: Path, path: Path) -> bool:
    """Whether ``path``, its links followed, stays inside the inventory ``root``."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a loop of links
        return False


def _outside(relative: str) -> Problem:
    return Problem(
        Location(relative),
        "",
        "is a symbolic link that leads out of the inventory: refused, and not read",
        "put the file itself into the inventory, or link only to files inside it",
    )


def _name_problem(relative: str, kind: Kind, name: str) -> Problem | None:
    """Return why the file name cannot give a host, service or zone its name, if it cannot."""
    if kind == "zone":
        try:
            dnsnames.domain(name)
        except dnsnames.BadName as exc:
            return Problem(Location(relative), "", f"not a domain: {exc}", "rename the file")
        return None
    why = why_unsafe(name)
    if why is None:
        return None
    return Problem(Location(relative), "", f"the {kind} name: {why}", "rename the file")


def _files(
    root: Path, kind: Kind, problems: list[Problem], skipped: dict[str, str]
) -> dict[str, str] | None:
    """Return name -> relative file for every YAML file of one kind, noting doubles, links out
    of the inventory, names that cannot be names, and entries that are no regular files; None
    when the directory cannot be read."""
    directory = root / DIRECTORIES[kind]
    found: dict[str, str] = {}
    if directory.is_symlink() and not _inside(root, directory):
        problems.append(_outside(DIRECTORIES[kind]))
        return found
    if not directory.is_dir():
        return found
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        problems.append(
            Problem(
                Location(f"{DIRECTORIES[kind]}/"),
                "",
                f"cannot read the directory: {exc.strerror}",
                "check its permissions",
            )
        )
        return None
    for path in entries:
        if path.suffix not in SUFFIXES:
            continue
        name = path.name[: -len(path.suffix)]
        relative = path.relative_to(root).as_posix()
        if path.is_symlink() and not _inside(root, path):
            problems.append(_outside(relative))
            continue
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            problems.append(Problem(Location(relative), "", f"cannot read: {exc.strerror}"))
            continue
        if not stat.S_ISREG(mode):
            what = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, a device)"
            skipped[relative] = what
            continue
        invalid = _name_problem(relative, kind, name)
        if invalid is not None:
            problems.append(invalid)
            continue
        if name in found:
            problems.append(
                Problem(
                    Location(relative),
                    "",
                    f"`{name}` is also defined in {found[name]}",
                    "keep one file per name",
                )
            )
            continue
        found[name] = relative
    return found


def _read(root: Path, relative: str, problems: list[Problem]) -> Document | None:
    path = root / relative
    if path.is_symlink() and not _inside(root, path):
        problems.append(_outside(relative))
        return None
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(
            Problem(
                Location(relative),
                "",
                f"cannot read the file: {exc.strerror}",
                "check its permissions",
            )
        )
        return None
    document, found = parse(raw, relative)
    problems.extend(found)
    return document if document.data is not None else None


def load(root: Path | str, env: Mapping[str, str] | None = None) -> Inventory:
    """Given an inventory directory, return the loaded, resolved Inventory.

    Raise InventoryError holding every problem found (syntax, types, unknown keys, references)
    if anything is wrong; nothing is returned half-loaded.
    """
    root = Path(root)
    if not (root / COLLECTIVE_FILE).is_file():
        hint = "run allmende in the inventory's directory or pass it as an argument"
        if not root.is_dir():
            raise InventoryError([Problem(Location(str(root)), "", "no such directory", hint)])
        raise InventoryError(
            [Problem(Location(COLLECTIVE_FILE), "", "missing: this is not an inventory", hint)]
        )
    problems: list[Problem] = []
    skipped: dict[str, str] = {}
    files: dict[tuple[Kind, str], str] = {("collective", ""): COLLECTIVE_FILE}
    unreadable: set[Kind] = set()
    for kind in DIRECTORIES:
        listed = _files(root, kind, problems, skipped)
        if listed is None:
            unreadable.add(kind)
        for name, relative in (listed or {}).items():
            files[(kind, name)] = relative

    documents: dict[str, Document] = {}
    spoiled: dict[str, set[KeyPath]] = {}
    models: dict[Kind, dict[str, Any]] = {kind: {} for kind in MODELS}
    for (kind, name), relative in files.items():
        document = _read(root, relative, problems)
        if document is None:
            continue
        documents[relative] = document
        model, found, spoiled[relative] = validate(MODELS[kind], document)
        problems.extend(found)
        if model is not None:
            models[kind][name] = model

    store = SecretStore(root, env if env is not None else {})
    collective = models["collective"].get("")
    if collective is None:
        raise InventoryError(problems)
    inventory = Inventory(
        root=root,
        collective=collective,
        hosts=models["host"],
        services=models["service"],
        zones=models["zone"],
        secrets=frozenset(store.names()),
        files=files,
        documents=documents,
        skipped=skipped,
    )
    problems.extend(_resolvable(inventory, files, spoiled, unreadable))
    carried, executable, unreadable_files = read_carried(inventory)
    problems.extend(unreadable_files)
    inventory = replace(inventory, carried=carried, executable=executable)
    if problems:
        raise InventoryError(problems)
    return inventory


def _scope(keypath: str | KeyPath) -> tuple[str, ...]:
    """Return the part of a key path a problem spoils: ``components.app`` of a key below it,
    ``routes[0]`` of a key of the first route."""
    parts = _PARTS.findall(keypath) if isinstance(keypath, str) else [str(p) for p in keypath]
    return tuple(part.strip("[]") for part in parts[:2])


_PARTS = re.compile(r"[^.\[\]]+|\[\d+\]")


def _resolvable(
    inventory: Inventory,
    files: dict[tuple[Kind, str], str],
    spoiled: dict[str, set[KeyPath]],
    unreadable: set[Kind],
) -> list[Problem]:
    """Resolve references, leaving out what only follows from problems already reported.

    A file that failed to load is not reported again as an unknown name; a reference next to a
    key that had to be left out or filled in to salvage its file (in the same component, say),
    or to a component or port that was left out, is not reported either, and neither are
    unknown hosts or services when their directory cannot be read.
    """
    unloaded = frozenset(
        name
        for (kind, name) in files
        if kind in ("host", "service")
        and name not in (inventory.hosts if kind == "host" else inventory.services)
    )
    failed = {(file, _scope(path)) for file, paths in spoiled.items() for path in paths}
    unknown = tuple(f"unknown {kind} " for kind in sorted(unreadable))
    return [
        p
        for p in resolve(inventory, unloaded, spoiled)
        if (p.location.file, _scope(p.keypath)) not in failed
        and not (unknown and p.message.startswith(unknown))
    ]
