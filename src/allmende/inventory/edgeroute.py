"""Where a probe of a public name connects: a domain routed by the inventory goes to its edge
host directly (DNS may not point there yet, or may point somewhere wrong: that is the DNS
probe's business), on the edge's HTTP or HTTPS port, with the domain as Host header and TLS
server name; any other name is connected to as written."""

from __future__ import annotations

from dataclasses import dataclass

from allmende.inventory import derive
from allmende.inventory.inventory import Inventory


@dataclass(frozen=True)
class Target:
    """Where a probe connects: address and port, and the name it speaks to."""

    address: str
    port: int
    name: str


def edge_address(inventory: Inventory, edge: str) -> str:
    """Return the address allmende reaches an edge host's proxy at: the edge's ``bind``
    address, else the host's ``address``, else 127.0.0.1 (this machine). An edge that is a
    container its parent makes (``system:``) is reached where its parent passes it the edge's
    ports: on the parent's address."""
    host = inventory.hosts[edge]
    parent = inventory.hosts.get(host.parent or "")
    if host.system is not None and parent is not None:
        return parent.address or "127.0.0.1"
    bind = inventory.collective.edge.bind if inventory.collective.edge else None
    if bind and bind not in derive.EVERY_INTERFACE:
        return bind
    return host.address or "127.0.0.1"


def target(
    inventory: Inventory, name: str, port: int, scheme: str | None, edge: str | None = None
) -> Target:
    """Return where to connect for ``name:port``: a domain routed through an edge goes to the
    edge (``edge`` if given, else the first that serves it; its HTTP/HTTPS port for the web
    schemes' standard ports), anything else as written."""
    edges = derive.domain_edges(inventory).get(name)
    settings = inventory.collective.edge
    if edges and settings is not None:
        if scheme == "https" and port == 443:
            port = settings.https_port
        elif scheme == "http" and port == 80:
            port = settings.http_port
        return Target(edge_address(inventory, edge if edge in edges else edges[0]), port, name)
    return Target(name, port, name)
