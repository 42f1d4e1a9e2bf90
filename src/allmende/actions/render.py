"""The `render` verb: the files every host needs, written as a tree under one directory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from allmende.actions import tree
from allmende.errors import UserError
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.inventory.validate import did_you_mean
from allmende.render.output import Rendered
from allmende.render.targets import TARGETS, render_all

MARKER = ".allmende-render"
MARKER_TEXT = "Rendered by allmende from an inventory; replaced as a whole on every render.\n"


def select(
    inventory: Inventory,
    files: Mapping[str, Rendered],
    host: str | None = None,
    service: str | None = None,
) -> dict[str, Rendered]:
    """Keep the files of one host (paths under ``<host>/``) and/or of one service (those
    rendered from its file). Raise UserError for an unknown host or service."""
    if host is not None and host not in inventory.hosts:
        raise UserError(f"unknown host `{host}` ({did_you_mean(host, inventory.hosts, 'host')})")
    if service is not None and service not in inventory.services:
        hint = did_you_mean(service, inventory.services, "service")
        raise UserError(f"unknown service `{service}` ({hint})")
    chosen = dict(files)
    if host is not None:
        chosen = {p: f for p, f in chosen.items() if p.startswith(f"{host}/")}
    if service is not None:
        source = inventory.file("service", service)
        chosen = {p: f for p, f in chosen.items() if source in f.sources}
    return chosen


def render(
    root: Path,
    out: Path,
    env: Mapping[str, str],
    host: str | None = None,
    service: str | None = None,
    targets: tuple[str, ...] = TARGETS,
) -> list[str]:
    """Load the inventory, render every target and write the files under ``out`` atomically.

    Return the relative paths written. Raise InventoryError if the inventory does not load and
    UserError for an unknown host or service or an ``out`` that is not a rendered tree.
    """
    inventory = load(root, env)
    files = select(inventory, render_all(inventory, targets), host, service)
    out = tree.target(out)
    tree.refuse_foreign(out, MARKER, "rendered tree")
    contents = {path: f.content for path, f in files.items()}
    contents[MARKER] = MARKER_TEXT.encode()
    tree.publish(out, contents, {p: f.mode for p, f in files.items()}, what="rendered tree")
    return sorted(files)
