"""Which certificates the collective's edges need, decided from the inventory alone.

Every domain of a route with ``tls: terminate`` is served with a certificate of its own, one
name each (``/etc/haproxy/certs/<domain>.pem``), unless one of ``acme.wildcards`` covers it:
``*.lab.example.org`` covers every name exactly one label below ``lab.example.org`` (as TLS
clients match a wildcard), and then that one certificate
(``/etc/haproxy/certs/_wildcard.lab.example.org.pem``) serves all of them. A certificate is
kept on every edge host that serves one of its names (``derive.domain_edges``).

How the CA checks each name: a wildcard always over ``dns-01``; any other name over
``acme.challenges[name]`` if given, else ``acme.challenge`` (``http-01`` by default). A
``dns-01`` name needs a managed zone (``domains:``) whose ``zones/<zone>.yaml`` says where its
updates go (``update:``); the check ``certs.dns`` says when one does not. Passthrough routes
are left alone: their backends hold their own certificates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from allmende.inventory import derive, dnsnames
from allmende.inventory.backups import channels_of
from allmende.inventory.certjob import Cert, Job, Update
from allmende.inventory.domains import managed_zone
from allmende.inventory.hostpaths import certificate
from allmende.inventory.inventory import Inventory

#: The account key of the collective's ACME account (one per collective), in the secret store.
ACCOUNT_SECRET = "acme/account-key"


def tsig_secret(zone: str) -> str:
    """Return the name of the secret holding the TSIG key of a zone's updates:
    ``dns/<zone>/tsig``."""
    return f"dns/{zone}/tsig"


@dataclass(frozen=True)
class Certificate:
    """One certificate the edges serve: its names, how the CA checks them, where it is kept."""

    #: The name it is known by: its domain, or the wildcard (``*.lab.example.org``).
    name: str
    challenge: str
    #: The managed zone the name falls under (None: no zone of the collective's).
    zone: str | None
    #: The PEM file (chain and key) on each edge host.
    pem: str
    edges: tuple[str, ...]
    #: The route domains it serves.
    covers: tuple[str, ...]
    #: The services whose routes it serves.
    services: tuple[str, ...]

    @property
    def wildcard(self) -> bool:
        """Whether it is a wildcard certificate."""
        return self.name.startswith("*.")


def _host_name(domain: str) -> str | None:
    """Return ``domain`` if it can be a TLS server name (no underscore), else None."""
    try:
        return dnsnames.domain(domain, underscore=False)
    except dnsnames.BadName:
        return None


def covering(domain: str, wildcards: tuple[str, ...]) -> str | None:
    """Return the wildcard of ``wildcards`` that covers ``domain`` (one label below it)."""
    parent = domain.partition(".")[2]
    return next((w for w in wildcards if w[2:] == parent), None)


def terminated(inventory: Inventory) -> dict[str, tuple[list[str], set[str]]]:
    """Return every domain routed with ``tls: terminate``, sorted, with the services routing
    it and the edge hosts that serve it."""
    found: dict[str, tuple[list[str], set[str]]] = {}
    for name, service in sorted(inventory.services.items()):
        for route in service.routes:
            domain = _host_name(route.domain) if route.tls == "terminate" else None
            if domain is None:
                continue
            services, edges = found.setdefault(domain, ([], set()))
            if name not in services:
                services.append(name)
            edges.update(derive.edges_of(inventory, name))
    return dict(sorted(found.items()))


def challenge_of(inventory: Inventory, name: str) -> str:
    """Return how the CA checks ``name`` (a domain or a wildcard)."""
    acme = inventory.collective.acme
    if name.startswith("*."):
        return "dns-01"
    if acme is None:
        return "http-01"
    return acme.challenges.get(name, acme.challenge)


def certificates(inventory: Inventory) -> list[Certificate]:
    """Return every certificate the edges serve (see the module docstring), sorted by name.
    Never raises for what a user wrote: a name that cannot be in a certificate is left out."""
    acme = inventory.collective.acme
    wildcards = acme.wildcards if acme is not None else ()
    grouped: dict[str, tuple[list[str], set[str], set[str]]] = {}
    for domain, (services, edges) in terminated(inventory).items():
        name = covering(domain, wildcards) or domain
        covers, serving, by = grouped.setdefault(name, ([], set(), set()))
        covers.append(domain)
        serving.update(services)
        by.update(edges)
    return [
        Certificate(
            name=name,
            challenge=challenge_of(inventory, name),
            zone=managed_zone(inventory, name.removeprefix("*.")),
            pem=certificate(name),
            edges=tuple(sorted(by)),
            covers=tuple(covers),
            services=tuple(sorted(serving)),
        )
        for name, (covers, serving, by) in sorted(grouped.items())
    ]


def served_by(inventory: Inventory, edge: str, domains: tuple[str, ...]) -> list[Certificate]:
    """Return the certificates the edge host ``edge`` serves for ``domains`` (the names its
    HAProxy terminates), sorted by name."""
    wanted = set(domains)
    return [c for c in certificates(inventory) if edge in c.edges and wanted.intersection(c.covers)]


def split_server(server: str, default_port: int = 53) -> tuple[str, int]:
    """Given ``address``, ``address:port`` or ``[v6]:port``, return (address, port)."""
    if server.startswith("["):
        address, _, rest = server[1:].partition("]")
        return address, int(rest[1:]) if rest.startswith(":") else default_port
    if server.count(":") == 1:
        address, _, port = server.partition(":")
        return address, int(port)
    return server, default_port


def _updates(inventory: Inventory, zones: set[str]) -> tuple[Update, ...]:
    found = []
    for zone in sorted(zones):
        model = inventory.zones.get(zone)
        if model is None or model.update is None:
            continue
        update = model.update
        address, port = split_server(update.server)
        check = update.check or tuple(f"{ns.rstrip('.')}:53" for ns in model.nameservers)
        found.append(
            Update(
                zone=zone,
                server=address,
                port=port,
                key=update.key,
                algorithm=update.algorithm,
                check=check or (f"{address}:{port}",),
            )
        )
    return tuple(found)


def job(inventory: Inventory, edge: str | None = None) -> Job | None:
    """Return the certificate job of the whole collective (``edge`` None: every certificate,
    each for all its edges), or the one an edge host's timer runs: the certificates that edge
    can renew alone (those only it serves, and every dns-01 one, for it alone). Return None
    without ``acme:`` or without a certificate to keep."""
    acme = inventory.collective.acme
    if acme is None:
        return None
    chosen = []
    for cert in certificates(inventory):
        if edge is None:
            chosen.append(cert)
        elif cert.edges == (edge,) or (cert.challenge == "dns-01" and edge in cert.edges):
            chosen.append(replace(cert, edges=(edge,)))
    if not chosen:
        return None
    return Job(
        collective=inventory.collective.name,
        directory=acme.directory,
        email=acme.email or "",
        renew_before_days=acme.renew_before_days,
        responder_port=acme.responder_port,
        certificates=tuple(Cert(c.name, c.challenge, c.pem, c.edges, c.zone or "") for c in chosen),
        updates=_updates(inventory, {c.zone for c in chosen if c.zone and c.challenge == "dns-01"}),
        notify=tuple(channels_of(inventory)),
        trust=acme.trust or "",
        host=edge or "",
    )
