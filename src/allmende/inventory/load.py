"""Load an inventory directory into an Inventory, or fail with every problem at once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from allmende.errors import InventoryError, Location, Problem
from allmende.inventory.inventory import COLLECTIVE_FILE, DIRECTORIES, Inventory, Kind
from allmende.inventory.models import Collective, Host, Service, Zone
from allmende.inventory.resolve import resolve
from allmende.inventory.secrets import SecretStore
from allmende.inventory.validate import validate
from allmende.inventory.yamlpos import Document, parse

MODELS: dict[Kind, type[BaseModel]] = {
    "collective": Collective,
    "host": Host,
    "service": Service,
    "zone": Zone,
}
SUFFIXES = (".yaml", ".yml")


def _files(root: Path, kind: Kind, problems: list[Problem]) -> dict[str, str]:
    """Return name -> relative file for every YAML file of one kind, noting doubles."""
    directory = root / DIRECTORIES[kind]
    found: dict[str, str] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.iterdir()):
        if path.suffix not in SUFFIXES or not path.is_file():
            continue
        name = path.name[: -len(path.suffix)]
        relative = path.relative_to(root).as_posix()
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
    try:
        raw = (root / relative).read_bytes()
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
    files: dict[tuple[Kind, str], str] = {("collective", ""): COLLECTIVE_FILE}
    for kind in DIRECTORIES:
        for name, relative in _files(root, kind, problems).items():
            files[(kind, name)] = relative

    documents: dict[str, Document] = {}
    failed_paths: set[tuple[str, str]] = set()
    models: dict[Kind, dict[str, Any]] = {kind: {} for kind in MODELS}
    for (kind, name), relative in files.items():
        document = _read(root, relative, problems)
        if document is None:
            continue
        documents[relative] = document
        model, found = validate(MODELS[kind], document)
        problems.extend(found)
        failed_paths.update((relative, _scope(p.keypath)) for p in found)
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
    )
    problems.extend(_resolvable(inventory, files, failed_paths))
    if problems:
        raise InventoryError(problems)
    return inventory


def _scope(keypath: str) -> str:
    """Return the part of a key path a problem spoils: ``components.app`` of a key below it."""
    return ".".join(keypath.split(".")[:2])


def _resolvable(
    inventory: Inventory, files: dict[tuple[Kind, str], str], failed: set[tuple[str, str]]
) -> list[Problem]:
    """Resolve references, leaving out what only follows from problems already reported.

    A file that failed to load is not reported again as an unknown name, and a reference next
    to a value that failed validation (in the same component, say) is not reported either.
    """
    unloaded = frozenset(
        name
        for (kind, name) in files
        if kind in ("host", "service")
        and name not in (inventory.hosts if kind == "host" else inventory.services)
    )
    return [
        p
        for p in resolve(inventory, unloaded)
        if (p.location.file, _scope(p.keypath)) not in failed
    ]
