"""How apply starts HAProxy where none runs: under systemd through the Debian unit with a
drop-in naming the master socket, elsewhere as a daemon (the end-to-end tests run the daemon
for real; this machine has no systemd, so the unit path is checked by the commands it runs)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from allmende.apply.proxy import DROP_IN, ensure_running
from allmende.connectors.base import Connector, Ran

SHOW_PROC = (
    "#<PID>          <type>          <reloads>       <uptime>        <version>\n"
    "4242            master          0 [failed: 0]   0d00h00m01s     2.6.12\n"
    "# workers\n"
    "4243            worker          0               0d00h00m01s     2.6.12\n"
)


class Host(Connector):
    """Records what it is asked to do; the master answers once something started it."""

    def __init__(self, systemd: bool) -> None:
        self.host = "gateway"
        self.systemd = systemd
        self.started = False
        self.commands: list[list[str]] = []
        self.written: dict[str, tuple[bytes, int]] = {}

    async def run(self, argv: Sequence[str], input: bytes | None = None) -> Ran:
        command = list(argv)
        if command[0] == "python3":  # the master socket
            if not self.started:
                return Ran(3, b"", b"connection refused")
            return Ran(0, SHOW_PROC.encode(), b"")
        self.commands.append(command)
        if command[:2] == ["test", "-d"]:
            return Ran(0 if self.systemd else 1, b"", b"")
        if command[:2] == ["systemctl", "restart"] or (command[0] == "haproxy" and "-D" in command):
            self.started = True
        return Ran(0, b"", b"")

    async def write_atomic(self, path: str, data: bytes, mode: int) -> None:
        self.written[path] = (data, mode)


def test_under_systemd_the_debian_unit_gets_the_master_socket_and_is_restarted() -> None:
    host = Host(systemd=True)
    processes = asyncio.run(ensure_running(host))
    assert processes.workers == frozenset({4243})
    text = host.written[DROP_IN][0].decode()
    assert '"EXTRAOPTS=-S /run/haproxy/master.sock,mode,600"' in text
    assert "[Service]" in text
    started = [c for c in host.commands if c[0] in ("systemctl", "haproxy")]
    assert started == [
        ["haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "haproxy"],
        ["systemctl", "restart", "haproxy"],
    ]


def test_without_systemd_haproxy_starts_as_a_daemon_with_pidfile_and_master_socket() -> None:
    host = Host(systemd=False)
    asyncio.run(ensure_running(host))
    assert DROP_IN not in host.written
    (daemon,) = [c for c in host.commands if c[0] == "haproxy" and "-D" in c]
    assert daemon == [
        "haproxy",
        "-W",
        "-D",
        "-S",
        "/run/haproxy/master.sock,mode,600",
        "-p",
        "/run/haproxy/haproxy.pid",
        "-f",
        "/etc/haproxy/haproxy.cfg",
    ]
    assert not any(c[0] == "systemctl" for c in host.commands)


def test_a_running_master_is_left_alone() -> None:
    host = Host(systemd=True)
    host.started = True
    asyncio.run(ensure_running(host))
    assert host.commands == []
