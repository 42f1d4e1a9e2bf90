"""What apply will do on each host after writing its files: the plan's actions.

Engine actions come from the host's engine (``allmende.engines``): a service is brought ``up``
when any of its files changes, when the engine shows it is not running (a container exited, a
component is missing), or when the apply that wrote its files did not finish, so that an apply
after a crash or a killed apply converges; a service whose project file is deleted is brought
``down`` first. Services that provide databases come before the services that use them. The
commands are the engine's, always argument lists run on the host itself. A host whose engine
allmende cannot drive gets its files and no engine actions.

Besides the engine: HAProxy is started where it is wanted and no master answers on its master
socket, or reloaded when its files change; systemd is reloaded (and timers enabled or disabled)
when units change on a host that runs systemd; Borg and python3 are installed where a host
backs something up and lacks them (``plan.backuptools``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import PurePosixPath

from allmende.connectors.base import Connector
from allmende.engines import find_driver
from allmende.engines.base import Driver, Running
from allmende.inventory.hostpaths import (
    HAPROXY_PATHS,
    PROXY_FILES,
    SYSTEMD_RUNNING,
    UNITS,
    service_of,
)
from allmende.inventory.inventory import Inventory
from allmende.plan.backuptools import install_actions
from allmende.plan.changes import Action, Change, sha256
from allmende.plan.deliver import secret_names
from allmende.plan.observe import manifest_hashes
from allmende.plan.proxy import show_proc
from allmende.render.output import Rendered

log = logging.getLogger(__name__)


def order(inventory: Inventory, services: Sequence[str]) -> list[str]:
    """Return ``services`` with every database provider before the services that use it,
    else by name."""
    rank: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in rank:
            return rank[name]
        service = inventory.services.get(name)
        providers = [] if service is None else [u.database.split("/")[0] for u in service.uses]
        level = 0
        for provider in providers:
            if provider in inventory.services and provider not in seen:
                level = max(level, depth(provider, seen | {name}) + 1)
        rank[name] = level
        return level

    return sorted(services, key=lambda s: (depth(s), s))


def components(inventory: Inventory, service: str) -> list[str]:
    """Return the components of ``service`` that run as containers (those with an image)."""
    return [n for n, c in inventory.services[service].components.items() if c.image is not None]


def is_project(driver: Driver, path: str) -> bool:
    """Return whether ``path`` is the project file of a service on the driver's engine."""
    service = service_of(path)
    return service is not None and path == driver.project_file(service)


def engine_actions(
    inventory: Inventory,
    host: str,
    driver: Driver,
    changes: Sequence[Change],
    wanted: Mapping[str, object],
    running: Mapping[str, Running] | None,
    unfinished: Collection[str] = (),
) -> list[Action]:
    """Return the engine actions on ``host``: ``down`` for services whose project file goes,
    then ``up`` (providers first) for services whose files change, that do not run, or whose
    last apply did not finish (``unfinished``: their files are not as the manifest records)."""
    changed = {service_of(c.path) for c in changes}
    deleted = {
        service_of(c.path) for c in changes if c.kind == "delete" and is_project(driver, c.path)
    }
    actions = [
        Action(host, "down", s, "removed from the inventory", driver.down(s))
        for s in sorted(x for x in deleted if x)
    ]
    here = [
        s for s in order(inventory, list(inventory.services)) if driver.project_file(s) in wanted
    ]
    for service in here:
        if service in changed:
            reason = "its files change"
        elif service in unfinished:
            reason = "the apply that wrote its files did not finish"
        elif running is not None:
            missing = running.get(service, Running()).missing(components(inventory, service))
            if not missing:
                continue
            reason = "not running: " + ", ".join(missing)
        else:
            continue
        secrets = sorted(secret_names(inventory, service))
        actions.append(Action(host, "up", service, reason, driver.up(service, secrets)))
    return actions


def host_actions(
    host: str,
    changes: Sequence[Change],
    wanted: Mapping[str, object],
    proxy_running: bool | None,
    systemd: bool,
) -> list[Action]:
    """Return the proxy and systemd actions on ``host``: start HAProxy where it is wanted and
    no master answers, reload it when its files change; reload systemd when units change on
    a host that runs systemd."""
    actions: list[Action] = []
    if PROXY_FILES[0] in wanted:
        if proxy_running is False:
            actions.append(Action(host, "start-proxy", "haproxy", "no HAProxy master answers"))
        elif any(c.path in PROXY_FILES for c in changes):
            actions.append(Action(host, "reload-proxy", "haproxy", "its configuration changes"))
    units = sorted(PurePosixPath(c.path).name for c in changes if c.path.startswith(UNITS))
    if units and systemd:
        timers = tuple(
            PurePosixPath(p).name
            for p in sorted(wanted)
            if p.startswith(UNITS) and p.endswith(".timer")
        )
        gone = tuple(
            PurePosixPath(c.path).name
            for c in changes
            if c.kind == "delete" and c.path.startswith(UNITS) and c.path.endswith(".timer")
        )
        if gone:  # a "down": run before the unit files go
            disable = (("systemctl", "disable", "--now", *gone),)
            actions.append(Action(host, "down", "timers", "their services left", disable))
        commands: tuple[tuple[str, ...], ...] = (("systemctl", "daemon-reload"),)
        if timers:
            commands += (("systemctl", "enable", "--now", *timers),)
        actions.append(
            Action(host, "reload-systemd", "units", "units change: " + ", ".join(units), commands)
        )
    return actions


def unrecorded(manifest: bytes | None, host: str, wanted: Mapping[str, Rendered]) -> set[str]:
    """Return the services with a file whose wanted hash is not the one the manifest records
    (apply writes the manifest last: such a service's files may be in place while the apply
    that wrote them died before bringing it up). A host without a manifest has none."""
    if manifest is None:
        return set()
    recorded = manifest_hashes(manifest, host)
    return {
        service
        for path, rendered in wanted.items()
        if (service := service_of(path)) and recorded.get(path) != sha256(rendered.content)
    }


async def has_systemd(connector: Connector) -> bool:
    """Return whether the host runs systemd (``/run/systemd/system`` exists there)."""
    return await connector.succeeds(["test", "-d", SYSTEMD_RUNNING])


async def plan_actions(
    connector: Connector,
    inventory: Inventory,
    changes: Sequence[Change],
    wanted: Mapping[str, Rendered],
    manifest: bytes | None,
    service: str | None = None,
) -> list[Action]:
    """Return every action apply takes on the (opened) host after its file ``changes``,
    reading the engine and the proxy where they matter (only ``service``'s if given); the
    host's ``manifest`` tells which services an unfinished apply left. Raise UserError if the
    engine cannot be asked."""
    host = connector.host
    model = inventory.hosts[host]
    driver = await find_driver(connector, model.engine, model.runtime)
    actions: list[Action] = []
    if driver is not None:
        projects = [p for p in wanted if is_project(driver, p)]
        leaving = [c for c in changes if c.kind == "delete" and service_of(c.path)]
        running = await driver.running(connector) if projects or leaving else None
        unfinished = unrecorded(manifest, host, wanted)
        actions += engine_actions(inventory, host, driver, changes, wanted, running, unfinished)
    if service is not None:
        return [a for a in actions if a.subject == service]
    proxy: bool | None = None
    if PROXY_FILES[0] in wanted:
        proxy = await show_proc(connector, HAPROXY_PATHS) is not None
    systemd = any(c.path.startswith(UNITS) for c in changes) and await has_systemd(connector)
    tools = await install_actions(connector, wanted)
    return tools + actions + host_actions(host, changes, wanted, proxy, systemd)
