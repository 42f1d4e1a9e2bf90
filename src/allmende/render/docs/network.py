"""The domains page (routes, derived and extra DNS records) and the databases page."""

from __future__ import annotations

from allmende.inventory import derive
from allmende.inventory.domains import zone_of
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
    joined,
    line,
)
from allmende.render.docs.context import (
    Context,
    database_anchor,
    database_link,
    host_link,
    service_link,
)


def relative(domain: str, zone: str) -> str:
    """Return a name relative to its zone, ``@`` for the apex."""
    return "@" if domain == zone else domain[: -len(zone) - 1]


def _routes_table(context: Context, domains: list[str]) -> Table:
    rows = []
    for name, service in sorted(context.inventory.services.items()):
        for route in service.routes:
            if route.domain in domains:
                rows.append(
                    (
                        line(Code(route.domain)),
                        line(Code(route.path)),
                        line(service_link(name)),
                        line(route.tls),
                        line(route.cache or "no"),
                    )
                )
    return Table(
        ("Domain", "Path", "Service", "TLS", "Cache"),
        tuple(sorted(rows, key=_key)),
        empty="No routes under this domain.",
    )


def _key(row: tuple[Line, ...]) -> tuple[str, ...]:
    return tuple("".join(i.text for i in cell) for cell in row)


def _derived(context: Context, zone: str, domains: list[str]) -> Table:
    """Return the records routes and hosts produce: A/AAAA of the edge hosts' addresses."""
    hosts = context.inventory.hosts
    rows: list[tuple[Line, ...]] = []
    served = derive.domain_edges(context.inventory)
    for domain in domains:
        for edge in served.get(domain, context.edges):
            for kind, address in (
                ("A", hosts[edge].public_ipv4),
                ("AAAA", hosts[edge].public_ipv6),
            ):
                if address:
                    rows.append(
                        (
                            line(Code(relative(domain, zone))),
                            line(kind),
                            line(Code(address)),
                            line("route via ", host_link(edge)),
                        )
                    )
    for name, host in sorted(hosts.items()):
        address = host.address or ""
        if address == zone or address.endswith("." + zone):
            for kind, public in (("A", host.public_ipv4), ("AAAA", host.public_ipv6)):
                if public:
                    rows.append(
                        (
                            line(Code(relative(address, zone))),
                            line(kind),
                            line(Code(public)),
                            line("host ", host_link(name)),
                        )
                    )
    return Table(
        ("Name", "Type", "Value", "Why"),
        tuple(sorted(set(rows), key=_key)),
        empty="No records derived: no routes, or the edge has no public address.",
    )


def domains_page(context: Context) -> Page:
    """Return the domains page: each managed zone, its routes, records and nameservers."""
    inventory = context.inventory
    managed = sorted(set(inventory.collective.domains) | set(inventory.zones))
    routed = sorted({r.domain for s in inventory.services.values() for r in s.routes})
    sections: list[Section] = []
    for zone in managed:
        domains = [d for d in routed if zone_of(d, managed) == zone]
        blocks: list[Block] = []
        record_zone = inventory.zones.get(zone)
        facts: list[tuple[str, Line]] = []
        if record_zone is not None:
            facts.append(("Provider", line(Code(record_zone.provider))))
            facts.append(
                (
                    "Nameservers",
                    joined((Code(n) for n in record_zone.nameservers), empty="not listed"),
                )
            )
            facts.append(("Default TTL", line(f"{record_zone.ttl} s")))
            facts.append(("Defined in", line(Code(inventory.file("zone", zone)))))
        else:
            facts.append(
                (
                    "Records",
                    line(
                        "only those derived from routes and hosts (no ",
                        Code(f"zones/{zone}.yaml"),
                        ")",
                    ),
                )
            )
        if zone not in inventory.collective.domains:
            facts.append(
                (
                    "Note",
                    line("has a zone file but is not in ", Code("domains"), " of allmende.yaml"),
                )
            )
        blocks.append(Facts(tuple(facts)))
        blocks.append(Sub("Routes", (_routes_table(context, domains),)))
        blocks.append(Sub("Records from routes and hosts", (_derived(context, zone, domains),)))
        if record_zone is not None:
            rows = tuple(
                (
                    line(Code(r.name)),
                    line(r.type),
                    line(Code(r.value)),
                    line(str(r.ttl if r.ttl is not None else record_zone.ttl)),
                )
                for r in sorted(record_zone.records, key=lambda r: (r.name, r.type, r.value))
            )
            blocks.append(
                Sub(
                    "Other records", (Table(("Name", "Type", "Value", "TTL"), rows, empty="None."),)
                )
            )
        sections.append(Section(zone, tuple(blocks), id=f"zone-{zone}"))
    outside = [d for d in routed if zone_of(d, managed) is None]
    if outside:
        sections.append(
            Section(
                "Domains managed elsewhere",
                (
                    Para(
                        line(
                            "These routes use names in zones the collective does not manage here: "
                            "their records must point at the edge by hand."
                        )
                    ),
                    _routes_table(context, outside),
                ),
                id="elsewhere",
            )
        )
    return Page(
        key="domains",
        title="Domains",
        lead=line(
            "The DNS zones the collective manages, which names route to which service, "
            "and every record: those derived from routes and hosts and those written in ",
            Code("zones/"),
            ".",
        ),
        sections=tuple(sections),
        nav="domains",
    )


def databases_page(context: Context) -> Page:
    """Return the databases page: each database, its engine, server and users."""
    inventory = context.inventory
    providers = sorted(n for n, s in inventory.services.items() if s.provides is not None)
    sections: list[Section] = []
    for provider in providers:
        service = inventory.services[provider]
        assert service.provides is not None
        rows = tuple(
            (
                line(database_link(d.ref)),
                joined((service_link(u) for u in d.users), empty="nobody yet"),
            )
            for d in context.databases.values()
            if d.provider == provider
        )
        facts = Facts(
            (
                ("Engine", line(Code(service.provides.database))),
                ("Server", line(service_link(provider), " on ", host_link(service.host))),
                ("Restore", line(Link("runbook", page=f"services/{provider}", anchor="restore"))),
            )
        )
        table = Table(("Database", "Used by"), rows, empty="No databases declared or used.")
        sections.append(Section(provider, (facts, table), id=f"server-{provider}"))
    all_rows = tuple(
        (
            line(Code(ref)),
            line(Code(db.engine)),
            line(service_link(db.provider)),
            joined((service_link(u) for u in db.users), empty="nobody yet"),
        )
        for ref, db in sorted(context.databases.items())
    )
    ids = tuple(database_anchor(ref) for ref in sorted(context.databases))
    sections.insert(
        0,
        Section(
            "All databases",
            (
                Table(
                    ("Database", "Engine", "Server", "Used by"),
                    all_rows,
                    empty="No service provides a database.",
                    ids=ids,
                ),
            ),
            id="all",
        ),
    )
    return Page(
        key="databases",
        title="Databases",
        lead=line(
            "Each database by ",
            Code("<service>/<name>"),
            ": the service that serves it and the services that use it.",
        ),
        sections=tuple(sections),
        nav="databases",
    )
