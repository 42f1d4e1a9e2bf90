"""The page of one service: what it offers, where it runs, its data, and how to get it back."""

from __future__ import annotations

from allmende.inventory import derive
from allmende.inventory.models import Component, Service
from allmende.render.docs import service_data
from allmende.render.docs.blocks import (
    Block,
    Bullets,
    Code,
    Facts,
    Line,
    Link,
    Page,
    Para,
    Prose,
    Section,
    Sub,
    Table,
    Text,
    joined,
    line,
)
from allmende.render.docs.context import (
    Context,
    codes,
    database_link,
    findings_table,
    host_link,
    maintainers,
)

#: Environment variables whose value is not shown even though it is not a secret.
SECRET_LOOKING = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL")


def url(domain: str, path: str, tls: str) -> str:
    """Return the address people type for a route."""
    return f"{'http' if tls == 'none' else 'https'}://{domain}{path}"


def _offers(context: Context, name: str, service: Service) -> tuple[Block, ...]:
    items: list[Line] = []
    for route in service.routes:
        address = url(route.domain, route.path, route.tls)
        items.append(line(Link(address, url=address), " — ", Code(route.to)))
    for expose in service.expose:
        edges = joined(host_link(h) for h in derive.edges_of(context.inventory, name))
        items.append(
            line(
                Code(f"{expose.port}/{expose.protocol}"),
                " on the edge (",
                *edges,
                ") — ",
                Code(expose.to),
            )
        )
    if service.provides is not None:
        items.append(line("A ", Code(service.provides.database), " database server (see below)"))
    if not items:
        return (
            Para(line("Nothing reachable from outside: no routes, exposed ports or databases.")),
        )
    return (Bullets(tuple(items)),)


def _facts(context: Context, name: str, service: Service) -> Facts:
    host = context.inventory.hosts[service.host]
    rows: list[tuple[str, Line]] = [
        ("Runs on", line(host_link(service.host), f" ({host.kind}, engine {host.engine})")),
        ("Maintainers", maintainers(context, name)),
    ]
    if service.uses:
        rows.append(("Uses", joined(line(database_link(u.database)) for u in service.uses)))
    backup = derive.backup(context.inventory.collective, name, service)
    rows.append(
        ("Backup", line(Link(backup.consistency, page=f"services/{name}", anchor="backup")))
    )
    rows.append(("Defined in", line(Code(context.inventory.file("service", name)))))
    return Facts(tuple(rows))


def _env(component: Component) -> Line:
    parts: list[Line] = []
    for key, value in sorted(component.env.items()):
        if any(word in key.upper() for word in SECRET_LOOKING):
            parts.append(line(Code(key), " (value not shown)"))
        else:
            parts.append(line(Code(f"{key}={value}")))
    return joined(parts, separator="; ")


def _component(context: Context, name: str, cname: str, component: Component) -> Sub:
    rows: list[tuple[str, Line]] = []
    if component.image is not None:
        rows.append(("Image", line(Code(component.image))))
    if component.system is not None:
        system = component.system
        rows.append(("System container", line(Code(system.image))))
        if system.packages:
            rows.append(("Packages", codes(system.packages)))
        if system.setup:
            rows.append(("Setup", joined((line(Code(c)) for c in system.setup), "; ")))
        if system.services:
            rows.append(("Init services", codes(system.services)))
    if component.command:
        rows.append(("Command", line(Code(" ".join(component.command)))))
    if component.ports:
        rows.append(("Ports", codes([f"{p} {n}" for n, p in sorted(component.ports.items())])))
    if component.healthcheck is not None:
        check = component.healthcheck
        probe = (
            f"GET {check.http}"
            if check.http
            else f"tcp {check.tcp}"
            if check.tcp
            else " ".join(check.command or ())
        )
        rows.append(("Health check", line(Code(probe), f" every {check.interval}")))
    if component.depends_on:
        rows.append(("Starts after", codes(list(component.depends_on))))
    if component.replicas != 1:
        rows.append(("Replicas", line(str(component.replicas))))
    for port, settings in sorted(component.edge.items()):
        servers = [s.address + (" (backup)" if s.backup else "") for s in settings.servers]
        said = [f"{port}: also {', '.join(servers)}"] if servers else [f"{port}:"]
        if settings.backup:
            said.append("this component is a backup")
        if servers and settings.balance != "roundrobin":
            said.append(f"balanced by {settings.balance}")
        if settings.proxy_protocol is not None:
            said.append(f"PROXY protocol {settings.proxy_protocol}")
        rows.append(("Edge servers", line(", ".join(said))))
    if component.env:
        rows.append(("Environment", _env(component)))
    return Sub(cname, (Facts(tuple(rows)),), id=f"component-{cname}")


def _routes(service: Service) -> Table:
    rows = []
    for route in service.routes:
        redirect = route.redirect_https
        if redirect is None:
            redirect = route.tls == "terminate"
        rows.append(
            (
                line(Code(route.domain)),
                line(Code(route.path)),
                line(Code(route.to)),
                line(route.tls + (", redirects http" if redirect and route.tls != "none" else "")),
                line(route.cache or "no"),
            )
        )
    return Table(("Domain", "Path", "To", "TLS", "Cache"), tuple(rows))


def _ports(context: Context, name: str, service: Service) -> tuple[Block, ...]:
    host = context.inventory.hosts[service.host]
    address = host.address or service.host
    rows = []
    for cname, component in sorted(service.components.items()):
        for pname, port in sorted(component.publish.items()):
            inside = component.ports.get(pname)
            rows.append(
                (
                    line(Code(f"{port.bind or address}:{port.port}")),
                    line(Code(f"{cname}.{pname}")),
                    line(Code(str(inside)) if inside else Text("?")),
                )
            )
    blocks: list[Block] = []
    if rows:
        blocks.append(Table(("On the host", "Component port", "Inside"), tuple(rows)))
    if service.expose:
        edges = joined(host_link(h) for h in derive.edges_of(context.inventory, name)) or line(
            "no edge host"
        )
        exposed = tuple(
            (line(Code(f"{e.port}/{e.protocol}")), edges, line(Code(e.to))) for e in service.expose
        )
        blocks.append(Table(("Edge port", "On", "To"), exposed))
    if not blocks:
        blocks.append(
            Para(
                line(
                    "No published or exposed ports: reached only through its "
                    "routes or by other services on the same host."
                )
            )
        )
    blocks.append(
        Para(line("All ports of all hosts: ", Link("the port registry", page="ports"), "."))
    )
    return tuple(blocks)


def _monitors(service: Service) -> tuple[Block, ...]:
    probes = derive.monitors(service)
    items: list[Line] = []
    for probe in probes:
        if probe.http:
            expect = probe.expect
            wanted = f" expects {expect.status}" if expect else ""
            if expect and expect.contains:
                wanted += f" containing “{expect.contains}”"
            items.append(line("HTTP ", Code(probe.http), wanted, f", every {probe.interval}"))
        elif probe.tcp:
            items.append(line("TCP ", Code(probe.tcp), f", every {probe.interval}"))
        elif probe.tls:
            items.append(
                line("Certificate expiry of ", Code(probe.tls), f", every {probe.interval}")
            )
    blocks: list[Block] = []
    if service.monitor is None and probes:
        blocks.append(Para(line("Derived from the routes (the service names none of its own):")))
    if not probes:
        return (
            Para(line("Not watched: no monitors and no routes to derive them from."), tone="warn"),
        )
    blocks.append(Bullets(tuple(items)))
    return tuple(blocks)


def _checks(context: Context, name: str, service: Service) -> tuple[Block, ...]:
    mine = [f for f in context.report.findings if f.service == name]
    blocks: list[Block] = [findings_table(mine, with_service=False)]
    if service.allow:
        rows = []
        for allow in sorted(service.allow, key=lambda a: a.rule):
            matched = [
                f for f in context.report.allowed if f.service == name and f.rule == allow.rule
            ]
            what = joined((line(f.message) for f in matched), "; ", empty="nothing found now")
            rows.append((line(Code(allow.rule)), line(allow.reason), what))
        blocks.append(Sub("Accepted on purpose", (Table(("Rule", "Why", "Found"), tuple(rows)),)))
    return tuple(blocks)


def page(context: Context, name: str) -> Page:
    """Given a service's name, return its page."""
    service = context.inventory.services[name]
    sections = [
        Section(
            "What it offers", (*_offers(context, name, service), _facts(context, name, service))
        ),
    ]
    if service.docs.strip():
        sections.append(Section("Notes", (Prose(service.docs),)))
    sections += [
        Section(
            "Components",
            tuple(
                _component(context, name, c, comp) for c, comp in sorted(service.components.items())
            ),
        ),
    ]
    if service.routes:
        sections.append(Section("Routes", (_routes(service),)))
    sections.append(Section("Ports", _ports(context, name, service)))
    sections.append(Section("Volumes", service_data.volumes(context, name, service)))
    databases = service_data.databases(context, name, service)
    if databases:
        sections.append(Section("Databases", databases))
    sections.append(
        Section(
            "Secrets",
            (
                service_data.secrets(context, service),
                Para(
                    line(
                        "Only names are shown here: values are encrypted in ",
                        Code("secrets/"),
                        " and never leave it.",
                    )
                ),
            ),
        )
    )
    sections.append(Section("Backup", service_data.backup(context, name, service), id="backup"))
    sections.append(Section("Restore", service_data.restore(context, name, service), id="restore"))
    sections.append(Section("Monitoring", _monitors(service)))
    sections.append(Section("Checks", _checks(context, name, service)))
    return Page(
        key=f"services/{name}",
        title=name,
        lead=line(service.description),
        sections=tuple(sections),
        nav="services",
        crumbs=(Link("Services", page="index", anchor="services"),),
    )
