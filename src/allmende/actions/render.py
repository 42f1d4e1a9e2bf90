"""The `render` verb: the files every host needs, written as a tree under one directory."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from allmende.actions import tree
from allmende.errors import UserError
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.inventory.validate import did_you_mean
from allmende.render import dns
from allmende.render.output import Rendered
from allmende.render.targets import TARGETS, render_all

MARKER = ".allmende-render"
MARKER_TEXT = "Rendered by allmende from an inventory; replaced as a whole on every render.\n"

log = logging.getLogger(__name__)


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


def carry_serials(out: Path, contents: Mapping[str, bytes]) -> dict[str, bytes]:
    """Return ``contents`` with every zone file (``dns/*.zone``) given the serial that follows
    from the same file in the previous rendering under ``out`` (``dns.with_serial``): unchanged
    while nothing else in the zone changed, one more when something did."""
    result = dict(contents)
    for name, data in contents.items():
        path = PurePosixPath(name)
        if path.parent != PurePosixPath("dns") or path.suffix != ".zone":
            continue
        previous = out.joinpath(*path.parts)
        try:
            before = previous.read_bytes() if previous.is_file() else None
        except OSError as exc:
            raise UserError(f"cannot read the previous {previous}: {exc.strerror}") from None
        result[name] = dns.with_serial(data, before)
    return result


def render(
    root: Path,
    out: Path,
    env: Mapping[str, str],
    host: str | None = None,
    service: str | None = None,
    targets: tuple[str, ...] = TARGETS,
) -> list[str]:
    """Load the inventory, render every target and write the files under ``out`` atomically.

    Zone files keep the serial of the previous rendering in ``out`` while their content stays
    the same, and get the next one when it changes (``carry_serials``); a managed domain that
    cannot make a zone is logged as a warning with what to do. Return the relative paths
    written. Raise InventoryError if the inventory does not load and UserError for an unknown
    host or service or an ``out`` that is not a rendered tree.
    """
    inventory = load(root, env)
    files = select(inventory, render_all(inventory, targets), host, service)
    if "dns" in targets:
        for zone, reason in sorted(dns.skipped(inventory).items()):
            log.warning("no zone file for %s: %s", zone, reason)
    out = tree.target(out)
    tree.refuse_foreign(out, MARKER, "rendered tree")
    contents = carry_serials(out, {path: f.content for path, f in files.items()})
    contents[MARKER] = MARKER_TEXT.encode()
    tree.publish(out, contents, {p: f.mode for p, f in files.items()}, what="rendered tree")
    return sorted(files)
