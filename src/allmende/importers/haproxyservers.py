"""The ``server`` lines of an imported HAProxy backend, as the component's ``edge`` settings.

One server of a backend is the component a route sends to (``haproxy._Mapper.match``); every
other server that matches no component of the inventory is a server outside it
(``edge.<port>.servers``), with ``backup`` kept; ``send-proxy``/``send-proxy-v2`` become the
port's ``proxy_protocol`` and ``balance`` its balancing. What cannot be said that way (a server
of another component, a socket, servers that disagree on the PROXY protocol, another balancing
algorithm) is left for the caller to list by line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, get_args

from pydantic import ValidationError

from allmende.importers.haproxycfg import Line, Section
from allmende.inventory.inventory import Inventory
from allmende.inventory.upstreams import Balance, EdgeServer

_LOCAL = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_PROXY = {"send-proxy": "v1", "send-proxy-v2": "v2"}
#: Options of a ``server`` line the inventory holds: a health check (the component's
#: healthcheck), TLS to it (noted where it matters), the PROXY protocol, backup.
SERVER_SAID = frozenset({"check", "inter", "rise", "fall", "weight", "ssl", "verify", "sni"})
SERVER_SAID |= {"backup", *_PROXY}
#: Options followed by a value.
ARGUMENT = frozenset({"inter", "rise", "fall", "weight", "verify", "sni", "ca-file", "crt"})
ARGUMENT |= {"port", "maxconn", "cookie", "resolvers", "init-addr", "on-marked-down"}


def proxy_of(line: Line) -> str | None:
    """Return the PROXY protocol version a server line sends (``v1``, ``v2``), if any."""
    found = [_PROXY[w] for w in line.words[3:] if w in _PROXY]
    return found[-1] if found else None


def weight(line: Line) -> int | None:
    """Return a server line's ``weight`` (None: none, or none the inventory can say)."""
    words = line.words[3:]
    given = words[words.index("weight") + 1] if "weight" in words[:-1] else ""
    return int(given) if given.isdigit() and int(given) <= 256 else None


def backup(line: Line) -> bool:
    return "backup" in line.words[3:]


def outside(line: Line) -> str | None:
    """Return the server's address as the inventory writes a server outside it, or None if it
    is no ``<address>:<port>`` (a socket, a name HAProxy cannot take as a host, no port)."""
    address = re.sub(r"^ipv[46]@", "", line.words[2])
    try:
        return EdgeServer(address=address).address
    except ValidationError:
        return None


@dataclass(frozen=True)
class Target:
    """Where a backend sends: a service's component and port name."""

    service: str
    component: str
    port: str


def component_at(
    inventory: Inventory, edges: tuple[str, ...], backend: str, server: Line
) -> tuple[Target | None, str]:
    """Return the one component a server line of ``backend`` reaches, or None and why not:
    the host's address (or public address) and a published port, or the component's name and a
    port inside the container (HAProxy on the same Compose network)."""
    address = server.words[2]
    if address.startswith(("/", "unix@", "abns@")):
        return None, f"backend {backend} -> {address} is a socket, not a service"
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]").lower()
    if not port_text.isdigit():
        return None, f"backend {backend} -> {address} names no port"
    port = int(port_text)
    published: list[Target] = []
    inside: list[Target] = []
    for name, service in sorted(inventory.services.items()):
        machine = inventory.hosts.get(service.host)
        addresses = (
            {a.lower() for a in (machine.address, machine.public_ipv4, machine.public_ipv6) if a}
            if machine
            else set()
        )
        local = machine is not None and (machine.address is None or service.host in edges)
        for cname, component in service.components.items():
            extra = component.extensions.get("x-compose") or {}
            names = {cname, name, f"{name}-{cname}", str(extra.get("container_name", ""))}
            for pname, number in component.ports.items():
                on_host = component.publish.get(pname)
                if (
                    on_host is not None
                    and on_host.port == port
                    and (host in addresses or (host in _LOCAL and local))
                ):
                    published.append(Target(name, cname, pname))
                if host in names and number == port:
                    inside.append(Target(name, cname, pname))
    found = published or inside
    if len(found) == 1:
        return found[0], ""
    if not found:
        return None, f"backend {backend} -> {address} matches no published port in services/"
    shown = ", ".join(f"{t.service}/{t.component}.{t.port}" for t in found)
    return None, f"backend {backend} -> {address} matches several: {shown}"


@dataclass
class Placed:
    """The edge settings of one port as a backend's servers give them, and the lines said."""

    settings: dict[str, Any] = field(default_factory=dict)
    said: set[int] = field(default_factory=set)
    notes: list[tuple[int, str]] = field(default_factory=list)


def place(
    section: Section, own: Line, others: list[tuple[Line, str | None]], balance: Line | None
) -> Placed:
    """Given a backend, the server line that is the component, the other server lines (each
    with why it matches no component, or None when it matches another one) and the ``balance``
    line that applies (its own or its defaults'), return the port's ``edge`` settings (empty
    when the defaults say it all)."""
    out = Placed(said={own.number})
    servers: list[Any] = []
    proxies = {own.number: proxy_of(own)}
    for line, unmatched in others:
        if "disabled" in line.words[3:]:
            out.notes.append(
                (
                    line.number,
                    f"backend {section.name}: server {line.words[2]} is disabled: left out",
                )
            )
            continue
        address = outside(line) if unmatched is not None else None
        if address is None:
            why = unmatched or "it is another component of the inventory"
            out.notes.append(
                (line.number, f"backend {section.name}: server {line.words[2]} is kept out: {why}")
            )
            continue
        entry: dict[str, Any] = {"address": address}
        if backup(line):
            entry["backup"] = True
        if weight(line) is not None:
            entry["weight"] = weight(line)
        servers.append(entry if len(entry) > 1 else address)
        proxies[line.number] = proxy_of(line)
        out.said.add(line.number)
    proxy = proxies[own.number]
    for number, theirs in proxies.items():
        if theirs != proxy:
            out.notes.append(
                (number, f"backend {section.name}: servers differ in the PROXY protocol; the "
                 f"inventory says one for the port ({proxy or 'none'})")
            )  # fmt: skip
    if servers:
        out.settings["servers"] = servers
    if servers and weight(own) is not None:
        out.settings["weight"] = weight(own)
    active = [s for s in servers if isinstance(s, str) or not s.get("backup")]
    if backup(own) and active:
        out.settings["backup"] = True
    if balance is not None and len(balance.words) > 1 and servers:
        if balance.words[1] in get_args(Balance) and len(balance.words) == 2:
            if balance.words[1] != "roundrobin":
                out.settings["balance"] = balance.words[1]
        else:
            out.notes.append(
                (balance.number, f"the inventory cannot say `{' '.join(balance.words)}`")
            )
    if proxy is not None:
        out.settings["proxy_protocol"] = proxy
    return out
