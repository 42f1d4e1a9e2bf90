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
when units change on a host that runs systemd, and the watcher restarted (last) when its plan
or unit changes on its host (where the host does not run systemd, a note says how to start it
by hand); Borg and python3 are installed where a host backs something up and
lacks them, python3-acme where an edge renews its certificates (``plan.backuptools``); the
watch host's key is authorized where it asks how fresh the backups are (``plan.watchkeys``).
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Collection, Mapping, Sequence
from pathlib import PurePosixPath

from allmende.connectors.base import Connector
from allmende.engines import find_driver
from allmende.engines.base import Driver, Running
from allmende.inventory import derive
from allmende.inventory.hostpaths import (
    PROXY_FILES,
    SYSTEMD_RUNNING,
    UNITS,
    WATCH_PLAN,
    WATCH_UNIT,
    service_of,
    unit_file,
)
from allmende.inventory.inventory import Inventory
from allmende.inventory.models import seconds
from allmende.plan.backuptools import install_actions
from allmende.plan.changes import Action, Change, Verb, sensitive, sha256
from allmende.plan.databases import database_actions
from allmende.plan.deliver import secret_names
from allmende.plan.images import not_driven, pull_actions
from allmende.plan.observe import Recorded, manifest_hashes
from allmende.plan.proxy import proxy_paths, show_proc
from allmende.plan.steps import converge, converged, owned, prepare_actions
from allmende.plan.switch import switchable
from allmende.plan.watchkeys import authorize_actions
from allmende.render.output import Rendered
from allmende.render.watch import WATCH_COMMAND

log = logging.getLogger(__name__)

#: How long the edge's checks may take to see a server back (two checks, 2 s apart).
WINDOW_CHECKS = 4.0


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
        step = converge(driver, service, wanted, running)
        if step is not None:  # the engine judges for itself
            actions += converged(host, service, step)
            continue
        changed_files = service in changed or service in unfinished
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
        commands = (
            driver.recreate(service, secrets) if changed_files else driver.up(service, secrets)
        )
        shown = (running or {}).get(service)
        serving = shown is not None and not shown.missing(components(inventory, service))
        verb, reason = replacement(inventory, driver, service, wanted, reason, serving)
        actions.append(Action(host, verb, service, reason, commands))
    return actions


def downtime(inventory: Inventory, service: str) -> float:
    """Return the longest a stop-first replacement of the service leaves its routes without a
    server, in seconds: until every component's health check may pass (its start period),
    plus the edge's checks noticing (two at 2 s)."""
    periods = [
        seconds(c.healthcheck.start_period) if c.healthcheck is not None else 0.0
        for c in inventory.services[service].components.values()
    ]
    return max(periods, default=0.0) + WINDOW_CHECKS


def replacement(
    inventory: Inventory,
    driver: Driver,
    service: str,
    wanted: Mapping[str, object],
    reason: str,
    serving: bool,
) -> tuple[Verb, str]:
    """Return how a changed, running, routed service is replaced, said in the reason:
    ``replace`` (start-first: its new version beside the old until the edge sends to it) or
    ``up`` (stop-first, with the window its routes are down, the edge showing its maintenance
    page meanwhile). Anything else is brought ``up`` with ``reason`` as it is."""
    if not serving or not switchable(inventory, service) or reason != "its files change":
        return "up", reason
    project = wanted.get(driver.project_file(service))
    beside = driver.beside(service, project.content) if isinstance(project, Rendered) else None
    if beside is None:  # the engine replaces it in its own way (or cannot run two)
        return "up", reason
    model = inventory.services[service]
    if derive.update_order(model) == "start-first":
        return "replace", (
            f"{reason}; start-first: the new version runs beside the old as {beside.name} "
            "until the edge sends to it, no downtime"
        )
    why = "its `update` says so" if model.update == "stop-first" else "it holds data"
    return "up", (
        f"{reason}; stop-first ({why}): its routes are down from its stop until it is "
        f"healthy, at most {downtime(inventory, service):.0f} s, the edge showing a "
        "maintenance page"
    )


def after_providers(actions: Sequence[Action], provisions: Sequence[Action]) -> list[Action]:
    """Return ``actions`` with each ``provision`` (and note) of a provider right after the
    ``up`` of that provider, or before the first ``up`` when the provider is not brought up."""
    result = list(actions)
    for provision in provisions:
        ups = [i for i, a in enumerate(result) if a.verb in ("up", "replace")]
        mine = [i for i in ups if result[i].subject == provision.subject]
        at = mine[-1] + 1 if mine else (ups[0] if ups else len(result))
        while at < len(result) and result[at].subject == provision.subject:
            at += 1
        result.insert(at, provision)
    return result


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
            if c.kind == "delete"
            and c.path.startswith(UNITS)
            and (c.path.endswith(".timer") or c.path == unit_file(WATCH_UNIT))
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
    return actions + watcher_actions(host, changes, wanted, systemd)


def watcher_actions(
    host: str, changes: Sequence[Change], wanted: Mapping[str, object], systemd: bool
) -> list[Action]:
    """Return the action that (re)starts the watcher on its host when its plan or unit
    changes: run by apply last, once everything it watches is up. On a host that does not
    run systemd, a note that says how to start it by hand instead."""
    watched = (WATCH_PLAN, unit_file(WATCH_UNIT))
    if watched[1] not in wanted:
        return []
    if not any(c.path in watched and c.kind != "delete" for c in changes):
        return []
    if not systemd:
        by_hand = " ".join(shlex.quote(word) for word in WATCH_COMMAND)
        said = (
            f"{host} does not run systemd, so nothing starts the watcher there: run "
            f"`{by_hand}` on {host} (it stops on Ctrl-C or SIGTERM), and again after an "
            "apply that changes its plan"
        )
        return [Action(host, "note", "watch", said)]
    commands = (("systemctl", "enable", WATCH_UNIT), ("systemctl", "restart", WATCH_UNIT))
    return [Action(host, "restart", "watch", "its plan or unit changes", commands)]


def unrecorded(recorded: Recorded | None, host: str, wanted: Mapping[str, Rendered]) -> set[str]:
    """Return the services with a file whose wanted hash is not the one the manifest records
    (apply writes the manifest last: such a service's files may be in place while the apply
    that wrote them died before bringing it up). A host without a manifest has none."""
    if recorded is None or recorded.manifest is None:
        return set()
    hashes = manifest_hashes(recorded.manifest, host)
    key = recorded.key
    return {
        service
        for path, rendered in wanted.items()
        if (service := service_of(path))
        and hashes.get(path) != key.shown(sha256(rendered.content), sensitive(path, rendered.mode))
    }


async def has_systemd(connector: Connector) -> bool:
    """Return whether the host runs systemd (``/run/systemd/system`` exists there)."""
    return await connector.succeeds(["test", "-d", connector.real(SYSTEMD_RUNNING)])


async def plan_actions(
    connector: Connector,
    inventory: Inventory,
    changes: Sequence[Change],
    wanted: Mapping[str, Rendered],
    recorded: Recorded | None,
    service: str | None = None,
    passwords: Mapping[str, bytes] | None = None,
) -> list[Action]:
    """Return every action apply takes on the (opened) host besides its file ``changes``,
    in the order apply takes them: images pulled, services down, then up (each database
    provider provisioned right after it is up, with ``passwords``, the values of its roles'
    secrets), then the proxy and systemd; reading the engine, the databases and the proxy
    where they matter (only ``service``'s if given). The host's manifest (``recorded``) tells
    which services an unfinished apply left. Raise UserError if the engine cannot be asked."""
    host = connector.host
    model = inventory.hosts[host]
    driver = await find_driver(connector, model.engine, model.runtime)
    if driver is None:
        actions = not_driven(inventory, host, model.engine)
    else:
        projects = [p for p in wanted if is_project(driver, p)]
        leaving = [c for c in changes if c.kind == "delete" and service_of(c.path)]
        own = owned(driver, changes, wanted)
        running = await driver.running(connector) if projects or leaving or own else None
        unfinished = unrecorded(recorded, host, wanted)
        actions = prepare_actions(host, driver, changes, wanted, running)
        actions += engine_actions(inventory, host, driver, changes, wanted, running, unfinished)
        provisions = await database_actions(connector, driver, inventory, running, passwords or {})
        pulls = await pull_actions(connector, driver, inventory, actions)
        actions = pulls + after_providers(actions, provisions)
    if service is not None:
        return [a for a in actions if a.subject == service]
    proxy: bool | None = None
    if PROXY_FILES[0] in wanted:
        proxy = await show_proc(connector, proxy_paths(connector)) is not None
    systemd = any(
        c.path.startswith(UNITS) or c.path == WATCH_PLAN for c in changes
    ) and await has_systemd(connector)
    tools = await install_actions(connector, wanted)
    keys = await authorize_actions(connector, inventory, changes, wanted)
    return tools + actions + keys + host_actions(host, changes, wanted, proxy, systemd)
