"""Apply across two real hosts drops nothing: an edge VPS with HAProxy and a home server with
podman-compose, each a real sshd in a mount namespace of its own (``remote_pair``), with a
client sending requests through the edge the whole time.

The collective: ``site`` runs on the edge itself; ``pad`` (holds no data: replaced
start-first) and ``notes`` (a volume: replaced stop-first) run at home. Every service is the
busybox test image serving ``/www``. In order, on one pair of hosts:

- the first apply brings everything up and routes by domain;
- pad's published port moves: 0 requests fail while it does;
- notes changes: requests fail only inside the window the plan announced, and get the
  maintenance page meanwhile;
- home cannot be reached while pad's port moves again: the edge is left as it is, nothing
  fails on any route, the plan says what it held back and why; once home is back, the next
  apply does it;
- the connection to home is cut while pad comes up: the first error is reported, the edge is
  not changed, and the next apply (a new process, as a person would run it) converges.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.end_to_end.conftest import IMAGE, INDEX
from tests.end_to_end.remote import RemoteHost, _mount_ns
from tests.ports import free_port

from allmende.cli.main import main

#: At least this many requests go through the edge while each change is applied.
REQUESTS = 2000


@dataclass
class Pair:
    """The two hosts, the inventory that names them, and where the edge listens."""

    inventory: Path
    edge: RemoteHost
    home: RemoteHost
    http: int
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)

    def service(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(
            (self.inventory / f"services/{name}.yaml").read_text()
        )
        return data

    def write(self, path: str, data: dict[str, Any]) -> None:
        target = self.inventory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(data, sort_keys=False))

    def publish(self, name: str, port: int) -> None:
        data = self.service(name)
        data["components"]["app"]["publish"] = {"http": port}
        self.ports[name] = port
        self.write(f"services/{name}.yaml", data)


def busybox(host: str, port: int, description: str, **more: Any) -> dict[str, Any]:
    return {
        "description": description,
        "host": host,
        "components": {
            "app": {
                "image": IMAGE,
                "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                "ports": {"http": 8080},
                "publish": {"http": port},
                "healthcheck": {"http": "/", "port": "http", "interval": "2s"},
                **more,
            }
        },
        "routes": [
            {"domain": f"{description.split()[0].lower()}.test", "tls": "none", "to": "app.http"}
        ],
    }


@pytest.fixture(scope="module")
def pair(
    remote_pair: tuple[RemoteHost, RemoteHost], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    edge, home = remote_pair
    directory = tmp_path_factory.mktemp("pair")
    http = free_port()
    env = {
        **edge.connector_env,
        "ALLMENDE_STATE": str(directory / "state.sqlite"),
        "ALLMENDE_VERIFY_TIMEOUT": "30",
        "USER": "tester",
    }
    result = Pair(directory / "inventory", edge, home, http, env)
    result.write(
        "allmende.yaml",
        {
            "name": "pair",
            "description": "A collective with a VPS and a home server",
            "edge": {
                "hosts": ["edge"],
                "bind": "127.0.0.1",
                "http_port": http,
                "https_port": free_port(),
            },
        },
    )
    for name, host in (("edge", edge), ("home", home)):
        result.write(
            f"hosts/{name}.yaml",
            {
                "description": f"The {name}",
                "address": "127.0.0.1",
                "ssh": {"user": "root", "port": host.port},
                "runtime": "podman",
            },
        )
    result.ports = {name: free_port() for name in ("site", "pad", "notes")}
    result.write("services/site.yaml", busybox("edge", result.ports["site"], "Site of the edge"))
    result.write("services/pad.yaml", busybox("home", result.ports["pad"], "Pad for notes"))
    notes = busybox("home", result.ports["notes"], "Notes kept at home", volumes={"data": "/data"})
    notes["backup"] = {"consistency": "none"}
    notes["allow"] = [{"rule": "backups.required", "reason": "made for one test"}]
    result.write("services/notes.yaml", notes)
    yield result
    for host, services in ((edge, ("site",)), (home, ("pad", "notes"))):
        for name in services:
            for file in (f"/srv/{name}/compose.yaml", f"/srv/{name}/.allmende-next.compose.yaml"):
                project = name if "next" not in file else f"{name}-allmende-next"
                if host.local(file).exists():
                    host.run(["podman-compose", "-p", project, "-f", file, "down", "-t", "0"])
    pidfile = edge.local("/run/haproxy/haproxy.pid")
    if pidfile.exists():
        edge.run(["kill", pidfile.read_text().split()[0]])
        time.sleep(0.5)
    for host in (edge, home):
        host.empty("/srv", "/etc/haproxy", "/var/lib/allmende", "/run/haproxy")


def apply(pair: Pair, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    saved = dict(os.environ)
    os.environ.update(pair.env)
    try:
        code = main(["apply", str(pair.inventory), "--yes", *args])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out, err = capsys.readouterr()
    return code, out, err


class Client:
    """Requests through the edge, one connection each, to every domain given in turn, until
    stopped: each request's time, domain, status (0: no answer) and body."""

    def __init__(self, port: int, *domains: str) -> None:
        self.port = port
        self.domains = domains
        self.results: list[tuple[float, str, int, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for domain in self.domains:
                self.results.append((time.monotonic(), domain, *self._one(domain)))

    def _one(self, domain: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/", headers={"Host": domain, "Connection": "close"})
            answer = connection.getresponse()
            return answer.status, answer.read()
        except OSError as exc:
            return 0, str(exc).encode()
        finally:
            connection.close()

    def __enter__(self) -> Client:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        deadline = time.monotonic() + 120
        while len(self.results) < REQUESTS and time.monotonic() < deadline:
            time.sleep(0.1)
        self._stop.set()
        self._thread.join(timeout=30)

    def failed(self, domain: str | None = None) -> list[tuple[float, str, int, bytes]]:
        return [
            r
            for r in self.results
            if (domain is None or r[1] == domain) and r[2:] != (200, INDEX.encode())
        ]


def edge_config(pair: Pair) -> bytes:
    return pair.edge.local("/etc/haproxy/haproxy.cfg").read_bytes()


def test_the_first_apply_brings_both_hosts_up_and_routes_by_domain(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = apply(pair, capsys)
    assert code == 0, err
    with Client(pair.http, "site.test", "pad.test", "notes.test") as client:
        pass
    assert len(client.results) >= REQUESTS and client.failed() == []


def test_a_stateless_service_moves_its_port_without_one_failed_request(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    old = pair.ports["pad"]
    pair.publish("pad", free_port())
    with Client(pair.http, "pad.test") as client:
        code, out, err = apply(pair, capsys)
        during = len(client.results)
    assert code == 0, err
    assert "replace pad: its files change; start-first" in out
    assert f"127.0.0.1:{pair.ports['pad']}".encode() in edge_config(pair)
    assert f"127.0.0.1:{old}".encode() not in edge_config(pair)
    assert during > 0 and len(client.results) >= REQUESTS
    assert client.failed() == []
    # the version beside is gone again
    assert not pair.home.local("/srv/pad/.allmende-next.compose.yaml").exists()
    running = pair.home.run(["podman", "ps", "--format", "{{.Names}}"]).stdout.split()
    assert not [n for n in running if "allmende-next" in n]


def test_a_service_that_holds_data_fails_only_inside_the_announced_window(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pair.service("notes")
    data["components"]["app"]["env"] = {"NOTES_EDITION": "2"}
    pair.write("services/notes.yaml", data)
    with Client(pair.http, "notes.test") as client:
        started = time.monotonic()
        code, out, err = apply(pair, capsys)
        finished = time.monotonic()
    assert code == 0, err
    announced = re.search(
        r"up notes: its files change; stop-first \(it holds data\): .* at most (\d+) s", out
    )
    assert announced, out
    failed = client.failed()
    assert failed, "notes was stopped: some requests must have met the maintenance page"
    window = failed[-1][0] - failed[0][0]
    print(f"\nnotes: {len(failed)} of {len(client.results)} requests failed, in {window:.1f} s "
          f"(announced: at most {announced.group(1)} s)")  # fmt: skip
    assert window <= int(announced.group(1))
    assert started <= failed[0][0] and failed[-1][0] <= finished
    # one window: every request inside it failed, none outside
    inside = [r for r in client.results if failed[0][0] <= r[0] <= failed[-1][0]]
    assert len(inside) == len(failed)
    assert {r[2] for r in failed} == {503}
    assert all(b"being updated or is down for maintenance" in r[3] for r in failed)


def test_an_unreachable_home_leaves_the_edge_alone_and_the_next_apply_catches_up(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    before = edge_config(pair)
    home_file = pair.inventory / "hosts/home.yaml"
    reachable = home_file.read_text()
    home_file.write_text(reachable.replace(f"port: {pair.home.port}", f"port: {free_port()}"))
    pair.publish("pad", free_port())
    with Client(pair.http, "pad.test", "site.test") as client:
        code, _, err = apply(pair, capsys)
    assert code == 2, err
    assert "not planned: home" in err
    assert (
        "edge: HAProxy: /etc/haproxy/haproxy.cfg held back: it changes how the edge reaches "
        "services on home, which could not be read" in err
    )
    assert edge_config(pair) == before
    assert client.failed() == [] and len(client.results) >= REQUESTS

    home_file.write_text(reachable)
    with Client(pair.http, "pad.test", "site.test") as client:
        code, _, err = apply(pair, capsys)
    assert code == 0, err
    assert f"127.0.0.1:{pair.ports['pad']}".encode() in edge_config(pair)
    assert client.failed() == []


def _session_of(home: RemoteHost, words: tuple[str, ...]) -> int | None:
    """Return the pid of the sshd session (the listener's child) under which a process of
    ``home`` whose command line holds ``words`` runs, if one does."""
    namespace = _mount_ns(home.pid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or _mount_ns(entry.name) != namespace:
            continue
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if all(w.encode() in command for w in words):
                pid = int(entry.name)
                while pid > 1:
                    parent = int(
                        (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]).split()[1]
                    )
                    if parent == home.pid:
                        return pid
                    pid = parent
    return None


def test_a_connection_cut_during_up_reports_the_first_error_and_the_next_apply_converges(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    before = edge_config(pair)
    pair.publish("pad", free_port())
    cut: list[int] = []

    def cutter() -> None:
        deadline = time.monotonic() + 180
        while not cut and time.monotonic() < deadline:
            session = _session_of(pair.home, ("-p", "pad", "up"))
            if session is not None:
                os.kill(session, signal.SIGKILL)
                cut.append(session)
            time.sleep(0.05)

    watcher = threading.Thread(target=cutter, daemon=True)
    watcher.start()
    code, _, err = apply(pair, capsys)
    watcher.join(timeout=200)
    assert cut, "the connection was never cut"
    assert code == 2, err
    # the first error is home's own, not what the clean-up met after it
    assert "the connection was lost while podman-compose ran" in err
    assert "it goes together with home, whose apply failed" in err
    # connected again, home was rolled back in full and its lock released
    assert "rolled back" in err and "left problems" not in err
    assert not pair.home.local("/var/lib/allmende/apply.lock").exists()
    assert edge_config(pair) == before
    with Client(pair.http, "pad.test") as client:
        pass
    assert client.failed() == []

    done = subprocess.run(
        [sys.executable, "-m", "allmende", "apply", str(pair.inventory), "--yes"],
        env={**os.environ, **pair.env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert f"127.0.0.1:{pair.ports['pad']}".encode() in edge_config(pair)
    with Client(pair.http, "pad.test") as client:
        pass
    assert client.failed() == []
