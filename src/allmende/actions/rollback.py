"""The `rollback` verb: bring a service back to one of its snapshots (Incus keeps them).

``snapshots`` lists what a service's host keeps; ``rollback`` shows which snapshot each
component would go back to, asks, and goes back (``apply.snapshots.roll_back``) under the
host's apply lock, recording it in the state database like an apply.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from allmende.actions.apply import who
from allmende.actions.plan import Seams
from allmende.apply import snapshots as kept
from allmende.apply.lock import host_lock
from allmende.apply.snapshots import Rolled
from allmende.connectors.base import Connector
from allmende.engines import find_driver
from allmende.engines.base import Driver, Snapshot
from allmende.errors import UserError
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.inventory.validate import did_you_mean
from allmende.state.store import default_path, finish_apply, open_store, start_apply


def _service(inventory: Inventory, service: str) -> tuple[str, list[str]]:
    """Return the host and the components of ``service``. Raise UserError if it is unknown."""
    found = inventory.services.get(service)
    if found is None:
        hint = did_you_mean(service, inventory.services, "service")
        raise UserError(f"unknown service `{service}` ({hint})")
    return found.host, sorted(found.components)


async def _driver(inventory: Inventory, connector: Connector, host: str) -> Driver:
    model = inventory.hosts[host]
    driver = await find_driver(connector, model.engine, model.runtime)
    if driver is None:
        raise UserError(f"{host}: allmende drives no engine `{model.engine}` there")
    return driver


def snapshots(
    root: Path, env: Mapping[str, str], service: str, seams: Seams | None = None
) -> list[Snapshot]:
    """Return the snapshots of ``service``'s components, oldest first. Raise InventoryError or
    UserError (unknown service, an engine that keeps none, an unreachable host)."""
    inventory = load(root, env)
    host, components = _service(inventory, service)
    seams = seams or Seams()

    async def read() -> list[Snapshot]:
        async with seams.connect(inventory, host, env) as connector:
            driver = await _driver(inventory, connector, host)
            return await kept.snapshots(connector, driver, service, components)

    return asyncio.run(read())


def rollback(
    root: Path,
    env: Mapping[str, str],
    service: str,
    to: str | None,
    confirm: Callable[[str, Mapping[str, str]], bool],
    seams: Seams | None = None,
) -> Rolled | None:
    """Bring ``service`` back to the snapshot ``to`` (else each component's latest) once
    ``confirm(host, {component: snapshot})`` says yes; return what was done, or None when it
    was declined. Raise InventoryError or UserError (no such snapshot, a command failed, the
    host's apply lock is held)."""
    inventory = load(root, env)
    host, components = _service(inventory, service)
    seams = seams or Seams()
    user = who(env)

    async def go() -> Rolled | None:
        async with (
            seams.connect(inventory, host, env) as connector,
            host_lock(connector, user, os.getpid()),
        ):
            driver = await _driver(inventory, connector, host)
            found = await kept.snapshots(connector, driver, service, components)
            chosen = kept.choose(found, components, to)
            if not confirm(host, chosen):
                return None
            db = open_store(default_path(env))
            try:
                record = start_apply(
                    db,
                    who=user,
                    inventory=str(root.resolve()),
                    host=host,
                    checksum="rollback",
                    changes=[{"rollback": service, "to": chosen}],
                )
                try:
                    rolled = await kept.roll_back(connector, driver, service, components, to)
                except UserError as exc:
                    finish_apply(db, record, f"failed: {exc}")
                    raise
                finish_apply(db, record, "ok")
            finally:
                db.close()
            return rolled

    return asyncio.run(go())
