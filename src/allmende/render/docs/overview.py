"""The overview page: the collective, counts, the picture of the whole, links to everything."""

from __future__ import annotations

from allmende.render.docs.blocks import (
    Block,
    Code,
    Facts,
    Figure,
    Line,
    Link,
    Page,
    Para,
    Section,
    Stat,
    Stats,
    Table,
    Text,
    joined,
    line,
)
from allmende.render.docs.context import (
    Context,
    contact,
    findings_table,
    host_link,
    maintainers,
    service_link,
)
from allmende.render.docs.services import url
from allmende.render.graph import DRAWN_AT_MOST

GRAPH = "graph.svg"


def _about(context: Context) -> tuple[Block, ...]:
    collective = context.inventory.collective
    rows: list[tuple[str, Line]] = []
    if collective.contact:
        rows.append(("Contact", contact(collective.contact)))
    if collective.domains:
        rows.append(
            (
                "Domains",
                joined(
                    Link(d, page="domains", anchor=f"zone-{d}", code=True)
                    for d in collective.domains
                ),
            )
        )
    if context.edges:
        rows.append(("Edge", joined(host_link(h) for h in context.edges)))
    alerts = [n.email or n.webhook or "" for n in collective.notify]
    if alerts:
        rows.append(("Alerts go to", joined(line(*contact(a)) for a in alerts)))
    counts = (
        ("service", "services", len(context.inventory.services), "index", "services"),
        ("host", "hosts", len(context.inventory.hosts), "index", "hosts"),
        (
            "domain",
            "domains",
            len(set(collective.domains) | set(context.inventory.zones)),
            "domains",
            "",
        ),
        ("database", "databases", len(context.databases), "databases", ""),
        ("person", "people", len(collective.people), "people", ""),
    )
    stats = Stats(
        tuple(
            Stat(one if n == 1 else many, n, Link(many, page=page, anchor=anchor))
            for one, many, n, page, anchor in counts
        )
    )
    blocks: list[Block] = [stats]
    if rows:
        blocks.append(Facts(tuple(rows)))
    blocks.append(
        Para(
            line(
                "New here? ",
                Link("Onboarding", page="onboarding"),
                " explains how everything is written down and how to add a service.",
            )
        )
    )
    return tuple(blocks)


def _checks(context: Context) -> Section:
    findings = list(context.report.findings)
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
    summary = ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items() if n)
    allowed = len(context.report.allowed)
    tail = f" ({allowed} more accepted on purpose, see the services' pages)" if allowed else ""
    if findings:
        tone = "warn" if counts["error"] else "note"
        lead = Para(
            line(Text(summary, strong=True), " from ", Code("allmende check"), tail, "."), tone=tone
        )
        return Section(
            "Open findings", (lead, findings_table(findings, with_service=True)), id="findings"
        )
    return Section(
        "Open findings", (Para(line("Every check passes", tail, "."), tone="ok"),), id="findings"
    )


def _services(context: Context) -> Table:
    inventory = context.inventory
    rows = []
    for name in context.services():
        service = inventory.services[name]
        addresses = joined(
            (
                Link(url(r.domain, r.path, r.tls), url=url(r.domain, r.path, r.tls))
                for r in service.routes
            ),
            separator=" ",
            empty="—",
        )
        rows.append(
            (
                line(service_link(name)),
                line(service.description),
                line(host_link(service.host)),
                addresses,
                maintainers(context, name),
            )
        )
    return Table(
        ("Service", "What", "Host", "Address", "Maintainers"),
        tuple(rows),
        empty="No services yet: see Onboarding.",
    )


def _hosts(context: Context) -> Table:
    inventory = context.inventory
    rows = []
    for name in context.hosts():
        host = inventory.hosts[name]
        kind = line(host.kind, " in ", host_link(host.parent)) if host.parent else line(host.kind)
        count = sum(1 for s in inventory.services.values() if s.host == name)
        rows.append(
            (
                line(host_link(name)),
                line(host.description),
                kind,
                line(Code(host.engine)),
                line(str(count)),
            )
        )
    return Table(("Host", "What", "Kind", "Engine", "Services"), tuple(rows), empty="No hosts yet.")


def page(context: Context) -> Page:
    """Return the overview page."""
    collective = context.inventory.collective
    figure = Figure(
        GRAPH if context.svg else None,
        f"The hosts, services, routes and databases of {collective.name}",
        missing=(
            f"No picture: {len(context.inventory.services)} services are too many to draw on "
            "one page; `allmende graph --format dot` writes the whole for other tools."
            if len(context.inventory.services) > DRAWN_AT_MOST
            else "No picture: Graphviz (dot) was not available when this site was built; "
            "install graphviz and build again."
        ),
    )
    sections = (
        Section("About", _about(context), id="about"),
        _checks(context),
        Section("Services", (_services(context),), id="services"),
        Section("Hosts", (_hosts(context),), id="hosts"),
        Section("The whole", (figure,), id="graph"),
        Section(
            "Everything else",
            (
                Table(
                    ("Page", "What it answers"),
                    (
                        (
                            line(Link("Ports", page="ports")),
                            line("which port is taken where; which is free"),
                        ),
                        (
                            line(Link("Domains", page="domains")),
                            line("which name goes where; DNS records"),
                        ),
                        (
                            line(Link("Databases", page="databases")),
                            line("which database is where, who uses it"),
                        ),
                        (
                            line(Link("People", page="people")),
                            line("who maintains what, how to reach them"),
                        ),
                        (
                            line(Link("Onboarding", page="onboarding")),
                            line("how to add a service, where data lives, whom to ask"),
                        ),
                    ),
                ),
            ),
            id="pages",
        ),
    )
    return Page(
        key="index",
        title=collective.name,
        lead=line(collective.description or "The servers of the collective."),
        sections=sections,
        nav="index",
    )
