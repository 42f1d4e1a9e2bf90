"""Monitors right after an apply (allmende.apply.verify): where probes go, and real probes
against a small HTTP server on the loopback."""

from __future__ import annotations

import asyncio
import http.server
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from allmende.apply.certs import stand_in
from allmende.apply.verify import Target, edge_address, target, verify
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from tests.conftest import BASE, EXAMPLES, FIXTURES
from tests.ports import free_port

ENGINES = FIXTURES / "valid" / "render-engines"


# --------------------------------------------------------------------------- target


def test_a_routed_domain_goes_to_the_edge_hosts_address_on_the_default_ports() -> None:
    nordlicht = load(BASE, {})  # edge gateway: address 198.51.100.7, no bind, ports 80/443
    assert target(nordlicht, "wiki.nordlicht.example", 443, "https") == Target(
        "198.51.100.7", 443, "wiki.nordlicht.example"
    )
    assert target(nordlicht, "git.nordlicht.example", 80, "http") == Target(
        "198.51.100.7", 80, "git.nordlicht.example"
    )


def test_the_edges_bind_address_and_ports_win() -> None:
    demo = load(EXAMPLES / "demo", {})  # bind 127.0.0.1, http_port 8080, https_port 8443
    assert edge_address(demo, "local") == "127.0.0.1"
    assert target(demo, "wiki.nordlicht.example", 443, "https") == Target(
        "127.0.0.1", 8443, "wiki.nordlicht.example"
    )
    assert target(demo, "pad.nordlicht.example", 80, "http") == Target(
        "127.0.0.1", 8080, "pad.nordlicht.example"
    )
    # A port written into the URL is kept; so is the scheme's port for the other scheme.
    assert target(demo, "wiki.nordlicht.example", 9443, "https").port == 9443
    assert target(demo, "wiki.nordlicht.example", 80, "https").port == 80


def test_an_edge_without_address_is_this_machine() -> None:
    engines = load(ENGINES, {})  # edge bench: no address, no bind
    assert target(engines, "shop.werkstatt.example", 443, "https") == Target(
        "127.0.0.1", 443, "shop.werkstatt.example"
    )


def test_a_wildcard_bind_means_the_hosts_address(tmp_path: Path) -> None:
    root = tmp_path / "inventory"
    shutil.copytree(BASE, root)
    collective = yaml.safe_load((root / "allmende.yaml").read_text())
    collective["edge"].update(bind="0.0.0.0", https_port=8443)
    (root / "allmende.yaml").write_text(yaml.safe_dump(collective))
    nordlicht = load(root, {})
    assert target(nordlicht, "wiki.nordlicht.example", 443, "https") == Target(
        "198.51.100.7", 8443, "wiki.nordlicht.example"
    )


def test_names_not_routed_are_connected_to_as_written() -> None:
    demo = load(EXAMPLES / "demo", {})
    assert target(demo, "127.0.0.1", 5432, None) == Target("127.0.0.1", 5432, "127.0.0.1")
    assert target(demo, "example.org", 443, "https") == Target("example.org", 443, "example.org")
    # The zone's apex is not a route of the demo.
    assert target(demo, "nordlicht.example", 80, "http") == Target(
        "nordlicht.example", 80, "nordlicht.example"
    )


# --------------------------------------------------------------------------- real probes


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers by path; remembers the Host header of every request."""

    hosts: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Handler.hosts.append(self.headers.get("Host", ""))
        if self.path == "/login":
            self.send_response(302)
            self.send_header("Location", "/auth/login")
            body = b""
        elif self.path in ("/", "/wiki"):
            self.send_response(200)
            body = b"<h1>Welcome to Nordlicht</h1>"
        else:
            self.send_response(404)
            body = b"not found"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    """An HTTP server on 127.0.0.1; yields its port."""
    Handler.hosts = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[int]:
    """A TLS server on 127.0.0.1 with a stand-in certificate; yields its port."""
    pem = tmp_path / "secure.pem"
    pem.write_bytes(stand_in(("secure.example",)))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def inventory(
    root: Path, http_port: int, services: dict[str, dict[str, Any]], https_port: int | None = None
) -> Inventory:
    """Write an inventory whose edge (this machine) binds 127.0.0.1 on the given ports."""
    (root / "hosts").mkdir(parents=True)
    (root / "services").mkdir()
    collective = {
        "name": "probe",
        "description": "Probes against the loopback",
        "contact": "infra@site.example",
        "domains": ["site.example"],
        "edge": {
            "hosts": ["local"],
            "bind": "127.0.0.1",
            "http_port": http_port,
            "https_port": free_port() if https_port is None else https_port,
        },
    }
    (root / "allmende.yaml").write_text(yaml.safe_dump(collective))
    host = {"description": "This machine", "kind": "physical", "engine": "compose"}
    (root / "hosts" / "local.yaml").write_text(yaml.safe_dump(host))
    for name, extra in services.items():
        service = {
            "description": f"The {name}",
            "host": "local",
            "components": {"app": {"image": "nginx:1.27", "ports": {"http": 80}}},
            **extra,
        }
        (root / "services" / f"{name}.yaml").write_text(yaml.safe_dump(service))
    return load(root, {})


def site(**extra: Any) -> dict[str, dict[str, Any]]:
    route = {"domain": "site.example", "to": "app.http", "tls": "none"}
    return {"site": {"routes": [route], **extra}}


def run(inv: Inventory, services: list[str], timeout: float = 0.0) -> list[str]:
    return asyncio.run(verify(inv, services, timeout))


def test_a_route_without_monitors_is_probed_through_the_edge(tmp_path: Path, server: int) -> None:
    inv = inventory(tmp_path, server, site())
    assert run(inv, ["site"]) == []
    assert Handler.hosts == ["site.example"]


def test_a_redirect_passes_without_expect(tmp_path: Path, server: int) -> None:
    inv = inventory(tmp_path, server, site(monitor=[{"http": "http://site.example/login"}]))
    assert run(inv, ["site"]) == []


def test_an_error_status_fails(tmp_path: Path, server: int) -> None:
    inv = inventory(tmp_path, server, site(monitor=[{"http": "http://site.example/gone"}]))
    assert run(inv, ["site"]) == ["site: monitor http http://site.example/gone: answered 404"]


def test_an_explicit_expect_wants_exactly_its_status(tmp_path: Path, server: int) -> None:
    monitor = {"http": "http://site.example/login", "expect": {"status": 200}}
    inv = inventory(tmp_path, server, site(monitor=[monitor]))
    assert run(inv, ["site"]) == [
        "site: monitor http http://site.example/login: answered 302, expected 200"
    ]


def test_an_expected_error_status_passes(tmp_path: Path, server: int) -> None:
    monitor = {"http": "http://site.example/gone", "expect": {"status": 404}}
    inv = inventory(tmp_path, server, site(monitor=[monitor]))
    assert run(inv, ["site"]) == []


def test_the_expected_text_must_be_in_the_answer(tmp_path: Path, server: int) -> None:
    good = {"http": "http://site.example/", "expect": {"contains": "Nordlicht"}}
    bad = {"http": "http://site.example/wiki", "expect": {"contains": "Südlicht"}}
    inv = inventory(tmp_path, server, site(monitor=[good, bad]))
    assert run(inv, ["site"]) == [
        "site: monitor http http://site.example/wiki: the answer does not contain 'Südlicht'"
    ]


def test_only_the_given_services_are_probed(tmp_path: Path, server: int) -> None:
    services = {
        **site(),
        "broken": {"monitor": [{"http": "http://site.example/broken"}]},
    }
    inv = inventory(tmp_path, server, services)
    assert run(inv, ["site"]) == []
    assert run(inv, ["site", "broken"]) == [
        "broken: monitor http http://site.example/broken: answered 404"
    ]


def test_an_address_not_routed_is_probed_as_written(tmp_path: Path, server: int) -> None:
    # The edge's HTTP port leads nowhere: the monitor's own address must be used.
    monitor = {"http": f"http://127.0.0.1:{server}/"}
    inv = inventory(tmp_path, free_port(), {"api": {"monitor": [monitor]}})
    assert run(inv, ["api"]) == []
    assert Handler.hosts == [f"127.0.0.1:{server}"]


def test_tcp_to_an_open_port_passes(tmp_path: Path, server: int) -> None:
    inv = inventory(tmp_path, server, {"db": {"monitor": [{"tcp": f"127.0.0.1:{server}"}]}})
    assert run(inv, ["db"]) == []


def test_tcp_to_a_closed_port_fails_after_the_timeout(tmp_path: Path, server: int) -> None:
    port = free_port()
    inv = inventory(tmp_path, server, {"db": {"monitor": [{"tcp": f"127.0.0.1:{port}"}]}})
    started = time.monotonic()
    failed = run(inv, ["db"], timeout=1.0)
    elapsed = time.monotonic() - started
    assert len(failed) == 1
    assert failed[0].startswith(f"db: monitor tcp 127.0.0.1:{port}: ConnectionRefusedError")
    assert 1.0 <= elapsed < 5.0


def test_a_monitor_that_comes_up_within_the_timeout_passes(tmp_path: Path) -> None:
    port = free_port()
    inv = inventory(tmp_path, port, site())
    started: list[http.server.ThreadingHTTPServer] = []

    def start() -> None:  # nothing listens on the port until then
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        started.append(httpd)
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()

    timer = threading.Timer(0.7, start)
    timer.start()
    began = time.monotonic()
    try:
        assert run(inv, ["site"], timeout=5.0) == []
        assert time.monotonic() - began >= 0.7
    finally:
        timer.join()
        for httpd in started:
            httpd.shutdown()
            httpd.server_close()


def test_tls_to_a_routed_domain_on_an_explicit_port(tmp_path: Path, tls_server: int) -> None:
    route = {"domain": "secure.example", "to": "app.http", "tls": "passthrough"}
    monitor = {"tls": f"secure.example:{tls_server}"}
    inv = inventory(tmp_path, free_port(), {"vault": {"routes": [route], "monitor": [monitor]}})
    assert run(inv, ["vault"]) == []


def test_a_passthrough_route_is_probed_on_the_edges_https_port(
    tmp_path: Path, tls_server: int
) -> None:
    route = {"domain": "secure.example", "to": "app.http", "tls": "passthrough"}
    inv = inventory(tmp_path, free_port(), {"vault": {"routes": [route]}}, tls_server)
    assert run(inv, ["vault"]) == []
