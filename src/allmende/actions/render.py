"""The `render` verb: the files every host needs, written as a tree under one directory."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path, PurePosixPath

from allmende.actions import tree
from allmende.errors import UserError
from allmende.inventory.atomic import file_error
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.inventory.validate import did_you_mean
from allmende.render import dns
from allmende.render.output import Rendered
from allmende.render.targets import TARGETS, left_out, render_all
from allmende.state import store
from allmende.state.store import ZoneSerial

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


def _zone(path: str) -> str | None:
    """Return the zone a rendered path is the file of (``dns/<zone>.zone``), else None."""
    parts = PurePosixPath(path)
    if parts.parent != PurePosixPath("dns") or parts.suffix != ".zone":
        return None
    return parts.stem


def previous_zones(out: Path) -> dict[str, bytes]:
    """Return the zone files of the previous rendering under ``out`` that have an SOA serial,
    by zone. Raise UserError if one cannot be read."""
    directory = out / "dns"
    found: dict[str, bytes] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.zone")):
        try:
            data = path.read_bytes() if path.is_file() else b""
        except OSError as exc:
            raise file_error("read the previous", path, exc) from None
        if dns.serial(data) is not None:
            found[path.stem] = data
    return found


def _latest(known: list[tuple[int, str]]) -> ZoneSerial:
    """Return the highest of the known serials, with the hash of its zone, or an empty hash
    (which no zone has) when zones with different content were given that serial."""
    highest = max(number for number, _ in known)
    hashes = {digest for number, digest in known if number == highest}
    return ZoneSerial(highest, hashes.pop() if len(hashes) == 1 else "")


def carry_serials(
    out: Path, contents: Mapping[str, bytes], state: Path, inventory: str
) -> dict[str, bytes]:
    """Return ``contents`` with every zone file (``dns/<zone>.zone``) given its serial, and
    record the serials in the state database at ``state`` under ``inventory``.

    What is known of a zone is its serial in the state database and in the previous rendering
    under ``out``; the serial is the highest of them while nothing else in the zone changed,
    the one after it when something did (``dns.serial_for``), 1 when neither knows the zone.
    A zone in ``out`` that is not rendered this time (a render of one host, service or target,
    or a zone gone from the inventory) is recorded all the same before its file goes, so that
    the next render continues from its serial. Raise UserError if a previous zone file cannot
    be read or the state database cannot be opened or written.
    """
    result = dict(contents)
    fresh = {zone: path for path in contents if (zone := _zone(path)) is not None}
    previous = previous_zones(out)
    if not fresh and not previous:
        return result
    with closing(store.open_store(state)) as db:
        try:
            db.execute("BEGIN IMMEDIATE")
            recorded = store.zone_serials(db, inventory)
            for zone in sorted(fresh.keys() | previous.keys()):
                known = [(r.serial, r.content) for r in [recorded.get(zone)] if r is not None]
                if zone in previous:
                    before = previous[zone]
                    known.append((dns.serial(before) or 0, dns.content_hash(before)))
                if zone in fresh:
                    data = contents[fresh[zone]]
                    number = dns.serial_for(data, known)
                    result[fresh[zone]] = dns.set_serial(data, number)
                    latest = ZoneSerial(number, dns.content_hash(data))
                else:
                    latest = _latest(known)
                if recorded.get(zone) != latest:
                    store.record_zone_serial(db, inventory, zone, latest)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise UserError(f"cannot record the zone serials in {state}: {exc}") from None
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

    Zone files keep their last serial, as the state database (``store.default_path(env)``)
    or else the previous rendering in ``out`` knows it, while their content stays the same,
    and get the next one when it changes (``carry_serials``); a managed domain that cannot make
    a zone is logged as a warning with what to do. Return the relative paths written. Raise
    InventoryError if the inventory does not load and UserError for an unknown host or service,
    an ``out`` that is not a rendered tree or a state database that cannot be used.
    """
    inventory = load(root, env)
    files = select(inventory, render_all(inventory, targets), host, service)
    if "dns" in targets:
        for zone, reason in sorted(dns.skipped(inventory).items()):
            log.warning("no zone file for %s: %s [dns.zonefile]", zone, reason)
    for name, services in left_out(inventory, targets).items():
        if host is None or name == host:
            engine = inventory.hosts[name].engine
            log.warning(
                "%s on %s: not rendered, allmende cannot render engine %s yet [engines.rendered]",
                ", ".join(services),
                name,
                engine,
            )
    out = tree.target(out)
    with tree.locked(out, "rendered tree"):
        tree.refuse_foreign(out, MARKER, "rendered tree")
        contents = carry_serials(
            out,
            {path: f.content for path, f in files.items()},
            store.default_path(env),
            str(root.resolve()),
        )
        contents[MARKER] = MARKER_TEXT.encode()
        tree.publish(out, contents, {p: f.mode for p, f in files.items()}, what="rendered tree")
    return sorted(files)
