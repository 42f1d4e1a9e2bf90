"""What HAProxy on an edge host is doing, read through its master socket (read only).

HAProxy runs in master-worker mode; its master socket answers ``show proc`` with the master's
reload and failure counts and the current workers. The socket is spoken to by a small fixed
Python program run on the host (``allmende.onhost.master_cli``: socat is not everywhere), the
socket path and the command passed as arguments. ``allmende.apply.proxy`` starts and reloads
HAProxy; the plan uses this module to see whether it runs at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from allmende import onhost
from allmende.connectors.base import Connector
from allmende.inventory.hostpaths import (
    HAPROXY_CONFIG,
    HAPROXY_MASTER_SOCKET,
    HAPROXY_PIDFILE,
    ProxyPaths,
)
from allmende.onhost.master_cli import NOBODY


def proxy_paths(connector: Connector) -> ProxyPaths:
    """Return where HAProxy's configuration, master socket and pidfile are for programs run on
    the host: under its root (``ALLMENDE_HOST_ROOT``, ``ALLMENDE_REMOTE_ROOT``), so that a plan
    or apply of a staging root never speaks to the machine's own HAProxy or reads its
    ``/etc/haproxy/haproxy.cfg``."""
    return ProxyPaths(
        connector.real(HAPROXY_CONFIG),
        connector.real(HAPROXY_MASTER_SOCKET),
        connector.real(HAPROXY_PIDFILE),
    )


@dataclass(frozen=True)
class Processes:
    """What ``show proc`` says: the master's reload and failure counts, the current workers."""

    master: int
    reloads: int
    failed: int
    workers: frozenset[int]


_MASTER = re.compile(r"^(\d+)\s+master\s+(\d+)\s+\[failed:\s*(\d+)\]", re.MULTILINE)
_WORKER = re.compile(r"^(\d+)\s+worker\b")


def parse_show_proc(text: str) -> Processes | None:
    """Return the processes ``show proc`` lists, or None if ``text`` is not its answer."""
    master = _MASTER.search(text)
    if master is None:
        return None
    workers: set[int] = set()
    section = ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line
            continue
        match = _WORKER.match(line)
        if match and section.strip() == "# workers":
            workers.add(int(match.group(1)))
    return Processes(
        int(master.group(1)), int(master.group(2)), int(master.group(3)), frozenset(workers)
    )


async def master_cli(connector: Connector, paths: ProxyPaths, command: str) -> str | None:
    """Send one command to the master socket; return the answer, or None if nothing listens.
    Raise CommandFailed if the socket cannot be spoken to."""
    ran = await connector.run(
        onhost.command("master_cli", paths.master_socket, command),
        ok=(0, NOBODY),
        timeout=30.0,
        what=f"speaking to the HAProxy master socket {paths.master_socket}",
    )
    if ran.exit == NOBODY:
        return None
    return ran.stdout.decode(errors="replace")


async def show_proc(connector: Connector, paths: ProxyPaths) -> Processes | None:
    """Return what the master says about its processes, or None if no master answers."""
    answer = await master_cli(connector, paths, "show proc")
    return None if answer is None else parse_show_proc(answer)
