"""Several servers behind one route, backups and the PROXY protocol, run by the real HAProxy.

An inventory on 127.0.0.1 (free ports) whose edge expects the PROXY protocol from 127.0.0.1,
as from a load balancer in front (``edge.accept_proxy``), and has two routes:

* ``many.test``: the component on its host (a Python web server) and, in its ``edge`` settings,
  a second server outside the inventory and a backup server (two more Python web servers).
  Requests are answered by both primaries in turn; with one stopped, every request is still
  answered (by the other); with both stopped, by the backup alone; with one back, never by the
  backup again.
* ``proxied.test``: a component whose port expects the PROXY protocol v2: a second real HAProxy
  binding with ``accept-proxy`` that answers with the client address it was given. The client
  sends its own PROXY header to the edge (as a load balancer in front would) with a
  documentation address; the backend answers with that address and port, so the edge kept the
  original client through both hops. A connection from there without the header is refused.

The rendered configuration passes ``haproxy -c``. Every process is stopped by its handle.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.end_to_end.test_haproxy import need, prepared_copy, start, stop, write
from tests.ports import free_port

from allmende.inventory.load import load
from allmende.render.haproxy import render

#: The client address the test's PROXY header claims (TEST-NET-2: only ever written, never
#: connected to).
CLIENT = ("198.51.100.55", 4444)

ECHO = """\
global
    log stdout format raw local0 info
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend echo
    bind 127.0.0.1:{port} accept-proxy
    http-request return status 200 content-type text/plain lf-string "client %[src]:%[src_port]"
"""


@dataclass
class Edge:
    directory: Path
    http: int
    config: Path
    servers: dict[str, subprocess.Popen[bytes]]
    ports: dict[str, int]
    processes: list[subprocess.Popen[bytes]]


def inventory(root: Path, http: int, ports: dict[str, int]) -> Path:
    write(
        root / "allmende.yaml",
        "name: servers\ndomains: [test]\n"
        f"edge: {{hosts: [edge], bind: 127.0.0.1, http_port: {http}, "
        f"https_port: {free_port()}, accept_proxy: [127.0.0.1]}}\n",
    )
    write(root / "hosts/edge.yaml", "address: 127.0.0.1\nengine: compose\n")
    write(root / "hosts/apps.yaml", "address: 127.0.0.1\nengine: compose\n")
    write(
        root / "services/many.yaml",
        "description: one route, several servers\nhost: apps\ncomponents:\n  app:\n"
        "    image: example/app:1.0.0\n    ports: {http: 80}\n"
        f"    publish: {{http: {ports['one']}}}\n"
        "    healthcheck: {http: /index.html, interval: 1s, retries: 1}\n"
        "    edge:\n      http:\n        servers:\n"
        f"          - 127.0.0.1:{ports['two']}\n"
        f"          - {{address: '127.0.0.1:{ports['spare']}', backup: true}}\n"
        "routes:\n  - {domain: many.test, to: app.http, tls: none}\n",
    )
    write(
        root / "services/proxied.yaml",
        "description: a backend that reads the PROXY protocol\nhost: apps\ncomponents:\n"
        "  app:\n    image: example/app:1.0.0\n    ports: {http: 80}\n"
        f"    publish: {{http: {ports['echo']}}}\n"
        "    edge: {http: {proxy_protocol: v2}}\n"
        "routes:\n  - {domain: proxied.test, to: app.http, tls: none}\n",
    )
    return root


def web_server(edge: Edge, name: str) -> None:
    """Start the Python web server ``name`` answering ``server <name>`` on its port."""
    root = edge.directory / name
    write(root / "index.html", f"server {name}\n")
    port = edge.ports[name]
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(root)]
    start(argv, port, edge.directory, name, edge.processes)
    edge.servers[name] = edge.processes[-1]


def stop_server(edge: Edge, name: str) -> None:
    process = edge.servers.pop(name)
    stop([process])
    edge.processes.remove(process)


def get(edge: Edge, host: str, proxy_header: bool = True) -> tuple[int, str]:
    """Send one GET through the edge (a new connection, with the PROXY header a load balancer
    in front would send) and return (status, body); (0, "") when the edge closes on us."""
    with socket.create_connection(("127.0.0.1", edge.http), timeout=5) as connection:
        me = connection.getsockname()
        if proxy_header:
            connection.sendall(
                f"PROXY TCP4 {CLIENT[0]} {me[0]} {CLIENT[1]} {edge.http}\r\n".encode()
            )
        connection.sendall(
            f"GET /index.html HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    if not answer:
        return 0, ""
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def answers(edge: Edge, count: int) -> Counter[str]:
    """Send ``count`` requests for many.test and count the answers (failures as ``status N``)."""
    found: Counter[str] = Counter()
    for _ in range(count):
        status, body = get(edge, "many.test")
        found[body.strip() if status == 200 else f"status {status}"] += 1
    return found


def settle(edge: Edge, expected: set[str], seconds: float = 15) -> None:
    """Wait until HAProxy's checks have seen a change: 20 answers in a row from ``expected``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if set(answers(edge, 20)) <= expected:
            return
        time.sleep(0.2)
    pytest.fail(f"the edge did not settle on {expected}: {answers(edge, 20)}")


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    haproxy = need("haproxy")
    directory = tmp_path_factory.mktemp("servers")
    ports = {name: free_port() for name in ("one", "two", "spare", "echo")}
    http = free_port()
    root = inventory(directory / "inventory", http, ports)
    config = prepared_copy(render(load(root, {})), "edge", directory / "haproxy")
    running = Edge(directory, http, config, {}, ports, [])
    try:
        for name in ("one", "two", "spare"):
            web_server(running, name)
        echo = directory / "echo.cfg"
        echo.write_text(ECHO.format(port=ports["echo"]))
        start(
            [haproxy, "-db", "-f", str(echo)], ports["echo"], directory, "echo", running.processes
        )
        start([haproxy, "-W", "-db", "-f", str(config)], http, directory, "edge", running.processes)
        yield running
    finally:
        stop(running.processes)


def test_the_rendered_edge_passes_haproxy_check(edge: Edge) -> None:
    done = subprocess.run(
        [need("haproxy"), "-c", "-f", str(edge.config)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = edge.config.read_text()
    assert "server app-3 127.0.0.1:" in text and " backup" in text
    assert "send-proxy-v2" in text and "expect-proxy layer4 if { src 127.0.0.1/32 }" in text


def test_a_route_with_two_servers_is_answered_by_both_and_the_backup_only_when_both_are_down(
    edge: Edge,
) -> None:
    settle(edge, {"server one", "server two"})
    both = answers(edge, 40)
    assert set(both) == {"server one", "server two"}, both
    assert min(both.values()) >= 10, f"not balanced: {both}"

    stop_server(edge, "one")
    settle(edge, {"server two"})
    assert answers(edge, 40) == Counter({"server two": 40}), "one down: the other answers all"

    stop_server(edge, "two")
    settle(edge, {"server spare"})
    assert answers(edge, 40) == Counter({"server spare": 40}), "both down: the backup answers"

    web_server(edge, "one")
    settle(edge, {"server one"})
    assert answers(edge, 40) == Counter({"server one": 40}), "one back: no more backup"


def test_a_backend_that_expects_the_proxy_protocol_gets_the_original_client(edge: Edge) -> None:
    deadline = time.monotonic() + 10
    while (said := get(edge, "proxied.test"))[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert said == (200, f"client {CLIENT[0]}:{CLIENT[1]}")


def test_the_edge_behind_a_proxy_refuses_a_connection_without_its_header(edge: Edge) -> None:
    assert get(edge, "proxied.test", proxy_header=False) == (0, ""), "closed without an answer"
    assert get(edge, "proxied.test")[0] == 200, "with the header it is answered"
