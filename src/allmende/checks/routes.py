"""Routes: unique, encrypted, and with DNS the collective controls."""

from __future__ import annotations

from collections.abc import Iterator

from allmende.checks import ports
from allmende.checks.ports import PortUse
from allmende.checks.registry import Context, Finding, rule
from allmende.inventory import derive
from allmende.inventory.domains import managed_zone, relative
from allmende.inventory.inventory import Inventory


@rule(
    "routes.unique",
    "error",
    "The edge can send one domain and path to one place only; TLS passthrough hands the whole "
    "domain to one backend, so it cannot share the domain with terminated routes.",
    "change the domain or path of one of the routes",
)
def routes_unique(ctx: Context) -> Iterator[Finding]:
    inv = ctx.inventory
    routed: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for name, service in sorted(inv.services.items()):
        for i, route in enumerate(service.routes):
            key = (route.domain, route.path.rstrip("/") or "/")
            routed.setdefault(key, []).append((name, i))
    for (domain, prefix), users in sorted(routed.items()):
        for name, i in users if len(users) > 1 else ():
            others = ", ".join(
                str(inv.where("service", n, ("routes", j))) for n, j in users if (n, j) != (name, i)
            )
            yield ctx.finding(
                "service",
                name,
                ("routes", i, "domain"),
                f"{domain}{prefix} is also routed by {others}",
            )
    modes: dict[str, tuple[str, int, str]] = {}
    for name, service in sorted(inv.services.items()):
        for i, route in enumerate(service.routes):
            path = ("routes", i)
            if route.tls == "passthrough" and route.path != "/":
                yield ctx.finding(
                    "service",
                    name,
                    (*path, "path"),
                    "a passthrough route cannot route by path (the proxy never "
                    "sees the encrypted request)",
                    "remove `path`",
                )
            passthrough = route.tls == "passthrough"
            earlier = modes.get(route.domain)
            if earlier is None:
                modes[route.domain] = (name, i, route.tls)
            elif (earlier[2] == "passthrough") != passthrough:
                there = inv.where("service", earlier[0], ("routes", earlier[1]))
                here, other = (
                    ("passed through", "terminated")
                    if passthrough
                    else ("terminated", "passed through")
                )
                yield ctx.finding(
                    "service",
                    name,
                    (*path, "tls"),
                    f"{route.domain} is {here} here but {other} at {there}",
                    "use one TLS mode per domain",
                )


@rule(
    "routes.tls",
    "warning",
    "A public route without TLS sends passwords and cookies in clear text.",
    "use `tls: terminate` (the default): the edge gets a certificate for it",
)
def routes_tls(ctx: Context) -> Iterator[Finding]:
    for name, service in sorted(ctx.inventory.services.items()):
        for i, route in enumerate(service.routes):
            if route.tls == "none":
                yield ctx.finding(
                    "service",
                    name,
                    ("routes", i, "tls"),
                    f"{route.domain}{route.path} is served without TLS",
                )
                if route.redirect_https:
                    yield ctx.finding(
                        "service",
                        name,
                        ("routes", i, "redirect_https"),
                        "redirect_https needs TLS on the route",
                        "remove `redirect_https` or use `tls: terminate`",
                    )


@rule(
    "routes.dns",
    "warning",
    "A route only works when its name points at the edge; records the collective does not "
    "manage are done by hand and drift.",
    "add the domain to `domains` in allmende.yaml (and a zone file), or keep its record by hand",
)
def routes_dns(ctx: Context) -> Iterator[Finding]:
    inv = ctx.inventory
    public = {
        h
        for h in derive.edge_hosts(inv)
        if h in inv.hosts and (inv.hosts[h].public_ipv4 or inv.hosts[h].public_ipv6)
    }
    for name, service in sorted(inv.services.items()):
        reachable = public & set(derive.edges_of(inv, name))
        for i, route in enumerate(service.routes):
            path = ("routes", i, "domain")
            zone = managed_zone(inv, route.domain)
            if zone is None:
                yield ctx.finding(
                    "service",
                    name,
                    path,
                    f"{route.domain} is not under a domain the collective manages",
                )
                continue
            if not reachable:
                yield ctx.finding(
                    "service",
                    name,
                    path,
                    f"no edge host has a public address for {route.domain}",
                    "give an edge host `public_ipv4` or `public_ipv6`",
                )
            name_there = relative(route.domain, zone)
            for j, record in enumerate(inv.zones[zone].records if zone in inv.zones else ()):
                if record.name == name_there and record.type in ("A", "AAAA", "CNAME"):
                    yield ctx.finding(
                        "service",
                        name,
                        path,
                        f"{route.domain} also has a {record.type} record in "
                        f"{inv.where('zone', zone, ('records', j))}",
                        "remove the record: routes make their own A/AAAA records",
                    )


def _free_port(inventory: Inventory, host: str, wanted: int) -> int:
    """Return a port to suggest publishing on ``host``: ``wanted`` (8000 more when it needs
    root: 80 becomes 8080), or the next one up that nothing on the host uses yet."""
    used = {
        use.port
        for use in [*ports.published(inventory), *ports.edge(inventory)]
        if use.host == host
    }
    port = wanted if wanted >= 1024 else wanted + 8000
    while port in used and port < 65535:
        port += 1
    return port


def _edges(names: list[str]) -> str:
    """Return edge hosts as a message names them: edge host `a`, edge hosts `a`, `b`."""
    return ("edge host " if len(names) == 1 else "edge hosts ") + ", ".join(f"`{n}`" for n in names)


@rule(
    "routes.reachable",
    "error",
    "The edge reaches a component only on a published port (or, on an Incus host it runs on "
    "or in, by name on the bridge); a route or exposed port it cannot reach answers 503, or "
    "nothing, forever.",
    "publish the port under the component's `publish`",
)
def routes_reachable(ctx: Context) -> Iterator[Finding]:
    inv = ctx.inventory
    for name, service in sorted(inv.services.items()):
        targets = [(("routes", i, "to"), r.to) for i, r in enumerate(service.routes)] + [
            (("expose", i, "to"), e.to) for i, e in enumerate(service.expose)
        ]
        for path, target in targets:
            component, port = derive.split_target(target)
            runs = service.components.get(component)
            if runs is not None and runs.replicas == 0:
                # it runs nowhere: the edge sends to the servers outside the inventory alone
                settings = runs.edge.get(port)
                if settings is None or all(server.backup for server in settings.servers):
                    yield ctx.finding(
                        "service",
                        name,
                        path,
                        f"{target} runs nowhere (`replicas: 0`) and has no server outside the "
                        "inventory to send to",
                        f"give components.{component}.edge.{port}.servers in "
                        f"{inv.file('service', name)}, or run it (`replicas: 1`)",
                    )
                continue
            unpublished: list[str] = []
            nowhere: list[str] = []
            loopback: list[tuple[str, str]] = []
            for edge in derive.edges_of(inv, name):
                reach = derive.reach(inv, edge, name, target)
                if reach is None or reach.reachable:
                    continue  # an unknown target is a load error; see inventory.validate
                if reach.only is not None:
                    loopback.append((edge, reach.only))
                else:
                    (nowhere if reach.published else unpublished).append(edge)
            for edge, address in loopback:
                yield ctx.finding(
                    "service",
                    name,
                    path,
                    f"{_edges([edge])} cannot reach {target}: it is published on {address} of "
                    f"`{service.host}` only",
                    f"publish it where the edge reaches it: drop `bind: {address}` from "
                    f"components.{component}.publish.{port} in {inv.file('service', name)}, or "
                    f"run the edge on `{service.host}`",
                )
            if unpublished:
                number = _free_port(inv, service.host, service.components[component].ports[port])
                yield ctx.finding(
                    "service",
                    name,
                    path,
                    f"{_edges(unpublished)} cannot reach {target}: it is not published on "
                    f"`{service.host}`",
                    f"publish it: `publish: {{{port}: {number}}}` under components.{component} "
                    f"in {inv.file('service', name)}",
                )
            if nowhere:
                yield ctx.finding(
                    "service",
                    name,
                    path,
                    f"{_edges(nowhere)} cannot reach {target}: host `{service.host}` has no "
                    "`address`",
                    f"give `{service.host}` an `address` in {inv.file('host', service.host)}",
                )


@rule(
    "routes.servers",
    "warning",
    "A server of a component's `edge` settings is meant to be outside the inventory; one at "
    "the address and published port of another component sends that route's requests to a "
    "program that was never meant to answer them.",
    "name the right port of the server, or route to that component instead",
)
def routes_servers(ctx: Context) -> Iterator[Finding]:
    inv = ctx.inventory
    taken: dict[tuple[str, int], PortUse] = {}
    for use in ports.published(inv):
        host = inv.hosts.get(use.host)
        for address in (host.address, host.public_ipv4, host.public_ipv6) if host else ():
            if address:
                taken.setdefault((address.lower(), use.port), use)
    for name, service in sorted(inv.services.items()):
        for cname, component in sorted(service.components.items()):
            for port, settings in sorted(component.edge.items()):
                for i, server in enumerate(settings.servers):
                    other = taken.get((server.host.lower(), server.port))
                    if other is None or other.what == f"{name}/{cname}.{port}":
                        continue
                    yield ctx.finding(
                        "service",
                        name,
                        ("components", cname, "edge", port, "servers", i),
                        f"{server.address} is {other.what}, published on `{other.host}`",
                    )
