"""The loaded inventory: every model, and where in which file each of them was written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from allmende.errors import Location
from allmende.inventory.models import Collective, Host, Service, Zone
from allmende.inventory.typed import typed
from allmende.inventory.yamlpos import Document, KeyPath

Kind = Literal["collective", "host", "service", "zone"]
COLLECTIVE_FILE = "allmende.yaml"
DIRECTORIES: dict[Kind, str] = {"host": "hosts", "service": "services", "zone": "zones"}


@dataclass(frozen=True)
class Inventory:
    """A whole inventory, loaded and with every reference resolved.

    ``files[(kind, name)]`` is the file (relative to ``root``) a model came from and
    ``documents[file]`` holds the positions of every key in it. ``skipped`` names the entries
    of ``hosts/``, ``services/`` and ``zones/`` that were not read, and why (a FIFO, a device,
    a directory named like a file): the check ``inventory.skipped`` reports them.
    ``carried`` holds the configuration files the components carry (``files/<service>/...``)
    by ``<service>/<path>`` (``inventory.carried``); ``executable`` names those whose file in
    the inventory has an executable bit, which every engine hands over executable.
    """

    root: Path
    collective: Collective
    hosts: Mapping[str, Host]
    services: Mapping[str, Service]
    zones: Mapping[str, Zone]
    secrets: frozenset[str]
    files: Mapping[tuple[Kind, str], str]
    documents: Mapping[str, Document]
    skipped: Mapping[str, str] = field(default_factory=dict)
    carried: Mapping[str, bytes] = field(default_factory=dict)
    executable: frozenset[str] = frozenset()

    def file(self, kind: Kind, name: str = "") -> str:
        """Return the file, relative to the root, that defines the named host, service, ..."""
        if kind == "collective":
            return COLLECTIVE_FILE
        return self.files[(kind, name)]

    def command(self, *words: str) -> str:
        """Return the allmende command line of ``words`` on this inventory, as it must be typed
        in the current directory (see ``typed``)."""
        return typed(self.root, *words)

    def where(
        self, kind: Kind, name: str = "", path: KeyPath = (), *, key: bool = False
    ) -> Location:
        """Return the location of ``path`` inside the file of the named host, service, ...."""
        file = self.file(kind, name)
        document = self.documents.get(file)
        if document is None:
            return Location(file)
        return document.locate(path, key=key)
