"""The rendered HAProxy configuration, run by the real HAProxy.

* Every ``haproxy.cfg`` rendered from every example inventory and valid fixture passes
  ``haproxy -c`` without warnings (but "could not resolve address": this machine has no DNS).
* The configuration of ``tests/fixtures/valid/render-edge`` runs on 127.0.0.1 (ports 18xxx) in
  front of Python test servers, and real requests show routing by Host and by path prefix, the
  redirect to HTTPS, the ACME responder, TLS terminated with a test certificate, TLS passed
  through by SNI to a backend whose own certificate the client sees, a cached route, a raw TCP
  port and a reload through the master socket.

Both use a copy of the rendered files in which only ``/etc/haproxy`` and ``/run/haproxy`` are
moved into a temp directory (the maintenance page with them), and the certificates named in
``certs.list`` are made here with openssl (as root; otherwise the lines that drop privileges are
left out too, since only root may change user or chroot). The rendered configuration itself is
not weakened.

HAProxy and openssl must be installed (``script/bootstrap`` installs HAProxy): without them the
tests fail, they never skip.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from allmende.inventory.load import load
from allmende.render.haproxy import render
from allmende.render.haproxy_plan import ACME_RESPONDER
from allmende.render.output import Rendered

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "valid"
EDGE_FIXTURE = FIXTURES / "render-edge"
INVENTORIES = sorted(
    [*(ROOT / "examples").iterdir(), *FIXTURES.iterdir()], key=lambda p: (p.parent.name, p.name)
)
HTTP, HTTPS, EXPOSED = 18080, 18443, 18025
BACKEND_A, BACKEND_B, TLS_BACKEND = 18081, 18082, 18444
ACME_PORT = int(ACME_RESPONDER.rpartition(":")[2])
#: Lines of the global section that only root may carry out.
PRIVILEGED = ("    user haproxy\n", "    group haproxy\n", "    chroot /var/lib/haproxy\n")

TLS_SERVER = """\
import http.server, ssl, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from the TLS backend\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2], sys.argv[3])
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def need(program: str) -> str:
    """Return the path of ``program``; fail the test (never skip) when it is missing."""
    path = shutil.which(program)
    if path is None:
        pytest.fail(
            f"`{program}` is not installed: apt-get install {program} (script/bootstrap does)"
        )
    return path


def openssl(*args: str) -> None:
    subprocess.run([need("openssl"), *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Authority:
    """A test CA that signs leaf certificates."""

    directory: Path
    cert: Path
    key: Path

    @classmethod
    def create(cls, directory: Path) -> Authority:
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / "ca.pem", directory / "ca.key"
        openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=allmende test CA",
        )  # fmt: skip
        return cls(directory, cert, key)

    def pem(self, name: str) -> str:
        """Return a certificate for ``name`` signed by this CA and its key, as one PEM text."""
        cert, key = self.leaf(name, "allmende edge")
        return cert.read_text() + key.read_text()

    def leaf(self, name: str, organisation: str) -> tuple[Path, Path]:
        """Return (certificate, key) for the DNS name ``name``, signed by this CA."""
        key, csr = self.directory / f"{name}.key", self.directory / f"{name}.csr"
        cert, extensions = self.directory / f"{name}.crt", self.directory / f"{name}.ext"
        openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/O={organisation}/CN={name}",
        )  # fmt: skip
        extensions.write_text(f"subjectAltName=DNS:{name}\n")
        openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extensions),
        )  # fmt: skip
        return cert, key


def self_signed(pem: Path, name: str) -> None:
    """Write a self-signed certificate and its key for ``name`` into one PEM file."""
    key, cert = pem.with_suffix(".key"), pem.with_suffix(".crt")
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
    )  # fmt: skip
    pem.write_text(cert.read_text() + key.read_text())


def relocated(files: dict[str, Rendered], edge: str, into: Path) -> str:
    """Return the rendered haproxy.cfg of ``edge`` as a test runs it: /etc/haproxy and
    /run/haproxy moved to ``into``/etc and ``into``/run (the maintenance page written there),
    and, when not root, without the lines that need root."""
    etc, run = into / "etc", into / "run"
    (etc / "errors").mkdir(parents=True, exist_ok=True)
    run.mkdir(exist_ok=True)
    (etc / "errors" / "allmende-503.http").write_bytes(
        files[f"{edge}/etc/haproxy/errors/allmende-503.http"].content
    )
    config = _moved(files, edge, into, "haproxy.cfg")
    if os.geteuid() != 0:
        for line in PRIVILEGED:
            config = config.replace(line, "")
    return config


def _moved(files: dict[str, Rendered], edge: str, into: Path, path: str) -> str:
    content = files[f"{edge}/etc/haproxy/{path}"].content.decode()
    return content.replace("/etc/haproxy", str(into / "etc")).replace(
        "/run/haproxy", str(into / "run")
    )


def prepared_copy(
    files: dict[str, Rendered],
    edge: str,
    into: Path,
    pem: Callable[[str], str] | None = None,
) -> Path:
    """Write the rendered HAProxy files of ``edge`` under ``into`` for a test run (see
    ``relocated``) and return the configuration's path, with a certificate for every line of
    certs.list: ``pem(name)`` (certificate and key), else self-signed."""
    config = relocated(files, edge, into)
    etc = into / "etc"
    (etc / "certs").mkdir(exist_ok=True)
    certs = _moved(files, edge, into, "certs.list")
    for line in certs.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        path, name = line.split()
        if pem is None:
            self_signed(Path(path), name)
        else:
            Path(path).write_text(pem(name))
    (etc / "certs.list").write_text(certs)
    (etc / "haproxy.cfg").write_text(config)
    return etc / "haproxy.cfg"


def configs() -> list[tuple[Path, str]]:
    cases = []
    for root in INVENTORIES:
        if (root / "allmende.yaml").is_file():
            for path in render(load(root, {})):
                if path.endswith("/haproxy.cfg"):
                    cases.append((root, path.partition("/")[0]))
    return cases


CONFIGS = configs()


def test_every_example_and_fixture_with_an_edge_is_validated() -> None:
    names = {root.name for root, _ in CONFIGS}
    assert {"nordlicht", "klankschool", "gathering", "render-edge"} <= names


@pytest.mark.parametrize(
    ("root", "edge"), CONFIGS, ids=[f"{r.parent.name}/{r.name}/{e}" for r, e in CONFIGS]
)
def test_rendered_config_passes_haproxy_check(root: Path, edge: str, tmp_path: Path) -> None:
    haproxy = need("haproxy")
    config = prepared_copy(render(load(root, {})), edge, tmp_path)
    done = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "Configuration file is valid" in said
    warnings = [
        line
        for line in said.splitlines()
        if ("[WARNING]" in line or "[ALERT]" in line) and "could not resolve address" not in line
    ]
    assert not warnings, said


# --------------------------------------------------------------------------- the edge, running


@dataclass
class Running:
    """The edge under test: where things are, and the processes to stop."""

    directory: Path
    authority: Authority
    backend_a: Path
    master_socket: Path
    processes: list[subprocess.Popen[bytes]]


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args!r} exited {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing answers on 127.0.0.1:{port}: {log.read_text()}")


def start(
    argv: list[str], port: int, directory: Path, name: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    log = directory / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=directory)
    processes.append(process)
    wait_for_port(port, process, log)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    haproxy = need("haproxy")
    directory = tmp_path_factory.mktemp("edge")
    authority = Authority.create(directory / "ca")
    config = prepared_copy(
        render(load(EDGE_FIXTURE, {})), "edge", directory / "haproxy", authority.pem
    )
    a, b, acme = directory / "a", directory / "b", directory / "acme"
    write(a / "index.html", "backend A\n")
    write(a / "page.txt", "page 1\n")
    write(a / "static" / "file.txt", "static 1\n")
    write(a / "apix" / "hello.txt", "backend A apix\n")
    write(b / "index.html", "backend B\n")
    write(b / "api" / "index.html", "backend B api\n")
    write(b / "api" / "hello.txt", "backend B api hello\n")
    write(acme / ".well-known" / "acme-challenge" / "token-1", "token-1.thumbprint\n")
    cert, key = authority.leaf("secure.test", "archive backend")
    write(directory / "tls_server.py", TLS_SERVER)
    processes: list[subprocess.Popen[bytes]] = []
    python = sys.executable
    try:
        for name, port, root in (
            ("a", BACKEND_A, a),
            ("b", BACKEND_B, b),
            ("acme", ACME_PORT, acme),
        ):
            argv = [python, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(root)]
            start(argv, port, directory, name, processes)
        argv = [python, str(directory / "tls_server.py"), str(TLS_BACKEND), str(cert), str(key)]
        start(argv, TLS_BACKEND, directory, "tls", processes)
        master = directory / "master.sock"
        argv = [haproxy, "-W", "-db", "-S", f"{master},mode,600", "-f", str(config)]
        start(argv, HTTP, directory, "haproxy", processes)
        wait_for_port(HTTPS, processes[-1], directory / "haproxy.log")
        yield Running(directory, authority, a, master, processes)
    finally:
        stop(processes)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: str
    peer: dict[str, str]


def ask(
    host: str,
    path: str = "/",
    port: int = HTTP,
    tls: ssl.SSLContext | None = None,
    sni: str | None = None,
) -> Answer:
    """Send one GET for ``host`` and ``path`` to 127.0.0.1:``port`` (over TLS with ``tls``,
    sending ``sni``, default ``host``) and return the answer and the peer certificate's subject."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    peer: dict[str, str] = {}
    sock: socket.socket = raw
    if tls is not None:
        sock = tls.wrap_socket(raw, server_hostname=sni or host)
        certificate = sock.getpeercert()  # type: ignore[attr-defined]
        peer = {k: v for rdn in certificate["subject"] for k, v in rdn}
    with sock:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read().decode()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body, peer)


def trusting(authority: Authority) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(authority.cert))


def test_routes_by_host_header(running: Running) -> None:
    assert ask("plain.test", "/index.html").body == "backend A\n"
    tls = trusting(running.authority)
    assert ask("a.test", "/index.html", HTTPS, tls).body == "backend A\n"
    assert ask("b.test", "/index.html", HTTPS, tls).body == "backend B\n"
    assert ask("B.Test:18443", "/index.html", HTTPS, tls, sni="b.test").body == "backend B\n"


def test_routes_by_path_prefix_longest_first(running: Running) -> None:
    tls = trusting(running.authority)
    assert ask("a.test", "/api/hello.txt", HTTPS, tls).body == "backend B api hello\n"
    exact = ask("a.test", "/api", HTTPS, tls)
    assert (exact.status, exact.headers.get("location")) == (301, "/api/"), exact  # from B
    assert ask("a.test", "/apix/hello.txt", HTTPS, tls).body == "backend A apix\n"
    assert ask("a.test", "/index.html", HTTPS, tls).body == "backend A\n"


def test_http_redirects_to_https_except_acme_challenges(running: Running) -> None:
    answer = ask("a.test", "/api/hello.txt?x=1")
    assert answer.status == 301
    assert answer.headers["location"] == "https://a.test/api/hello.txt?x=1"
    challenge = ask("a.test", "/.well-known/acme-challenge/token-1")
    assert (challenge.status, challenge.body) == (200, "token-1.thumbprint\n")
    passed = ask("secure.test", "/.well-known/acme-challenge/token-1")
    assert passed.status == 301, "a passthrough name answers its own challenges over HTTPS"
    unknown = ask("nowhere.test", "/")
    assert (unknown.status, unknown.body) == (404, "No site of this name here.")


def test_terminates_tls_with_the_edge_certificate(running: Running) -> None:
    answer = ask("a.test", "/index.html", HTTPS, trusting(running.authority))
    assert answer.peer == {"organizationName": "allmende edge", "commonName": "a.test"}
    with pytest.raises(ssl.SSLCertVerificationError):
        ask("a.test", "/", HTTPS, ssl.create_default_context())


def test_passes_tls_through_by_sni(running: Running) -> None:
    answer = ask("secure.test", "/", HTTPS, trusting(running.authority))
    assert answer.peer == {"organizationName": "archive backend", "commonName": "secure.test"}
    assert answer.body == "hello from the TLS backend\n"


def test_cached_route_is_answered_from_the_cache(running: Running) -> None:
    tls = trusting(running.authority)
    assert ask("a.test", "/static/file.txt", HTTPS, tls).body == "static 1\n"
    assert ask("a.test", "/page.txt", HTTPS, tls).body == "page 1\n"
    (running.backend_a / "static" / "file.txt").write_text("static 2\n")
    (running.backend_a / "page.txt").write_text("page 2\n")
    assert ask("a.test", "/static/file.txt", HTTPS, tls).body == "static 1\n", "cached"
    assert ask("a.test", "/page.txt", HTTPS, tls).body == "page 2\n", "not cached"


def test_exposed_tcp_port(running: Running) -> None:
    assert ask("anything", "/index.html", EXPOSED).body == "backend A\n"


def master_cli(running: Running, command: str) -> str:
    return cli(running.master_socket, command)


def cli(path: Path, command: str) -> str:
    """Send one command to an HAProxy CLI socket and return the answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)  # one command: the master answers, then closes
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def test_health_checks_pass(running: Running) -> None:
    admin = running.directory / "haproxy" / "run" / "admin.sock"
    wanted = {
        ("website_web_http", "web"): "L7OK",  # GET /index.html with its Host, expecting 200
        ("api_app_http", "app"): "L4OK",  # no healthcheck: the port accepts connections
        ("archive_server_https", "server"): "L4OK",
    }
    deadline = time.monotonic() + 10
    while True:
        rows = cli(admin, "show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        stats = [dict(zip(header, row.split(","), strict=False)) for row in rows[1:] if row]
        seen = {
            (r["pxname"], r["svname"]): (r["status"], r["check_status"])
            for r in stats
            if (r["pxname"], r["svname"]) in wanted
        }
        if all(seen.get(key, ("", ""))[1].startswith(want) for key, want in wanted.items()):
            break
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    assert {status for status, _ in seen.values()} == {"UP"}, seen


def test_reload_keeps_serving(running: Running) -> None:
    tls = trusting(running.authority)
    master_cli(running, "reload")
    deadline, shown = time.monotonic() + 10, ""
    while "1 [failed: 0]" not in shown:  # the master re-executes itself: it answers again soon
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)
        try:
            shown = master_cli(running, "show proc")
        except OSError:
            continue
        assert "[failed: 0]" in shown, shown
    assert ask("a.test", "/index.html", HTTPS, tls).body == "backend A\n"
    assert ask("secure.test", "/", HTTPS, tls).body == "hello from the TLS backend\n"
    assert ask("a.test", "/static/file.txt", HTTPS, tls).status == 200
