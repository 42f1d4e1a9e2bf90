"""Host pages and the port registry (every port in use, per host, with who uses it)."""

from __future__ import annotations

from dataclasses import dataclass

from allmende.inventory import derive
from allmende.render.docs.blocks import (
    Block,
    Code,
    Facts,
    Line,
    Link,
    Page,
    Para,
    Section,
    Sub,
    Table,
    Text,
    joined,
    line,
)
from allmende.render.docs.context import Context, host_link, service_link

HTTP_USE = "HTTP: routes, redirects to HTTPS, ACME http-01"
HTTPS_USE = "HTTPS: routes (TLS terminated or passed through by name)"


def edge_ports(context: Context) -> tuple[tuple[int, str, str], ...]:
    """Return the ports the edge proxy listens on for routes: (port, protocol, what for)."""
    edge = context.inventory.collective.edge
    http, https = (edge.http_port, edge.https_port) if edge is not None else (80, 443)
    return ((http, "tcp", HTTP_USE), (https, "tcp", HTTPS_USE))


@dataclass(frozen=True, order=True)
class PortUse:
    """One port in use on a host: published by a component, or opened by the edge proxy."""

    port: int
    protocol: str
    service: str
    target: str
    inside: str
    how: str


def port_uses(context: Context) -> dict[str, list[PortUse]]:
    """Return, for every host, the ports in use on it, sorted by port."""
    uses: dict[str, list[PortUse]] = {h: [] for h in context.inventory.hosts}
    for name, service in sorted(context.inventory.services.items()):
        for cname, component in sorted(service.components.items()):
            for pname, published in sorted(component.publish.items()):
                inside = component.ports.get(pname)
                uses.setdefault(service.host, []).append(
                    PortUse(
                        published.port,
                        "tcp",
                        name,
                        f"{cname}.{pname}",
                        str(inside or ""),
                        "published",
                    )
                )
    for edge in context.edges:
        served = derive.served_by(context.inventory, edge)
        routes = sorted({r.domain for n in served for r in context.inventory.services[n].routes})
        for port, protocol, _ in edge_ports(context):
            uses.setdefault(edge, []).append(
                PortUse(port, protocol, "", ", ".join(routes), "", "edge")
            )
        for name in served:
            service = context.inventory.services[name]
            for expose in service.expose:
                cname, pname = derive.split_target(expose.to)
                target = service.components.get(cname)
                port_inside = target.ports.get(pname) if target else None
                uses[edge].append(
                    PortUse(
                        expose.port,
                        expose.protocol,
                        name,
                        expose.to,
                        str(port_inside or ""),
                        "edge",
                    )
                )
    return {h: sorted(u) for h, u in sorted(uses.items())}


def free_port(context: Context, host: str, start: int = 8080) -> int:
    """Return a port to suggest for a new service on ``host``.

    The port after the highest one published there (so new ports follow the host's own
    numbering), or ``start`` when nothing above 1023 is published; never one in use.
    """
    taken = {u.port for u in port_uses(context).get(host, [])}
    high = [p for p in taken if p >= 1024]
    port = max(high) + 1 if high else start
    while port in taken:
        port += 1
    return port


def _port_rows(context: Context, uses: list[PortUse]) -> tuple[tuple[Line, ...], ...]:
    counts: dict[tuple[int, str], int] = {}
    for use in uses:
        counts[(use.port, use.protocol)] = counts.get((use.port, use.protocol), 0) + 1
    rows = []
    for use in uses:
        clash = counts[(use.port, use.protocol)] > 1
        port = line(
            Code(f"{use.port}/{use.protocol}"), Text(" used twice", strong=True) if clash else None
        )
        if use.service:
            who = line(service_link(use.service))
        else:
            who = line(Link("every route", page="domains"))
        if use.how == "edge" and not use.service:
            target: Line = line(next(d for p, _, d in edge_ports(context) if p == use.port))
        else:
            target = line(Code(use.target), f" (inside: {use.inside})" if use.inside else "")
        how = "edge proxy" if use.how == "edge" else "published"
        rows.append((port, who, target, line(how)))
    return tuple(rows)


def ports_page(context: Context) -> Page:
    """Return the port registry: per host, each published and edge port and its user."""
    sections: list[Section] = []
    for host, uses in port_uses(context).items():
        address = context.inventory.hosts[host].address or host
        role = " (edge)" if host in context.edges else ""
        blocks: list[Block] = [
            Para(
                line(
                    host_link(host),
                    role,
                    " at ",
                    Code(address),
                    ". Next free port: ",
                    Code(str(free_port(context, host))),
                    ".",
                )
            )
        ]
        blocks.append(
            Table(
                ("Port", "Service", "Goes to", "How"),
                _port_rows(context, uses),
                empty="No ports published on this host.",
            )
        )
        sections.append(Section(host, tuple(blocks), id=f"host-{host}"))
    return Page(
        key="ports",
        title="Ports",
        lead=line(
            "Every port in use on every host: published by a service's component, or "
            "opened by the edge proxy for routes and exposed ports. Generated from the "
            "inventory, so it is never out of date: choose a free port here, then run ",
            Code("allmende check"),
            " (rule ",
            Code("ports.unique"),
            ").",
        ),
        sections=tuple(sections),
        nav="ports",
    )


def _resources(context: Context, name: str) -> Line:
    resources = context.inventory.hosts[name].resources
    if resources is None:
        return ()
    parts = [
        f"{resources.cpus:g} CPUs" if resources.cpus else "",
        f"{resources.memory} memory" if resources.memory else "",
        f"{resources.disk} disk" if resources.disk else "",
    ]
    return line(", ".join(p for p in parts if p))


def host_page(context: Context, name: str) -> Page:
    """Given a host's name, return its page: what it is, where, and what runs there."""
    host = context.inventory.hosts[name]
    inventory = context.inventory
    rows: list[tuple[str, Line]] = [("Kind", line(host.kind))]
    if host.parent:
        rows.append(("Runs inside", line(host_link(host.parent))))
    children = derive.children(inventory, name)
    if children:
        rows.append(("Runs", joined(host_link(c) for c in children)))
    rows.append(("Address", line(Code(host.address)) if host.address else line("not set")))
    public = [a for a in (host.public_ipv4, host.public_ipv6) if a]
    if public:
        rows.append(("Public addresses", joined(Code(a) for a in public)))
    if host.ssh is None:
        rows.append(("Reached", line("locally: allmende runs on this machine")))
    else:
        port = f" -p {host.ssh.port}" if host.ssh.port != 22 else ""
        rows.append(("Reached", line(Code(f"ssh{port} {host.ssh.user}@{host.address or name}"))))
    rows.append(("Engine", line(Code(host.engine))))
    for label, value in (("Provider", host.provider), ("Location", host.location)):
        if value:
            rows.append((label, line(value)))
    if host.resources is not None:
        rows.append(("Resources", _resources(context, name)))
    if host.storage_class:
        rows.append(("Storage class", line(Code(host.storage_class))))
    if name in context.edges:
        rows.append(
            (
                "Edge",
                line(
                    "runs the reverse proxy (",
                    inventory.collective.edge.proxy if inventory.collective.edge else "",
                    ") for every route",
                ),
            )
        )
    rows.append(("Defined in", line(Code(inventory.file("host", name)))))

    services = derive.services_on(inventory, name)
    service_rows = tuple(
        (
            line(service_link(s)),
            line(inventory.services[s].description),
            joined(Code(r.domain) for r in inventory.services[s].routes),
        )
        for s in services
    )
    volume_rows = tuple(
        (line(Code(path)), line(service_link(s)), line(Code(f"{c}:{v.path}")))
        for s in services
        for c, _, v, path in derive.volumes(s, inventory.services[s])
    )
    sections = [
        Section("About", (Facts(tuple(rows)),)),
        Section(
            "Services",
            (Table(("Service", "What", "Domains"), service_rows, empty="No services run here."),),
            id="services",
        ),
        Section(
            "Data on this host",
            (
                Table(
                    ("Host path", "Service", "Mounted at"),
                    tuple(sorted(volume_rows, key=_first)),
                    empty="No volumes on this host.",
                ),
            ),
        ),
        Section(
            "Ports",
            (
                Sub(
                    "In use",
                    (
                        Table(
                            ("Port", "Service", "Goes to", "How"),
                            _port_rows(context, port_uses(context)[name]),
                            empty="No ports published here.",
                        ),
                    ),
                ),
                Para(line(Link("All hosts' ports", page="ports", anchor=f"host-{name}"), ".")),
            ),
        ),
    ]
    return Page(
        key=f"hosts/{name}",
        title=name,
        lead=line(host.description or f"A {host.kind} host."),
        sections=tuple(sections),
        nav="hosts",
        crumbs=(Link("Hosts", page="index", anchor="hosts"),),
    )


def _first(row: tuple[Line, ...]) -> str:
    return "".join(i.text for i in row[0])
