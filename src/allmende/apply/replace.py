"""Make-before-break: a running service replaced with its new version started beside it first.

For a ``replace`` action (``plan.actions.replacement``: a changed service that may run twice,
routed by edges whose servers can be moved at run time), on the opened, locked host and its
opened edges:

1. ``start``: the new version's project file is written beside the service's own
   (``Engine.beside``) and brought up under a name of its own, every port published on a port
   the host picks; apply waits until it runs and is healthy;
2. on each edge whose HAProxy runs, each server of the service is checked to reach the new
   version from there (``plan.switch.tcp_wait``) and pointed at it at run time (``set server
   ... addr ... port``): new requests go to the new version, while the old one finishes
   what it has;
3. the service itself is brought up on its changed files (its old containers replaced) and
   waited for, as any ``up``;
4. ``back``: each server is pointed at the service's own ports again, as the new
   configuration has them, once they accept connections from the edge;
5. ``retire``, once every edge has reloaded: the version beside is brought down and its file
   removed.

A service that may not run twice (stop-first: it holds data) gets the other half of this:
before it is brought up, ``pause`` puts each of its servers on the edges in maintenance, so
that the edge answers with its maintenance page at once instead of sending requests to a
stopping container; once it runs and is healthy, ``back`` points each at the new
configuration's ports and makes it ready again.

Each server moved or paused is remembered with where it pointed before (``Moved``), so that
a rollback points it back and makes it ready; a reload of an edge makes its servers what its
configuration says anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from allmende.apply.proxy import ServerAt, point, server_at, set_state
from allmende.connectors.base import Connector
from allmende.engines.base import Beside, Driver
from allmende.errors import UserError
from allmende.inventory.inventory import Inventory
from allmende.plan.actions import components
from allmende.plan.changes import Action
from allmende.plan.switch import server_name, servers, split_address, tcp_wait
from allmende.render.haproxy_plan import Backend
from allmende.render.output import Rendered

#: How long an edge may take to reach a port that the engine says is up.
REACH_SECONDS = 30.0


@dataclass(frozen=True)
class Moved:
    """One edge server pointed elsewhere at run time, and where it pointed before."""

    edge: str
    service: str
    backend: str
    server: str
    before: ServerAt
    #: Put in maintenance (``pause``) rather than pointed at a version beside.
    paused: bool = False


@dataclass(frozen=True)
class Started:
    """A new version running beside its service (``Engine.beside``)."""

    host: str
    service: str
    beside: Beside


async def start(
    connector: Connector,
    driver: Driver,
    inventory: Inventory,
    action: Action,
    wanted: Mapping[str, Rendered],
) -> Started:
    """Steps 1 and 2 for the ``replace`` action's service on the (opened) host. Raise UserError
    if the new version does not come up healthy (it is left for ``retire`` to remove)."""
    service = action.subject
    project = wanted[driver.project_file(service)]
    beside = driver.beside(service, project.content)
    if beside is None:
        raise UserError(f"{connector.host}: {service} cannot be started beside itself")
    await connector.write_atomic(beside.path, beside.content, 0o600)
    started = Started(connector.host, service, beside)
    for command in beside.up:
        await connector.run(command, what=f"start {service} beside itself")
    await driver.wait_healthy(connector, beside.name, components(inventory, service))
    return started


async def published(
    connector: Connector, driver: Driver, started: Started
) -> dict[str, dict[int, int]]:
    """Return the ports the version beside publishes, by component: inside -> on the host."""
    running = (await driver.running(connector) or {}).get(started.beside.name)
    if running is None:
        raise UserError(f"{connector.host}: {started.beside.name} is not running")
    return {c: dict(p) for c, p in running.ports.items()}


def _port_inside(inventory: Inventory, backend: Backend, published_port: int | None) -> int | None:
    """Return the port inside the container of a backend's health check port (published as
    ``published_port``), or None when the checks use the server's own port."""
    if published_port is None:
        return None
    component = inventory.services[backend.service].components[backend.component]
    for name, published in component.publish.items():
        if published.port == published_port and name in component.ports:
            return component.ports[name]
    return None


async def switch(
    edges: Mapping[str, Connector],
    inventory: Inventory,
    started: Started,
    ports: Mapping[str, Mapping[int, int]],
    moved: list[Moved],
) -> None:
    """Step 2: point every server of the service on each edge at the version beside, once it
    reaches it. Each server moved is added to ``moved`` before it is moved."""
    for edge, backends in sorted(servers(inventory, started.service).items()):
        connector = edges.get(edge)
        if connector is None:  # not opened: it goes on sending to the old version
            continue
        for backend in backends:
            name = server_name(backend)
            before = await server_at(connector, backend.name, name)
            if before is None:  # no HAProxy runs there (yet): nothing is sent anywhere
                continue
            component = inventory.services[backend.service].components[backend.component]
            inside = component.ports[backend.port]
            mine = ports.get(backend.component, {})
            if inside not in mine:
                raise UserError(
                    f"{started.host}: {started.beside.name} publishes no port for "
                    f"{backend.component}.{backend.port}"
                )
            address, _ = split_address(backend.address)
            checked = _port_inside(inventory, backend, backend.health.port)
            to = ServerAt(address, mine[inside], mine.get(checked, 0) if checked else 0)
            await tcp_wait(connector, to.address, to.port, REACH_SECONDS)
            moved.append(Moved(edge, started.service, backend.name, name, before))
            await point(connector, backend.name, name, to)


async def pause(
    edges: Mapping[str, Connector], inventory: Inventory, service: str, moved: list[Moved]
) -> None:
    """Put every server of ``service`` on the (opened) edges whose HAProxy has it in
    maintenance, each added to ``moved`` before."""
    for edge, backends in sorted(servers(inventory, service).items()):
        connector = edges.get(edge)
        if connector is None:
            continue
        for backend in backends:
            name = server_name(backend)
            before = await server_at(connector, backend.name, name)
            if before is None:  # new on this edge, or no HAProxy runs there
                continue
            moved.append(Moved(edge, service, backend.name, name, before, paused=True))
            await set_state(connector, backend.name, name, "maint")


async def back(
    edges: Mapping[str, Connector], inventory: Inventory, service: str, moved: list[Moved]
) -> None:
    """Step 4: point each server moved for ``service`` at the service's own ports, as the new
    configuration names them, once they accept connections from the edge; make each paused
    one ready again."""
    planned = {
        (edge, b.name): b for edge, found in servers(inventory, service).items() for b in found
    }
    for entry in moved:
        backend = planned.get((entry.edge, entry.backend))
        if entry.service != service or backend is None:
            continue
        connector = edges[entry.edge]
        if backend.dns:  # HAProxy resolves it by name: nothing to point, its checks decide
            if entry.paused:
                await set_state(connector, entry.backend, entry.server, "ready")
            continue
        address, port = split_address(backend.address)
        to = ServerAt(address, port, backend.health.port or 0)
        await tcp_wait(connector, address, port, REACH_SECONDS)
        await point(connector, entry.backend, entry.server, to)
        if entry.paused:
            await set_state(connector, entry.backend, entry.server, "ready")


async def retire(connector: Connector, started: Started) -> None:
    """Step 5: bring the version beside down and remove its file. Raise UserError if it
    cannot be."""
    for command in started.beside.down:
        await connector.run(command, what=f"stop {started.beside.name}")
    await connector.remove(started.beside.path)


async def point_back(edges: Mapping[str, Connector], moved: list[Moved]) -> list[str]:
    """Point every server moved where it pointed before and make every paused one ready, the
    last first; return what could not be."""
    problems = []
    for entry in reversed(moved):
        connector = edges[entry.edge]
        try:
            now = await server_at(connector, entry.backend, entry.server)
            if not entry.paused or now != entry.before:  # a paused one may not have moved
                await point(connector, entry.backend, entry.server, entry.before)
            if entry.paused:
                await set_state(connector, entry.backend, entry.server, "ready")
        except UserError as exc:
            problems.append(str(exc))
    return problems
