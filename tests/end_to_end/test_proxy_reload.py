"""apply's proxy part against the real HAProxy on 127.0.0.1 through the local connector.

* ``ensure_running`` starts HAProxy (master-worker, daemon, pidfile, master socket) from the
  rendered configuration of a copy of ``tests/fixtures/valid/render-edge`` when nothing runs,
  and leaves a running one alone.
* While 4 client threads send at least 5,000 requests (a new connection each), a route of the
  inventory moves between two Python backends, is rendered again and ``reload`` applies it
  4 times: no request fails, and after each reload requests follow the new route.
* A configuration HAProxy rejects (``haproxy -c`` fails) makes ``reload`` raise a clear
  UserError while the old worker goes on serving; ``show proc`` is read for ``[failed: N]``.

The copy uses ports 181xx/185xx so it never meets test_haproxy.py's edge. The master is stopped
by its pidfile at the end, and the test checks that no HAProxy process of it is left.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.end_to_end.test_haproxy import (
    EDGE_FIXTURE,
    need,
    prepared_copy,
    relocated,
    start,
    stop,
)

from allmende.apply.proxy import ensure_running, reload
from allmende.connectors.local import LocalConnector
from allmende.errors import UserError
from allmende.inventory.hostpaths import ProxyPaths
from allmende.inventory.load import load
from allmende.plan.proxy import Processes, parse_show_proc, show_proc
from allmende.render.haproxy import render

HTTP, HTTPS, EXPOSED = 18180, 18543, 18125
BACKEND_A, BACKEND_B = 18181, 18182
PORTS = {  # the fixture's port -> this test's
    "18080": str(HTTP),
    "18443": str(HTTPS),
    "18025": str(EXPOSED),
    "18053": "18153",
    "18081": str(BACKEND_A),
    "18082": str(BACKEND_B),
    "18444": "18544",
}
PLAIN_ROUTE = "  - domain: plain.test\n    to: {to}\n    tls: none\n"
ALLOW = "allow:\n  - {rule: routes.tls, reason: the test shows a route in plain HTTP}\n"
REQUESTS, THREADS, LOAD_SECONDS = 5000, 4, 40.0


@dataclass
class Edge:
    inventory: Path
    directory: Path
    paths: ProxyPaths
    connector: LocalConnector
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


def route_plain_to(inventory: Path, service: str) -> None:
    """Serve plain.test (plain HTTP) from ``service``: website (backend A) or api (backend B)."""
    website = (EDGE_FIXTURE / "services" / "website.yaml").read_text()
    api = (EDGE_FIXTURE / "services" / "api.yaml").read_text()
    for port, moved in PORTS.items():
        website, api = website.replace(port, moved), api.replace(port, moved)
    if service == "api":
        website = website.replace(PLAIN_ROUTE.format(to="web.http"), "").replace(ALLOW, "")
        api = api + PLAIN_ROUTE.format(to="app.http") + ALLOW
    (inventory / "services" / "website.yaml").write_text(website)
    (inventory / "services" / "api.yaml").write_text(api)


def rendered_config(edge: Edge) -> str:
    """Render the inventory and return its haproxy.cfg moved into the test directory."""
    return relocated(render(load(edge.inventory, {})), "edge", edge.directory / "haproxy")


def write_config(edge: Edge, content: str) -> None:
    config = Path(edge.paths.config)
    fresh = config.with_suffix(".new")
    fresh.write_text(content)
    fresh.replace(config)


def get(host: str, path: str = "/index.html") -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=5)
    try:
        connection.request("GET", path, headers={"Host": host, "Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not count)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def haproxy_pids(directory: Path) -> list[int]:
    """The running HAProxy processes started with a configuration under ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ours = argv[0].endswith(b"haproxy") and str(directory).encode() in b" ".join(argv)
            if ours and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def stop_master(edge: Edge) -> None:
    pidfile = Path(edge.paths.pidfile)
    if pidfile.exists():
        master = int(pidfile.read_text().split()[0])
        if alive(master):
            os.kill(master, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while haproxy_pids(edge.directory) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in haproxy_pids(edge.directory):  # only if SIGTERM did not end it
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    need("haproxy")
    directory = tmp_path_factory.mktemp("proxy")
    inventory = directory / "inventory"
    shutil.copytree(EDGE_FIXTURE, inventory)
    project = (EDGE_FIXTURE / "allmende.yaml").read_text()
    for port, moved in PORTS.items():
        project = project.replace(port, moved)
    (inventory / "allmende.yaml").write_text(project)
    route_plain_to(inventory, "website")
    config = prepared_copy(render(load(inventory, {})), "edge", directory / "haproxy")
    paths = ProxyPaths(
        config=str(config),
        master_socket=str(directory / "run" / "master.sock"),
        pidfile=str(directory / "run" / "haproxy.pid"),
    )
    running = Edge(inventory, directory, paths, LocalConnector("edge"))
    try:
        for name, backend_port in (("a", BACKEND_A), ("b", BACKEND_B)):
            root = directory / name
            root.mkdir()
            (root / "index.html").write_text(f"backend {name.upper()}\n")
            argv = [sys.executable, "-m", "http.server", str(backend_port), "--bind", "127.0.0.1"]
            start([*argv, "-d", str(root)], backend_port, directory, name, running.processes)
        yield running
    finally:
        stop_master(running)
        stop(running.processes)
        assert not haproxy_pids(directory), "HAProxy processes left behind"


def test_ensure_running_starts_haproxy_when_nothing_runs(edge: Edge) -> None:
    assert asyncio.run(show_proc(edge.connector, edge.paths)) is None, "nothing runs yet"
    started = asyncio.run(ensure_running(edge.connector, edge.paths))
    assert started.workers and started.failed == 0
    assert int(Path(edge.paths.pidfile).read_text().split()[0]) == started.master
    assert get("plain.test") == (200, "backend A\n")
    again = asyncio.run(ensure_running(edge.connector, edge.paths))
    assert (again.master, again.workers) == (started.master, started.workers), "left alone"


@dataclass
class Load:
    """Client threads sending GETs for plain.test, a new connection each."""

    sent: int = 0
    bodies: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough: threading.Event = field(default_factory=threading.Event)

    def client(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            with self.lock:
                if self.enough.is_set() and self.sent >= REQUESTS:
                    return
                self.sent += 1
            try:
                status, body = get("plain.test")
            except OSError as exc:
                with self.lock:
                    self.failures.append(repr(exc))
                continue
            with self.lock:
                if status == 200:
                    self.bodies[body] += 1
                else:
                    self.failures.append(f"{status} {body!r}")


def wait_for_body(wanted: str) -> None:
    deadline = time.monotonic() + 5
    while (seen := get("plain.test")) != (200, wanted):
        assert time.monotonic() < deadline, f"still {seen} after the reload, wanted {wanted!r}"
        time.sleep(0.05)


def test_reloads_under_load_lose_no_request_and_follow_the_new_route(edge: Edge) -> None:
    asyncio.run(ensure_running(edge.connector, edge.paths))
    load_ = Load()
    deadline = time.monotonic() + LOAD_SECONDS
    threads = [threading.Thread(target=load_.client, args=(deadline,)) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    workers: set[int] = set()
    try:
        time.sleep(0.5)
        for service, body in (
            ("api", "backend B\n"),
            ("website", "backend A\n"),
            ("api", "backend B\n"),
            ("website", "backend A\n"),
        ):
            route_plain_to(edge.inventory, service)
            write_config(edge, rendered_config(edge))
            after = asyncio.run(reload(edge.connector, edge.paths))
            assert after.failed == 0
            workers |= after.workers
            wait_for_body(body)
            time.sleep(0.3)
    finally:
        load_.enough.set()
        for thread in threads:
            thread.join()
    print(
        f"requests: {load_.sent} sent, {dict(load_.bodies)} answered, {len(load_.failures)} failed"
    )
    assert load_.sent >= REQUESTS, "the load ended on its time limit"
    assert load_.failures == []
    assert sum(load_.bodies.values()) == load_.sent
    assert len(workers) == 4, "each reload started a new worker"
    assert load_.bodies["backend A\n"] > 0 and load_.bodies["backend B\n"] > 0


def test_rejected_configuration_keeps_the_old_worker_serving(edge: Edge) -> None:
    asyncio.run(ensure_running(edge.connector, edge.paths))
    good = Path(edge.paths.config).read_text()
    before = asyncio.run(show_proc(edge.connector, edge.paths))
    assert before is not None
    served = get("plain.test")
    assert served[0] == 200

    write_config(edge, good.replace("    mode http\n", "    mode http\n    no-such-keyword\n", 1))
    with pytest.raises(UserError, match=r"HAProxy rejects .*nothing was reloaded:\n.*\[ALERT\]"):
        asyncio.run(reload(edge.connector, edge.paths))
    assert get("plain.test") == served

    for _ in range(20):
        assert get("plain.test") == served

    write_config(edge, good)
    after = asyncio.run(reload(edge.connector, edge.paths))
    assert after.failed == before.failed and after.workers - before.workers
    assert get("plain.test") == served


SHOW_PROC = """\
#<PID>          <type>          <reloads>       <uptime>        <version>
5786            master          3 [failed: 1]   0d00h00m11s     2.6.12-1+deb12u4
# workers
5790            worker          0               0d00h00m01s     2.6.12-1+deb12u4
# old workers
5787            worker          2               0d00h00m11s     2.6.12-1+deb12u4
# programs
"""


def test_show_proc_is_read_for_reloads_failures_and_current_workers() -> None:
    assert parse_show_proc(SHOW_PROC) == Processes(5786, 3, 1, frozenset({5790}))
    assert parse_show_proc("Unknown command") is None
