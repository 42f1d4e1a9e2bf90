"""Run a service's monitors right after apply changed it, from the machine allmende runs on.

A monitor names the public side (``https://wiki.nordlicht.example/``, ``mail.example:993``);
right after an apply DNS may not point there yet, and the certificate may still be a stand-in.
So a monitor whose host is a domain routed by the inventory is sent to its edge host directly
(the edge's ``bind`` address, else the host's ``address``, else 127.0.0.1 for this machine) on
the edge's HTTP or HTTPS port, with the domain as Host header and TLS server name, and the
certificate is not verified (expiry is the watcher's business). Any other host is connected to
as written. ``http`` monitors expect their ``expect.status`` and text, or without ``expect``
any answer below 400 (redirects are not followed: a login page's 302 is a good sign); ``tcp``
a connection; ``tls`` a TLS handshake. Each is tried until it passes or the time is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from allmende.inventory import derive
from allmende.inventory.inventory import Inventory
from allmende.inventory.models import Monitor

#: How long a monitor is retried after an apply, in seconds.
TIMEOUT = 60.0


@dataclass(frozen=True)
class Target:
    """Where a probe connects: address and port, and the name it speaks to."""

    address: str
    port: int
    name: str


def edge_address(inventory: Inventory, edge: str) -> str:
    """Return the address allmende reaches an edge host's proxy at. An edge that is a
    container its parent makes (``system:``) is reached where its parent passes it the edge's
    ports: on the parent's address."""
    host = inventory.hosts[edge]
    parent = inventory.hosts.get(host.parent or "")
    if host.system is not None and parent is not None:
        return parent.address or "127.0.0.1"
    bind = inventory.collective.edge.bind if inventory.collective.edge else None
    if bind and bind not in ("0.0.0.0", "::"):
        return bind
    return host.address or "127.0.0.1"


def target(inventory: Inventory, name: str, port: int, scheme: str | None) -> Target:
    """Return where to connect for ``name:port``: a domain routed through an edge goes to the
    edge (its HTTP/HTTPS port for web schemes), anything else as written."""
    edges = derive.domain_edges(inventory).get(name)
    edge = inventory.collective.edge
    if edges and edge is not None:
        if scheme == "https" and port == 443:
            port = edge.https_port
        elif scheme == "http" and port == 80:
            port = edge.http_port
        return Target(edge_address(inventory, edges[0]), port, name)
    return Target(name, port, name)


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


async def probe(inventory: Inventory, monitor: Monitor) -> str | None:
    """Probe once; return None when it passes, else what was wrong."""
    try:
        if monitor.http is not None:
            return await _http(inventory, monitor)
        hostport = monitor.tcp or monitor.tls or ""
        host, port = _split(hostport)
        where = target(inventory, host, port, "https" if monitor.tls is not None else None)
        context = None
        if monitor.tls is not None:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(
                where.address,
                where.port,
                ssl=context,
                server_hostname=where.name if context else None,
            ),
            5,
        )
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 5)
        return None
    except (OSError, ValueError, TimeoutError, httpx.HTTPError) as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _http(inventory: Inventory, monitor: Monitor) -> str | None:
    url = urlsplit(monitor.http or "")
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    where = target(inventory, host, port, url.scheme)
    address = f"[{where.address}]" if ":" in where.address else where.address
    direct = urlunsplit((url.scheme, f"{address}:{where.port}", url.path or "/", url.query, ""))
    contains = monitor.expect.contains if monitor.expect else None
    async with httpx.AsyncClient(verify=False, timeout=5, trust_env=False) as client:
        answer = await client.get(
            direct,
            headers={"Host": url.netloc},
            extensions={"sni_hostname": where.name} if url.scheme == "https" else {},
        )
    if monitor.expect is not None and answer.status_code != monitor.expect.status:
        return f"answered {answer.status_code}, expected {monitor.expect.status}"
    if monitor.expect is None and answer.status_code >= 400:
        return f"answered {answer.status_code}"
    if contains is not None and contains not in answer.text:
        return f"the answer does not contain {contains!r}"
    return None


def only_unplanned(inventory: Inventory, monitor: Monitor, unplanned: Collection[str]) -> bool:
    """Return whether a monitor can only pass through edge hosts this apply could not plan
    (a container its parent makes in this very apply: its proxy comes at the next one)."""
    text = monitor.http or monitor.tcp or monitor.tls or ""
    name = urlsplit(text).hostname if monitor.http else _split(text)[0]
    edges = derive.domain_edges(inventory).get(name or "") or ()
    return bool(edges) and all(e in unplanned for e in edges)


async def verify(
    inventory: Inventory,
    services: list[str],
    timeout: float = TIMEOUT,
    unplanned: Collection[str] = (),
) -> list[str]:
    """Run every monitor of ``services`` until each passes or ``timeout`` seconds are up;
    return what failed, one line each (empty: all passed). Monitors that can only pass through
    edge hosts in ``unplanned`` (not planned in this apply) are not run."""

    async def one(service: str, monitor: Monitor) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            wrong = await probe(inventory, monitor)
            if wrong is None:
                return None
            if time.monotonic() > deadline:
                shown = monitor.http or monitor.tcp or monitor.tls
                kind = "http" if monitor.http else "tcp" if monitor.tcp else "tls"
                return f"{service}: monitor {kind} {shown}: {wrong}"
            await asyncio.sleep(0.5)

    probes = [
        (s, m)
        for s in services
        for m in derive.monitors(inventory.services[s])
        if not only_unplanned(inventory, m, unplanned)
    ]
    results = await asyncio.gather(*(one(s, m) for s, m in probes))
    return [r for r in results if r is not None]
