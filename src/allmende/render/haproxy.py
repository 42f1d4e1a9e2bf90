"""HAProxy for every edge host: ``<edge>/etc/haproxy/haproxy.cfg`` and ``certs.list``.

``render(inventory)`` writes, for each host in ``edge.hosts``, the configuration of the services
that edge serves (``derive.served_by``); what to do is decided in ``haproxy_plan``, and this
module only writes it down. The configuration needs HAProxy 2.6 or later and reads, in order:

``global``
    master-worker mode (reload with ``echo reload | socat <master socket> -`` or SIGUSR2 to the
    master without dropping a connection), the admin socket ``/run/haproxy/admin.sock`` that
    hands the listening sockets to the next worker (``expose-fd listeners``), logs on stdout,
    workers as user haproxy in a chroot, TLS 1.2 or later with Mozilla's intermediate ciphers.
``defaults http`` / ``defaults tcp``
    every proxy names the one it starts from (``from http``), so TCP proxies get no HTTP
    options. Timeouts: connect 5 s, client and server 60 s, a request's headers 10 s,
    WebSocket and TCP tunnels 1 h. While a service has no server up (a stop-first
    replacement, an outage), HTTP clients get the maintenance page
    ``/etc/haproxy/errors/allmende-503.http`` (503, ``Retry-After``), not a bare 503.
``cache cache_<duration>``
    one per distinct ``cache`` duration of the routes, at most that long.
Behind load balancers that send the PROXY protocol (``edge.accept_proxy``), every frontend on
the edge's ports expects its header from them (``tcp-request connection expect-proxy layer4``)
and reads other connections as they come.
``frontend http`` (the edge's ``http_port``, 80)
    ``/.well-known/acme-challenge/`` goes to backend ``acme``, allmende's certificate job on
    ``127.0.0.1:<acme.responder_port>`` (8402); terminated routes are redirected to HTTPS
    (301) unless they say ``redirect_https: false``; passthrough names are redirected whole;
    ``tls: none`` routes and those not redirected are served in plain HTTP.
``frontend https`` (the edge's ``https_port``, 443, ``mode tcp``)
    reads the SNI of the TLS ClientHello: passthrough names go to their TCP backend still
    encrypted (it holds its own certificate), every other connection to ``https-terminate``.
``frontend https-terminate``
    listens on a unix socket in the chroot only, takes the client's address from the PROXY
    protocol, terminates TLS with the certificates listed in ``certs.list`` and routes like
    ``http``.
``frontend expose-<port>``
    one per TCP ``expose``, to its TCP backend. UDP cannot go through HAProxy: a comment says so.
``backend acme``, ``terminate-tls``, ``no-route`` and ``<service>_<component>_<port>``
    the last is one per routed or exposed port, reaching the published port on the service
    host's address (on the edge host itself: where compose publishes it), with the component's
    healthcheck as HAProxy check (its interval while up, every 2 s while down). An unpublished
    port is rendered as a disabled server with the reason. The component's ``edge`` settings
    for the port add a server per address outside the inventory (``<component>-2``, ...; the
    same check, on each server's own port), ``backup`` servers, a ``balance`` other than
    round-robin, and ``send-proxy``/``send-proxy-v2`` on every server of the backend.

HTTP routes match the Host header without port, lowercased, and the path by prefix with
exact-or-slash semantics, the longest prefix first. Every file listed in ``certs.list`` must
exist before HAProxy starts (apply writes a self-signed stand-in until the real certificate
arrives); each holds the certificate chain and the private key in one PEM file. A name that one
of ``acme.wildcards`` covers is served by that wildcard's file, listed once with the wildcard as
its SNI filter.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping

from allmende.inventory import derive
from allmende.inventory.certificates import covering
from allmende.inventory.hostpaths import (
    HAPROXY_ADMIN_SOCKET,
    HAPROXY_CERTS_LIST,
    HAPROXY_CHROOT,
    HAPROXY_CONFIG,
    HAPROXY_MAINTENANCE,
    certificate,
)
from allmende.inventory.inventory import Inventory
from allmende.render.haproxy_backends import backend_section, section
from allmende.render.haproxy_plan import (
    ACME_PATH,
    CACHE_OBJECT_BYTES,
    CACHE_SIZE_MB,
    EdgePlan,
    HttpRoute,
    comment,
    ident,
    plan,
)
from allmende.render.output import Rendered, header, service_sources, text

#: Mozilla's "intermediate" TLS configuration (TLS 1.2 and 1.3).
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

HOST = "hdr(host),field(1,:),lower"

GLOBAL = f"""\
global
    master-worker
    user haproxy
    group haproxy
    chroot {HAPROXY_CHROOT}
    log stdout format raw local0 info
    stats socket {HAPROXY_ADMIN_SOCKET} mode 600 level admin expose-fd listeners
    stats timeout 30s
    hard-stop-after 30m
    tune.ssl.default-dh-param 2048
    ssl-default-bind-ciphers {CIPHERS}
    ssl-default-bind-ciphersuites {CIPHERSUITES}
    ssl-default-bind-options prefer-client-ciphers ssl-min-ver TLSv1.2 no-tls-tickets

defaults http
    mode http
    log global
    option httplog
    option dontlognull
    option forwardfor
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout tunnel 1h
    errorfile 503 {HAPROXY_MAINTENANCE}

defaults tcp
    mode tcp
    log global
    option tcplog
    option dontlognull
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
"""


def terminate_socket(edge: str, inside_chroot: bool = False) -> str:
    """Return the unix socket between ``https`` and ``https-terminate`` of an edge: the master
    binds it by its full path, the chrooted workers connect to it by the path inside the
    chroot. Not an abstract (``abns@``) socket: with one, HAProxy 2.6 loses master and worker
    when a reload fails (a port in use), instead of keeping the old worker serving."""
    name = f"allmende-{ident(edge)}-https.sock"
    return f"unix@/{name}" if inside_chroot else f"unix@{HAPROXY_CHROOT}/{name}"


def _bind(p: EdgePlan, port: int) -> str:
    return f"bind {p.listen}:{port}" + (" v4v6" if p.v4v6 else "")


def _expect_proxy(p: EdgePlan) -> list[str]:
    """Return the rule that reads the PROXY protocol from the load balancers in front."""
    if not p.accept_proxy:
        return []
    return [f"tcp-request connection expect-proxy layer4 if {{ src {' '.join(p.accept_proxy)} }}"]


class _Acls:
    """The ACLs of one frontend: Host names and path prefixes, defined once each."""

    def __init__(self, path_names: dict[str, str]) -> None:
        self.path_names = path_names
        self.used: set[str] = set()

    def host(self, domain: str) -> str:
        self.used.add(f"host_{domain}")
        return f"host_{domain}"

    def path(self, prefix: str) -> str:
        self.used.add(self.path_names[prefix])
        return self.path_names[prefix]

    def definitions(self) -> list[str]:
        lines = []
        for name in sorted(self.used):
            if name.startswith("host_"):
                lines.append(f"acl {name} {HOST} -m str {name.removeprefix('host_')}")
        for prefix, name in sorted(self.path_names.items()):
            if name in self.used:
                lines += [f"acl {name} path {prefix}", f"acl {name} path_beg {prefix}/"]
        return lines

    def condition(
        self,
        route: HttpRoute,
        siblings: Mapping[str, list[HttpRoute]] | None = None,
        outcome: Callable[[HttpRoute], object] | None = None,
    ) -> str:
        """Return the condition matching ``route``; with ``outcome``, minus the longer
        prefixes among ``siblings[route.domain]`` whose outcome differs, since those win."""
        terms = [self.host(route.domain)]
        if route.prefix:
            terms.append(self.path(route.prefix))
        if outcome is None or siblings is None:
            return " ".join(terms)
        for other in siblings[route.domain]:
            if (
                len(other.prefix) > len(route.prefix)
                and (not route.prefix or other.prefix.startswith(route.prefix + "/"))
                and outcome(other) != outcome(route)
            ):
                terms.append("!" + self.path(other.prefix))
        return " ".join(terms)


def by_domain(routes: Iterable[HttpRoute]) -> dict[str, list[HttpRoute]]:
    """Return ``routes`` grouped by domain, in their order."""
    grouped: dict[str, list[HttpRoute]] = {}
    for route in routes:
        grouped.setdefault(route.domain, []).append(route)
    return grouped


def path_acl_names(routes: Iterable[HttpRoute]) -> dict[str, str]:
    """Return a distinct ACL name for every path prefix of ``routes`` (``/api`` ->
    ``path_api``), numbered when two prefixes would read the same."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for prefix in sorted({r.prefix for r in routes if r.prefix}):
        base = "path_" + ident(prefix.strip("/").replace("/", "_"))
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        names[prefix] = name
    return names


def _caching(acls: _Acls, routes: list[HttpRoute]) -> list[str]:
    cached = [r for r in routes if r.cache is not None]
    if not cached:
        return []
    lines = ["# responses kept at the edge for the routes with `cache`"]
    siblings = by_domain(routes)
    for route in cached:
        condition = acls.condition(route, siblings, lambda r: r.cache)
        lines.append(f"http-request set-var(txn.cache) str({route.cache}) if {condition}")
    for name in sorted({r.cache for r in cached if r.cache is not None}):
        lines.append(f"http-request cache-use {name} if {{ var(txn.cache) -m str {name} }}")
        lines.append(f"http-response cache-store {name} if {{ var(txn.cache) -m str {name} }}")
    return lines


def _routing(acls: _Acls, routes: list[HttpRoute]) -> list[str]:
    lines = []
    for route in routes:
        lines.append(comment(f"# {route.service}: {route.shown}"))
        lines.append(f"use_backend {route.backend} if {acls.condition(route)}")
    return [*lines, "default_backend no-route"]


def _http_frontend(p: EdgePlan, path_names: dict[str, str]) -> str:
    acls = _Acls(path_names)
    routes = [r for r in p.routes if r.plain or r.redirect]
    served = [r for r in routes if r.plain]
    rules = []
    if p.redirect_all:
        rules.append("# TLS passed through: the whole name to HTTPS, whose backend answers ACME")
        for domain in p.redirect_all:
            rules.append(f"http-request redirect scheme https code 301 if {acls.host(domain)}")
    redirected = [r for r in routes if r.redirect]
    siblings = by_domain(routes)
    if redirected:
        rules.append("# TLS terminated here: to HTTPS, except ACME challenges")
    for route in redirected:
        condition = acls.condition(route, siblings, lambda r: r.redirect)
        rules.append(f"http-request redirect scheme https code 301 if {condition} !acme_challenge")
    rules += _caching(acls, served)
    rules.append("use_backend acme if acme_challenge")
    rules += _routing(acls, served)
    return section(
        "frontend http from http",
        [
            _bind(p, p.http_port),
            *_expect_proxy(p),
            "http-request del-header X-Forwarded-For",
            "http-request set-header X-Forwarded-Proto http",
            f"acl acme_challenge path_beg {ACME_PATH}",
            *acls.definitions(),
            *rules,
        ],
    )


def _https_frontend(p: EdgePlan) -> str:
    lines = [
        _bind(p, p.https_port),
        *_expect_proxy(p),
        "tcp-request inspect-delay 5s",
        "tcp-request content accept if { req.ssl_hello_type 1 }",
    ]
    for passthrough in p.passthrough:
        lines.append(
            comment(f"# {passthrough.service}: TLS passed through, the backend has the certificate")
        )
        names = " ".join(passthrough.domains)
        lines.append(f"use_backend {passthrough.backend} if {{ req.ssl_sni -i {names} }}")
    if p.terminated:
        lines.append("default_backend terminate-tls")
    return section("frontend https from tcp", lines)


def _terminate_frontend(p: EdgePlan, path_names: dict[str, str]) -> str:
    acls = _Acls(path_names)
    routes = [r for r in p.routes if r.https]
    rules = [*_caching(acls, routes), *_routing(acls, routes)]
    socket = terminate_socket(p.edge)
    return section(
        "frontend https-terminate from http",
        [
            f"bind {socket} user haproxy mode 600 accept-proxy ssl crt-list {HAPROXY_CERTS_LIST} "
            "alpn h2,http/1.1",
            "http-request del-header X-Forwarded-For",
            "http-request set-header X-Forwarded-Proto https",
            *acls.definitions(),
            *rules,
        ],
    )


def _tcp_frontends(p: EdgePlan) -> list[str]:
    sections = []
    for port in p.tcp:
        if port.backend is None:
            sections.append(
                comment(
                    f"# Not carried: {port.protocol}/{port.port} of {port.service} "
                    f"({port.target}): {port.note}."
                )
                + "\n"
            )
            continue
        sections.append(
            section(
                f"frontend expose-{port.port} from tcp",
                [
                    comment(f"# {port.service}: {port.target}"),
                    _bind(p, port.port),
                    *_expect_proxy(p),
                    f"default_backend {port.backend}",
                ],
            )
        )
    return sections


def config(p: EdgePlan) -> str:
    """Given the plan of one edge host, return its ``haproxy.cfg`` (without the header)."""
    sections = [
        comment(f"# HAProxy 2.6+ on {p.edge}: check with `haproxy -c -f {HAPROXY_CONFIG}`.") + "\n",
        GLOBAL,
    ]
    if any(b.resolves for b in p.backends):
        sections.append(section("resolvers system", ["parse-resolv-conf"]))
    for cache in p.caches:
        sections.append(
            section(
                f"cache {cache.name}",
                [
                    f"total-max-size {CACHE_SIZE_MB}",
                    f"max-object-size {CACHE_OBJECT_BYTES}",
                    f"max-age {cache.max_age}",
                    "process-vary on",
                ],
            )
        )
    if p.skipped:
        sections.append(
            "".join(comment(f"# Left out: {note}.") + "\n" for note in p.skipped),
        )
    path_names = path_acl_names(p.routes)
    if p.has_routes:
        sections.append(_http_frontend(p, path_names))
        if p.passthrough or p.terminated:
            sections.append(_https_frontend(p))
        if p.terminated:
            sections.append(_terminate_frontend(p, path_names))
    sections += _tcp_frontends(p)
    if p.has_routes:
        sections.append(
            section(
                "backend acme from http",
                [
                    "# allmende's certificate job answers ACME http-01 challenges here",
                    f"server acme {p.responder}",
                ],
            )
        )
        sections.append(
            section(
                "backend no-route from http",
                [
                    "http-request return status 404 content-type text/plain "
                    'string "No site of this name here."',
                ],
            )
        )
    if p.terminated:
        sections.append(
            section(
                "backend terminate-tls from tcp",
                [f"server https-terminate {terminate_socket(p.edge, True)} send-proxy-v2"],
            )
        )
    sections += [backend_section(b) for b in p.backends]
    return "\n".join(sections)


def crt_list(p: EdgePlan, wildcards: tuple[str, ...] = ()) -> str:
    """Given the plan of one edge host and the collective's wildcard certificates, return its
    ``certs.list`` (without the header): one line per terminated name, or per wildcard that
    covers some of them (``inventory.certificates.covering``)."""
    lines = [
        "# One line per name whose TLS this edge terminates: the PEM file (certificate chain",
        "# and private key) that allmende's certificate job keeps, and the SNI name it serves.",
    ]
    names = sorted({covering(domain, wildcards) or domain for domain in p.terminated})
    lines += [f"{certificate(name)} {name}" for name in names]
    return "\n".join(lines)


def _sources(inventory: Inventory, edge: str, services: Iterable[str]) -> tuple[str, ...]:
    files = set(service_sources(inventory, *services))
    if ("host", edge) in inventory.files:
        files.add(inventory.file("host", edge))
    return tuple(sorted(files))


def render(inventory: Inventory) -> dict[str, Rendered]:
    """Given an inventory, return ``haproxy.cfg``, ``certs.list`` and the maintenance page of
    every edge host.

    An inventory without an edge gets no files. The output is a pure function of the
    inventory: the same inventory always gives the same bytes.
    """
    files: dict[str, Rendered] = {}
    for edge in derive.edge_hosts(inventory):
        p = plan(inventory, edge)
        used = [
            s for s in p.services if inventory.services[s].routes or inventory.services[s].expose
        ]
        terminated = sorted({r.service for r in p.routes if r.https})
        owner = inventory.collective.name
        files[f"{edge}{HAPROXY_CONFIG}"] = text(
            config(p), _sources(inventory, edge, used), collective=owner
        )
        acme = inventory.collective.acme
        files[f"{edge}{HAPROXY_CERTS_LIST}"] = text(
            crt_list(p, acme.wildcards if acme is not None else ()),
            _sources(inventory, edge, terminated),
            collective=owner,
        )
        files[f"{edge}{HAPROXY_MAINTENANCE}"] = Rendered(
            maintenance_page(inventory), ("allmende.yaml",), 0o644
        )
    return files


def maintenance_page(inventory: Inventory) -> bytes:
    """Return the HTTP response (503, HTML) the edge answers with while a service has no
    server up: during a stop-first replacement, or when it is down. Who runs the servers and
    how to reach them, from ``allmende.yaml``; no secret, no internal name."""
    collective = inventory.collective
    who = html.escape(collective.description or collective.name)
    contact = f"<p>Questions: {html.escape(collective.contact)}</p>" if collective.contact else ""
    body = (
        "<!doctype html>\n<!-- "
        + header(["allmende.yaml"], "", collective=collective.name).strip().replace("\n ", " ")
        + ' -->\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Back in a moment</title></head>\n<body>\n<h1>Back in a moment</h1>\n"
        "<p>This service is being updated or is down for maintenance. Please try again in a "
        f"minute.</p>\n<p>{who}</p>\n{contact}\n</body></html>\n"
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Cache-Control: no-store\r\n"
        "Retry-After: 30\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + body
