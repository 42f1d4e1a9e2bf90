"""Snapshots of a service's components on its host: list them, and go back to one.

The engine keeps the snapshots and says how (``Engine.list_snapshots``, ``snapshot``,
``restore``, ``forget``; Incus: ``incus snapshot``); this module decides which and in what
order, and runs the commands on the (opened, locked) host through ``Connector.run``:

* ``roll_back`` first takes a snapshot of every component (``before-rollback-<date>-<time>``,
  so that a rollback can itself be undone), then brings each component that has the chosen
  snapshot back to it: the one named ``to``, else each component's latest. Going back to a
  snapshot brings back its files and its configuration (a later apply shows what differs
  from the inventory then).

A backup that reads snapshots (``consistency: snapshot`` on an Incus host) takes its own, from
its job on the host: ``operations.instances``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from allmende.connectors.base import Connector
from allmende.engines.base import Driver, Snapshot
from allmende.errors import UserError

#: The start of the name of the snapshot taken before a rollback.
BEFORE_ROLLBACK = "before-rollback"


@dataclass(frozen=True)
class Rolled:
    """What a rollback did: the snapshot each component went back to, and the snapshot taken
    first (to undo the rollback with)."""

    service: str
    host: str
    restored: dict[str, str]
    kept: str


async def snapshots(
    connector: Connector, driver: Driver, service: str, components: Sequence[str]
) -> list[Snapshot]:
    """Return the snapshots of a service's components on the (opened) host, oldest first.
    Raise UserError where the engine keeps none or what it answers cannot be read."""
    commands = driver.engine.list_snapshots(driver.site, service, components)
    if not commands:
        raise UserError(
            f"{connector.host}: engine {driver.engine.name} keeps no snapshots of {service}"
        )
    outputs = {}
    for component, command in zip(components, commands, strict=True):
        outputs[component] = (await connector.run(command, what=f"snapshots of {service}")).stdout
    try:
        return driver.engine.parse_snapshots(driver.site, service, outputs)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(
            f"{connector.host}: cannot read the snapshots of {service}: {exc}"
        ) from None


def choose(found: Sequence[Snapshot], components: Sequence[str], to: str | None) -> dict[str, str]:
    """Return the snapshot each component goes back to: ``to`` where a component has it, else
    its latest. Raise UserError if there is none to go back to."""
    chosen: dict[str, str] = {}
    for component in components:
        own = [s for s in found if s.component == component]
        if to is None and own:
            chosen[component] = own[-1].name
        elif any(s.name == to for s in own):
            chosen[component] = str(to)
    if not chosen:
        names = sorted({s.name for s in found})
        known = f"it has {', '.join(names)}" if names else "it has none yet"
        wanted = f"no snapshot {to}" if to else "no snapshot"
        raise UserError(f"{wanted} to go back to ({known})")
    return chosen


async def _run(connector: Connector, commands: Sequence[Sequence[str]], what: str) -> None:
    for command in commands:
        await connector.run(command, what=what)


async def roll_back(
    connector: Connector,
    driver: Driver,
    service: str,
    components: Sequence[str],
    to: str | None = None,
) -> Rolled:
    """Bring a service's components back to the snapshot ``to`` (else each one's latest), after
    taking ``before-rollback-<date>-<time>`` of each. Raise UserError if there is no such
    snapshot, or a command fails."""
    chosen = choose(await snapshots(connector, driver, service, components), components, to)
    kept = f"{BEFORE_ROLLBACK}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    engine, site = driver.engine, driver.site
    for component in chosen:
        await _run(
            connector, engine.snapshot(site, service, component, kept), f"rollback {service}"
        )
    for component, name in sorted(chosen.items()):
        await _run(connector, engine.restore(site, service, component, name), f"rollback {service}")
    return Rolled(service, connector.host, chosen, kept)
