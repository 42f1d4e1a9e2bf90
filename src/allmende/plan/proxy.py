"""What HAProxy on an edge host is doing, read through its master socket (read only).

HAProxy runs in master-worker mode; its master socket answers ``show proc`` with the master's
reload and failure counts and the current workers. The socket is spoken to by a small fixed
Python program run on the host with ``python3 -c`` (socat is not everywhere), the socket path
and the command passed as arguments. ``allmende.apply.proxy`` starts and reloads HAProxy; the
plan uses this module to see whether it runs at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from allmende.connectors.base import Connector, Ran
from allmende.errors import UserError

#: Sends one command (argv[2]) to the unix socket argv[1] and prints the answer. Exit 3 when
#: nothing listens there.
MASTER_CLI = """\
import socket, sys
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sys.argv[1])
except OSError as e:
    sys.stderr.write(str(e) + "\\n")
    sys.exit(3)
s.sendall(sys.argv[2].encode() + b"\\n")
s.shutdown(socket.SHUT_WR)
out = b""
try:
    while True:
        c = s.recv(65536)
        if not c:
            break
        out += c
except OSError:
    pass
sys.stdout.write(out.decode(errors="replace"))
"""


@dataclass(frozen=True)
class ProxyPaths:
    """Where HAProxy's configuration, master socket and pidfile are on the host."""

    config: str = "/etc/haproxy/haproxy.cfg"
    master_socket: str = "/run/haproxy/master.sock"
    pidfile: str = "/run/haproxy/haproxy.pid"


#: Where the Debian package keeps HAProxy's files.
PATHS = ProxyPaths()


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


def said(ran: Ran) -> str:
    """Return what a program printed, stdout then stderr, as text."""
    return (ran.stdout + ran.stderr).decode(errors="replace")


async def master_cli(connector: Connector, paths: ProxyPaths, command: str) -> str | None:
    """Send one command to the master socket; return the answer, or None if nothing listens."""
    ran = await connector.run(["python3", "-c", MASTER_CLI, paths.master_socket, command])
    if ran.exit == 3:
        return None
    if ran.exit != 0:
        raise UserError(
            f"{connector.host}: cannot speak to the HAProxy master socket "
            f"{paths.master_socket}: {said(ran).strip()}"
        )
    return ran.stdout.decode(errors="replace")


async def show_proc(connector: Connector, paths: ProxyPaths) -> Processes | None:
    """Return what the master says about its processes, or None if no master answers."""
    answer = await master_cli(connector, paths, "show proc")
    return None if answer is None else parse_show_proc(answer)
