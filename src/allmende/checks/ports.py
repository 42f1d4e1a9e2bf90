"""Ports: every published host port and every edge port is used once per host."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from allmende.checks.registry import Context, Finding, rule
from allmende.inventory import derive
from allmende.inventory.inventory import Inventory
from allmende.inventory.yamlpos import KeyPath


@dataclass(frozen=True)
class PortUse:
    """One use of a port on a host: by whom, and where it is written."""

    host: str
    port: int
    protocol: str
    service: str | None
    path: KeyPath
    what: str
    #: the one address it listens on, when the inventory names one (None: the host's)
    bind: str | None = None


def clash(one: PortUse, other: PortUse) -> bool:
    """Whether two uses of a port on a host cannot both listen: unless each names another
    address of its own (``127.0.0.1:80`` and ``192.0.2.10:80`` are two sockets)."""
    specific = (one.bind, other.bind)
    if None in specific or any(b in derive.EVERY_INTERFACE for b in specific):
        return True
    return one.bind == other.bind


def published(inventory: Inventory) -> Iterator[PortUse]:
    """Yield every port published on a host's address by a service running there."""
    for name, service in sorted(inventory.services.items()):
        for cname, component in service.components.items():
            for port_name, port in component.publish.items():
                yield PortUse(
                    service.host,
                    port.port,
                    "tcp",
                    name,
                    ("components", cname, "publish", port_name),
                    f"{name}/{cname}.{port_name}",
                    port.bind,
                )


def edge(inventory: Inventory) -> Iterator[PortUse]:
    """Yield every port the proxy listens on, per edge host: 80/443 for routes, and exposes."""
    for host in derive.edge_hosts(inventory):
        served = derive.served_by(inventory, host)
        edge = inventory.collective.edge
        ports = (edge.http_port, edge.https_port) if edge is not None else (80, 443)
        if any(inventory.services[name].routes for name in served):
            for port in ports:
                yield PortUse(host, port, "tcp", None, (), "the proxy (HTTP and HTTPS routes)")
        for name in served:
            for i, expose in enumerate(inventory.services[name].expose):
                yield PortUse(
                    host,
                    expose.port,
                    expose.protocol,
                    name,
                    ("expose", i, "port"),
                    f"{name} (expose {expose.to})",
                )


@rule(
    "ports.unique",
    "error",
    "Two programs cannot listen on the same port of one host; a collision breaks both, "
    "and often only when a service moves.",
    "pick a free port; the port registry in the docs lists the used ones",
)
def ports_unique(ctx: Context) -> Iterator[Finding]:
    inv = ctx.inventory
    groups: dict[tuple[str, int, str], list[PortUse]] = {}
    for use in [*edge(inv), *published(inv)]:
        groups.setdefault((use.host, use.port, use.protocol), []).append(use)
    for (host, port, protocol), uses in sorted(groups.items()):
        if len(uses) < 2:
            continue
        for use in uses:
            if use.service is None:
                continue
            others = []
            for other in uses:
                if other is use or not clash(use, other):
                    continue
                if other.service is None:
                    others.append(f"{other.what} (on every edge host)")
                else:
                    where = inv.where("service", other.service, other.path)
                    others.append(f"{other.what} ({where})")
            if others:
                yield ctx.finding(
                    "service",
                    use.service,
                    use.path,
                    f"{protocol} port {port} on host `{host}` is also used by {', '.join(others)}",
                )


@rule(
    "ports.bind",
    "error",
    "A port listens on every interface only when the inventory says so: a host reached by a "
    "name publishes on 127.0.0.1 until `bind` says which of its addresses to use, so that a "
    "typo never puts a database on the internet.",
    "add `bind: <the host's IP>` to the host (`0.0.0.0` for every interface)",
    force=True,
)
def ports_bind(ctx: Context) -> Iterator[Finding]:
    inv = ctx.inventory
    publishing = {
        s.host
        for s in inv.services.values()
        for c in s.components.values()
        for p in c.publish.values()
        if p.bind is None
    }
    for name, host in sorted(inv.hosts.items()):
        if name not in publishing:
            continue
        if host.engine == "swarm" and host.bind not in derive.EVERY_INTERFACE:
            yield ctx.finding(
                "host",
                name,
                ("bind",) if host.bind is not None else ("engine",),
                "a swarm publishes ports on every interface of every node, and this host does "
                "not say so: its ports are not published",
                "add `bind: 0.0.0.0` to the host",
            )
        elif derive.bind_unsaid(host):
            yield ctx.finding(
                "host",
                name,
                ("address",),
                f"`{name}` is reached by the name `{host.address}` and publishes ports: they "
                "listen on 127.0.0.1 only",
            )
