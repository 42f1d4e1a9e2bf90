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
from urllib.parse import urlsplit, urlunsplit

import httpx

from allmende.inventory import derive
from allmende.inventory.edgeroute import Target, edge_address, target
from allmende.inventory.inventory import Inventory
from allmende.inventory.models import Monitor

#: How long a monitor is retried after an apply, in seconds.
TIMEOUT = 60.0


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


__all__ = ["TIMEOUT", "Target", "edge_address", "probe", "target", "verify"]


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
