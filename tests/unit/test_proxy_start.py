"""How apply starts HAProxy where none runs: under systemd through the Debian unit with a
drop-in naming the master socket, elsewhere as a daemon (the end-to-end tests run the daemon
for real; this machine has no systemd, so the unit path is checked by the commands it runs)."""

from __future__ import annotations

import asyncio

from allmende.apply.proxy import ensure_running
from allmende.connectors.base import Ran
from allmende.inventory.hostpaths import HAPROXY_DROP_IN as DROP_IN
from allmende.inventory.load import load
from allmende.plan.actions import plan_actions
from allmende.render.output import Rendered
from tests.conftest import BASE
from tests.memory import MemoryHost

SHOW_PROC = (
    "#<PID>          <type>          <reloads>       <uptime>        <version>\n"
    "4242            master          0 [failed: 0]   0d00h00m01s     2.6.12\n"
    "# workers\n"
    "4243            worker          0               0d00h00m01s     2.6.12\n"
)


class Host(MemoryHost):
    """Records what it is asked to run; the master answers once something started it."""

    def __init__(self, systemd: bool) -> None:
        super().__init__("gateway")
        self.started = False
        self.answer(["python3"], self.master)
        self.answer(["test", "-d"], Ran(0 if systemd else 1, b"", b""))
        self.answer(["systemctl", "restart"], self.start)
        self.answer(["systemctl"], Ran(0, b"", b""))
        self.answer(["haproxy"], self.start)
        self.answer(["mkdir"], Ran(0, b"", b""))

    def master(self, command: tuple[str, ...], input: bytes | None) -> Ran:
        if not self.started:
            return Ran(3, b"", b"connection refused")
        return Ran(0, SHOW_PROC.encode(), b"")

    def start(self, command: tuple[str, ...], input: bytes | None) -> Ran:
        if command[0] == "systemctl" or "-D" in command:
            self.started = True
        return Ran(0, b"", b"")

    @property
    def commands(self) -> list[list[str]]:
        """Every command run but those speaking to the master socket."""
        return [list(c) for c in self.ran if c[0] != "python3"]


def test_under_systemd_the_debian_unit_gets_the_master_socket_and_is_restarted() -> None:
    host = Host(systemd=True)
    processes = asyncio.run(ensure_running(host))
    assert processes.workers == frozenset({4243})
    text = host.text(DROP_IN)
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
    assert DROP_IN not in host.files
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


def test_a_host_root_confines_haproxy_too() -> None:
    """With ALLMENDE_HOST_ROOT (a staging root), plan and apply speak to the master socket,
    check the configuration and start HAProxy under that root, never the machine's own."""
    host = Host(systemd=False)
    host.root = "/staging"
    wanted = {"/etc/haproxy/haproxy.cfg": Rendered(b"global\n", ("allmende.yaml",))}
    model = load(BASE, {})
    actions = asyncio.run(plan_actions(host, model, [], wanted, None))
    assert [a.verb for a in actions] == ["start-proxy"]
    asyncio.run(ensure_running(host))
    every = [" ".join(c[:2]) if c[0] == "python3" else " ".join(c) for c in host.ran]
    spoken = [c[-2] for c in host.ran if c[0] == "python3"]
    assert set(spoken) == {"/staging/run/haproxy/master.sock"}
    assert "test -d /staging/run/systemd/system" in every
    assert "haproxy -c -f /staging/etc/haproxy/haproxy.cfg" in every
    assert (
        "haproxy -W -D -S /staging/run/haproxy/master.sock,mode,600 -p "
        "/staging/run/haproxy/haproxy.pid -f /staging/etc/haproxy/haproxy.cfg"
    ) in every
    assert not any("/etc/haproxy" in c and "/staging" not in c for c in every)
    assert "/run/haproxy" in host.dirs
