"""What the HAProxy of one edge host has to do, decided from the inventory before any text.

``plan(inventory, edge)`` returns an ``EdgePlan``: the HTTP routes with what each port does with
them (terminate, redirect, serve in plain HTTP, cache), the SNI names passed through, the raw
TCP ports, and one backend per (service, component, port) with the address HAProxy connects to
and how it checks it. ``allmende.render.haproxy`` only writes the plan down as configuration.

The decisions, in one place:

* A route with ``tls: terminate`` is served on the HTTPS port with the edge's certificate; on
  the HTTP port it is redirected to HTTPS (301) unless it says ``redirect_https: false``, in
  which case it is served in plain HTTP as well. ``tls: none`` is served in plain HTTP only.
  ``tls: passthrough`` hands every TLS connection whose SNI is the domain to the backend
  (which holds its own certificate); on the HTTP port the whole domain, ACME challenges
  included, is redirected to HTTPS, where that backend answers them itself.
* Paths are prefixes with exact-or-slash semantics: ``/api`` matches ``/api`` and ``/api/x``,
  never ``/apix``; a trailing slash in the inventory changes nothing. Within a domain the
  longest prefix wins.
* A backend reaches the component's published port on its host's ``address``, or on
  127.0.0.1 when the service runs on the edge host itself. A port of a system container on
  an Incus host that the edge runs on or in, published or not, is reached by name on the
  Incus bridge, ``<service>-<component>.incus:<port>``. Any other port that is not published
  cannot be reached: its server is rendered disabled, with the reason. The decision is
  ``derive.reach``, which the check ``routes.reachable`` applies as well.

Everything that ends up in the configuration is either validated here (domains, host names)
or encoded so that it cannot break out of its place (paths, identifiers, comments).
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from allmende.inventory import derive
from allmende.inventory.inventory import Inventory
from allmende.inventory.models import Component, seconds

#: Where allmende's certificate job answers ACME http-01 challenges while it renews, unless
#: ``acme.responder_port`` says another port: the HTTP port sends every
#: ``/.well-known/acme-challenge/`` request here (the job listens only then).
ACME_RESPONDER = "127.0.0.1:8402"
ACME_PATH = "/.well-known/acme-challenge/"

#: HAProxy's built-in cache: size of each cache section and of the largest object it keeps.
CACHE_SIZE_MB = 32
CACHE_OBJECT_BYTES = 1024 * 1024

Mode = Literal["http", "tcp"]

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_IDENT_BAD = re.compile(r"[^A-Za-z0-9_.:-]")
#: Characters kept as they are in a path; everything else is percent-encoded as clients send it
#: (which also keeps spaces, quotes, backslashes and ``#`` out of the configuration).
_PATH_SAFE = "/:@!$&()*+,;=-._~%"


@dataclass(frozen=True)
class Health:
    """How HAProxy checks a server: a TCP connect, or an HTTP GET that must answer 200."""

    http_path: str | None = None
    http_host: str | None = None
    port: int | None = None
    interval: str | None = None
    timeout: str | None = None
    retries: int | None = None
    note: str = ""


@dataclass(frozen=True)
class Server:
    """One more server of a backend, outside the inventory (``edge.<port>.servers``)."""

    name: str
    address: str
    dns: bool
    backup: bool
    weight: int | None = None


@dataclass(frozen=True)
class Backend:
    """One (service, component, port) as HAProxy reaches it: the component's own server, and
    the component's ``edge`` settings for the port (more servers, backup, PROXY protocol)."""

    name: str
    mode: Mode
    service: str
    component: str
    port: str
    host: str
    address: str
    dns: bool
    note: str
    health: Health
    servers: tuple[Server, ...] = ()
    backup: bool = False
    balance: str = "roundrobin"
    proxy: str | None = None
    weight: int | None = None

    @property
    def reachable(self) -> bool:
        """Return whether HAProxy can connect to the component itself (a note says why not)."""
        return not self.note

    @property
    def resolves(self) -> bool:
        """Return whether any of its servers is reached by a name HAProxy resolves."""
        return self.dns or any(server.dns for server in self.servers)


@dataclass(frozen=True)
class HttpRoute:
    """One HTTP route as the edge serves it: where, on which ports, and to which backend."""

    service: str
    domain: str
    prefix: str
    backend: str
    https: bool
    plain: bool
    redirect: bool
    cache: str | None

    @property
    def shown(self) -> str:
        """Return the route as people write it: domain and path."""
        return f"{self.domain}{self.prefix or '/'}"


@dataclass(frozen=True)
class Passthrough:
    """TLS connections whose SNI is one of ``domains`` go, still encrypted, to ``backend``."""

    backend: str
    service: str
    domains: tuple[str, ...]


@dataclass(frozen=True)
class TcpPort:
    """A raw port of the edge; ``backend`` is None when HAProxy cannot carry it (``note``)."""

    port: int
    protocol: str
    service: str
    target: str
    backend: str | None
    note: str = ""


@dataclass(frozen=True)
class Cache:
    """A cache section: responses are kept at most ``max_age`` seconds."""

    name: str
    max_age: int


@dataclass(frozen=True)
class EdgePlan:
    """Everything the configuration of one edge host says, decided."""

    edge: str
    services: tuple[str, ...]
    listen: str
    v4v6: bool
    http_port: int
    https_port: int
    has_routes: bool
    routes: tuple[HttpRoute, ...]
    passthrough: tuple[Passthrough, ...]
    redirect_all: tuple[str, ...]
    tcp: tuple[TcpPort, ...]
    backends: tuple[Backend, ...]
    caches: tuple[Cache, ...]
    skipped: tuple[str, ...]
    #: Where connections come from that start with the PROXY protocol (load balancers in front).
    accept_proxy: tuple[str, ...] = ()
    #: Where ACME http-01 challenges go (``acme.responder_port`` on the edge's loopback).
    responder: str = ACME_RESPONDER

    @property
    def terminated(self) -> tuple[str, ...]:
        """Return the domains whose TLS the edge terminates (one certificate each), sorted."""
        return tuple(sorted({r.domain for r in self.routes if r.https}))


def ident(name: str) -> str:
    """Given a name from the inventory, return it as a valid HAProxy identifier."""
    return _IDENT_BAD.sub("-", name) or "-"


def comment(text: str) -> str:
    """Given free text, return it safe for one comment line (no control characters)."""
    return "".join(c if c.isprintable() else " " for c in text)


def host_name(name: str) -> str | None:
    """Given a domain, return its ASCII (IDNA) lowercase form, or None if it is no host name."""
    try:
        ascii_name = name if name.isascii() else name.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    ascii_name = ascii_name.lower().rstrip(".")
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    return ascii_name


def path_prefix(path: str) -> str | None:
    """Given a route path, return the prefix HAProxy compares ("" for every path).

    The trailing slash is dropped (``/api/`` means ``/api``) and characters clients
    percent-encode are encoded. Return None if the path holds control characters.
    """
    if any(not c.isprintable() for c in path):
        return None
    return quote(path.rstrip("/"), safe=_PATH_SAFE)


def check_uri(path: str) -> str | None:
    """Given a healthcheck path (query allowed), return it encoded, or None if unusable."""
    if not path.startswith("/") or any(not c.isprintable() for c in path):
        return None
    return quote(path, safe=_PATH_SAFE + "?")


def cache_name(duration: str) -> str:
    """Given a cache duration such as ``5m``, return the name of its cache section."""
    return f"cache_{duration}"


def server_address(address: str, port: int) -> tuple[str, bool] | None:
    """Given a host address and a port, return (``addr:port`` as HAProxy writes it, whether
    it is a DNS name), or None if the address is neither an IP address nor a host name."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        name = host_name(address)
        return (f"{name}:{port}", True) if name is not None else None
    return (f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"), False


def listen_address(inventory: Inventory, edge: str) -> tuple[str, bool]:
    """Return (the address part of every ``bind``, whether it also takes IPv4 on IPv6).

    The edge's ``bind`` when given; else all addresses: IPv4 and IPv6 when the edge host has a
    public IPv6 address, IPv4 only otherwise (a host without IPv6 cannot bind ``::``).
    """
    config = inventory.collective.edge
    if config is not None and config.bind is not None:
        ip = ipaddress.ip_address(config.bind)
        return (f"[{ip}]" if ip.version == 6 else str(ip)), False
    host = inventory.hosts.get(edge)
    if host is not None and host.public_ipv6:
        return "[::]", True
    return "", False


class _Planner:
    """Collects the plan of one edge host; use ``plan()``."""

    def __init__(self, inventory: Inventory, edge: str) -> None:
        self.inventory = inventory
        self.edge = edge
        self.backends: dict[tuple[str, str, str, Mode], Backend] = {}
        self.names: set[str] = set()
        self.skipped: list[str] = []
        self.check_hosts: dict[tuple[str, str, str], str] = {}

    def where(self, service: str, key: str) -> str:
        return f"{self.inventory.file('service', service)} {key}"

    def backend(self, service: str, target: str, mode: Mode, where: str) -> str | None:
        """Return the name of the backend for ``target`` of ``service``, made on first use.

        Return None (and note why) if the service has no such component or port.
        """
        component_name, port_name = derive.split_target(target)
        component = self.inventory.services[service].components.get(component_name)
        if component is None or port_name not in component.ports:
            self.skipped.append(f"{where}: {service} has no port {target}")
            return None
        key = (service, component_name, port_name, mode)
        if key not in self.backends:
            self.backends[key] = self._make(service, component_name, component, port_name, mode)
        return self.backends[key].name

    def _make(
        self, service: str, component_name: str, component: Component, port_name: str, mode: Mode
    ) -> Backend:
        name = ident(f"{service}_{component_name}_{port_name}")
        if mode == "tcp" and name in self.names:
            name = f"{name}_tcp"
        while name in self.names:
            name = f"{name}_"
        self.names.add(name)
        reach = derive.reach(self.inventory, self.edge, service, f"{component_name}.{port_name}")
        assert reach is not None, "backend() makes backends of existing ports only"
        host_of, address, port = reach.host, reach.address, reach.port
        note = ""
        if reach.only is not None:
            note = (
                f"{component_name}.{port_name} is published on {reach.only} of {host_of} only, "
                f"which no other host reaches: publish it on an address the edge reaches "
                f"(components.{component_name}.publish.{port_name}.bind in "
                f"{self.inventory.file('service', service)}) and render again"
            )
        elif not reach.published and not reach.bridge:
            note = (
                f"{component_name}.{port_name} is not published on {host_of}, so HAProxy "
                f"cannot reach it: publish it (components.{component_name}.publish."
                f"{port_name} in {self.inventory.file('service', service)}) and render again"
            )
        elif address is None:
            note = f"{host_of} has no `address`: give it one and render again"
        if component.replicas == 0:
            note = (
                f"{component_name} runs nowhere (`replicas: 0`): the edge sends only to its "
                "servers outside the inventory"
            )
        formatted = server_address(address or "127.0.0.1", port)
        if formatted is None:
            note = note or f"address {address!r} of {host_of} is no IP address or host name"
            formatted = server_address("127.0.0.1", port)
            assert formatted is not None
        health = self._health(service, component_name, component, port_name, mode)
        edge = component.edge.get(port_name)
        servers: list[Server] = []
        for number, server in enumerate(edge.servers if edge is not None else (), 2):
            at = server_address(server.host, server.port)
            assert at is not None, "the inventory checks each server's address"
            called = f"{ident(component_name)}-{number}"
            servers.append(Server(called, *at, server.backup, server.weight))
        return Backend(
            name=name,
            mode=mode,
            service=service,
            component=component_name,
            port=port_name,
            host=host_of,
            address=formatted[0],
            dns=formatted[1],
            note=note,
            health=health,
            servers=tuple(servers),
            backup=edge.backup if edge is not None else False,
            balance=edge.balance if edge is not None else "roundrobin",
            proxy=edge.proxy_protocol if edge is not None else None,
            weight=edge.weight if edge is not None else None,
        )

    def _health(
        self, service: str, component_name: str, component: Component, port_name: str, mode: Mode
    ) -> Health:
        check = component.healthcheck
        if check is None:
            return Health()
        if check.http is not None:
            checked = check.port or (
                next(iter(component.ports)) if len(component.ports) == 1 else port_name
            )
        else:
            checked = check.tcp or port_name
        other: int | None = None
        note = ""
        if checked != port_name:
            found = component.publish.get(checked)
            other = found.port if found is not None else None
            if other is None:
                note = (
                    f"the healthcheck's port {checked} is not published: HAProxy only "
                    f"checks that {port_name} accepts connections"
                )
        path = None
        if check.http is not None and mode == "http" and not note:
            path = check_uri(check.http)
        return Health(
            http_path=path,
            http_host=self.check_hosts.get((service, component_name, port_name)) if path else None,
            port=other,
            interval=check.interval,
            timeout=check.timeout,
            retries=check.retries,
            note=note,
        )


def _routes(
    planner: _Planner, services: list[str]
) -> tuple[list[HttpRoute], list[Passthrough], list[str]]:
    """Return the HTTP routes (longest prefix first within a domain), the passthrough SNI
    names by backend, and the passthrough domains the HTTP port redirects whole."""
    inventory = planner.inventory
    routes: list[HttpRoute] = []
    sni: dict[str, tuple[str, list[str]]] = {}
    redirect_all: set[str] = set()
    for name in services:
        service = inventory.services[name]
        for i, route in enumerate(service.routes):
            where = planner.where(name, f"routes[{i}]")
            domain = host_name(route.domain)
            if domain is None:
                planner.skipped.append(f"{where}: {route.domain!r} is no host name")
                continue
            if route.tls == "passthrough":
                backend = planner.backend(name, route.to, "tcp", where)
                if backend is not None:
                    sni.setdefault(backend, (name, []))[1].append(domain)
                    if route.redirect_https is not False:
                        redirect_all.add(domain)
                if route.path != "/":
                    planner.skipped.append(
                        f"{where}: {domain} is passed through whole; its path {route.path} "
                        "cannot be routed (the edge never sees the encrypted request)"
                    )
                continue
            prefix = path_prefix(route.path)
            if prefix is None:
                planner.skipped.append(f"{where}: the path holds control characters")
                continue
            component, port = derive.split_target(route.to)
            planner.check_hosts.setdefault((name, component, port), domain)
            backend = planner.backend(name, route.to, "http", where)
            if backend is None:
                continue
            terminate = route.tls == "terminate"
            redirect = terminate and route.redirect_https is not False
            routes.append(
                HttpRoute(
                    service=name,
                    domain=domain,
                    prefix=prefix,
                    backend=backend,
                    https=terminate,
                    plain=not redirect,
                    redirect=redirect,
                    cache=cache_name(route.cache) if route.cache else None,
                )
            )
    routes.sort(key=lambda r: (r.domain, -len(r.prefix), r.prefix))
    passthrough = [
        Passthrough(backend, service, tuple(sorted(set(domains))))
        for backend, (service, domains) in sorted(sni.items())
    ]
    return routes, passthrough, sorted(redirect_all)


def _tcp(planner: _Planner, services: list[str], reserved: set[int]) -> list[TcpPort]:
    ports: list[TcpPort] = []
    taken: dict[int, str] = {}
    for name in services:
        for i, expose in enumerate(planner.inventory.services[name].expose):
            where = planner.where(name, f"expose[{i}]")
            note = ""
            backend: str | None = None
            if expose.protocol != "tcp":
                note = (
                    f"HAProxy cannot carry UDP: forward udp/{expose.port} to {name} "
                    f"{expose.to} another way (the engine's port mapping, or nftables)"
                )
            elif expose.port in reserved:
                note = f"port {expose.port} is the proxy's own HTTP or HTTPS port"
            elif expose.port in taken:
                note = f"port {expose.port} is already exposed by {taken[expose.port]}"
            else:
                taken[expose.port] = name
                backend = planner.backend(name, expose.to, "tcp", where)
                if backend is None:
                    continue
            ports.append(TcpPort(expose.port, expose.protocol, name, expose.to, backend, note))
    return sorted(ports, key=lambda p: (p.port, p.protocol, p.service))


def plan(inventory: Inventory, edge: str) -> EdgePlan:
    """Given an inventory and one of its edge hosts, return what that edge's HAProxy does.

    Covers the services the edge serves (``derive.served_by``). Never raises for what a user
    wrote: what HAProxy cannot do is left out and said in ``skipped`` or a note.
    """
    services = derive.served_by(inventory, edge)
    config = inventory.collective.edge
    http_port = config.http_port if config is not None else 80
    https_port = config.https_port if config is not None else 443
    listen, v4v6 = listen_address(inventory, edge)
    planner = _Planner(inventory, edge)
    routes, passthrough, redirect_all = _routes(planner, services)
    has_routes = any(inventory.services[s].routes for s in services)
    tcp = _tcp(planner, services, {http_port, https_port} if has_routes else set())
    durations = {
        cache_name(r.cache): r.cache
        for s in services
        for r in inventory.services[s].routes
        if r.cache is not None
    }
    caches = sorted({r.cache for r in routes if r.cache is not None})
    return EdgePlan(
        edge=edge,
        services=tuple(services),
        listen=listen,
        v4v6=v4v6,
        http_port=http_port,
        https_port=https_port,
        has_routes=has_routes,
        routes=tuple(routes),
        passthrough=tuple(passthrough),
        redirect_all=tuple(redirect_all),
        tcp=tuple(tcp),
        backends=tuple(sorted(planner.backends.values(), key=lambda b: b.name)),
        caches=tuple(Cache(name, max(1, math.ceil(seconds(durations[name])))) for name in caches),
        skipped=tuple(planner.skipped),
        responder=responder(inventory),
        accept_proxy=config.accept_proxy if config is not None else (),
    )


def responder(inventory: Inventory) -> str:
    """Return where the edge sends ACME http-01 challenges: ``127.0.0.1:<acme.responder_port>``
    (``ACME_RESPONDER`` by default)."""
    acme = inventory.collective.acme
    return f"127.0.0.1:{acme.responder_port}" if acme is not None else ACME_RESPONDER
