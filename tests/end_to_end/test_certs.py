"""Certificates without anyone's hands, against a real CA, a real edge and a real nameserver.

The edge is ``remote_host`` (a real sshd whose sessions see /etc/haproxy ... as temp
directories): `allmende apply` renders HAProxy and starts it there over SSH, with self-signed
stand-ins. The CA is Pebble (Debian's), which checks http-01 on the edge's HTTP port and
resolves every name at a real Knot serving the zone allmende rendered (each route's A record
is the edge's 127.0.0.1); dns-01 records are written to that Knot with RFC 2136 updates signed
by TSIG. Two routes get their certificates over http-01 through HAProxy and a wildcard over
dns-01; a client that trusts only Pebble's root verifies them; a forced renewal is served while
4 clients make at least 2,000 HTTPS requests, none failing; the edge's own timer command
renews with Debian's python3-acme; a name Pebble refuses, Pebble down and a challenge path the
CA cannot reach each fail clearly, keep the certificate in service and alert once (a webhook);
`allmende up` and `allmende watch` renew what is due; a passthrough backend's own certificate
is listed and left alone.

The backends are Python http.servers of the test's; the services say `engine: systemd`, so
apply writes the edge's files and drives no engine. Everything binds 127.0.0.1 on free ports.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.end_to_end.acme_world import Knot, ListenerCa, Pebble, stop, tsig_secret
from tests.end_to_end.backup_world import Webhook, webhook_server
from tests.end_to_end.remote import RemoteHost
from tests.ports import free_port

from allmende.actions.render import render
from allmende.cli.main import main
from allmende.inventory.secrets import SecretStore, create_key
from allmende.render.certs import CERTS_COMMAND

ZONE = "certs.test"
HTTP01 = ("app.certs.test", "www.certs.test")
WILDCARD = "*.lab.certs.test"
UNDER_WILDCARD = ("one.lab.certs.test", "two.lab.certs.test")
REFUSED = "refused.certs.test"
#: A route passed through to a backend that keeps its own certificate (20 days left).
PASSTHROUGH = "vault.certs.test"
TSIG_KEY = "acme-update"
#: The edge's directories the tests write to, emptied at the end.
USED = (
    "/etc/haproxy",
    "/run/haproxy",
    "/var/lib/haproxy",
    "/var/lib/allmende",
    "/etc/allmende",
    "/usr/local/lib/allmende",
    "/etc/systemd/system",
)


@dataclass
class World:
    inventory: Path
    host: RemoteHost
    pebble: Pebble
    knot: Knot
    hook: Webhook
    env: dict[str, str]
    http: int
    https: int
    backends: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def pem(self, name: str) -> Path:
        file = f"_wildcard.{name[2:]}" if name.startswith("*.") else name
        return self.host.local(f"/etc/haproxy/certs/{file}.pem")


def _collective(ports: dict[str, int], ca: ListenerCa, hook: int) -> str:
    trust = "".join(f"    {line}\n" for line in ca.pem.splitlines())
    return (
        "name: certs-test\n"
        "description: Certificates for every terminated route\n"
        f"domains: [{ZONE}]\n"
        "edge:\n"
        "  hosts: [edge]\n"
        "  bind: 127.0.0.1\n"
        f"  http_port: {ports['http']}\n"
        f"  https_port: {ports['https']}\n"
        "acme:\n"
        f"  email: infra@{ZONE}\n"
        f"  directory: https://127.0.0.1:{ports['pebble']}/dir\n"
        "  renew_before_days: 30\n"
        f"  responder_port: {ports['responder']}\n"
        f"  wildcards: ['{WILDCARD}']\n"
        "  trust: |\n"
        f"{trust}"
        "notify:\n"
        f"  - webhook: http://127.0.0.1:{hook}/alerts\n"
        "people:\n"
        "  alex: {name: Alex Doe, email: alex@certs.test}\n"
    )


def _service(name: str, port: int, domains: tuple[str, ...], tls: str = "terminate") -> str:
    kind = "https" if tls == "passthrough" else "http"
    routes = "".join(f"  - {{domain: {d}, to: web.{kind}, tls: {tls}}}\n" for d in domains)
    return (
        f"description: The {name} site\n"
        "maintainers: [alex]\n"
        "host: edge\n"
        "components:\n"
        "  web:\n"
        f"    image: example/{name}:1.0.0\n"
        f"    ports: {{{kind}: 8000}}\n"
        f"    publish: {{{kind}: {port}}}\n"
        f"routes:\n{routes}"
        "monitor: []\n"
    )


def write_inventory(
    root: Path, host: RemoteHost, ports: dict[str, int], ca: ListenerCa, hook: int
) -> None:
    for directory in ("hosts", "services", "zones"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "allmende.yaml").write_text(_collective(ports, ca, hook))
    (root / "hosts" / "edge.yaml").write_text(
        "description: The edge, a real sshd on loopback\n"
        "address: 127.0.0.1\n"
        "public_ipv4: 127.0.0.1\n"
        f"ssh: {host.inventory_ssh}\n"
        "engine: systemd\n"
    )
    (root / "services" / "site.yaml").write_text(_service("site", ports["site"], HTTP01))
    (root / "services" / "lab.yaml").write_text(_service("lab", ports["lab"], UNDER_WILDCARD))
    vault = _service("vault", ports["vault"], (PASSTHROUGH,), tls="passthrough")
    (root / "services" / "vault.yaml").write_text(vault)
    (root / "zones" / f"{ZONE}.yaml").write_text(
        f"nameservers: [ns1.{ZONE}.]\n"
        "records:\n"
        "  - {name: ns1, type: A, value: 127.0.0.1}\n"
        "update:\n"
        f"  server: 127.0.0.1:{ports['knot']}\n"
        f"  key: {TSIG_KEY}\n"
        f"  check: ['127.0.0.1:{ports['knot']}']\n"
    )


def _backend(directory: Path, port: int, name: str) -> subprocess.Popen[bytes]:
    root = directory / name
    root.mkdir()
    (root / "index.html").write_text(f"{name} answers\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _listening(port, name)
    return process


#: A backend that serves HTTPS with its own certificate (file: argv[2]).
TLS_SERVER = """
import http.server, ssl, sys
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.BaseHTTPRequestHandler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def _tls_backend(directory: Path, port: int, name: str) -> subprocess.Popen[bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=20, hours=12))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
        .sign(key, hashes.SHA256())
    )
    pem = directory / f"{name}.pem"
    pem.write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-c", TLS_SERVER, str(port), str(pem)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _listening(port, name)
    return process


def _listening(port: int, name: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"the {name} backend does not listen"
            time.sleep(0.05)


def _teardown_edge(host: RemoteHost) -> None:
    pidfile = host.local("/run/haproxy/haproxy.pid")
    if pidfile.exists():
        host.run(["kill", pidfile.read_text().split()[0]])
        time.sleep(0.5)
    host.empty(*USED)


@pytest.fixture(scope="module")
def world(remote_host: RemoteHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("certs")
    names = ("http", "https", "pebble", "management", "responder", "knot", "site", "lab", "vault")
    ports = {name: free_port() for name in names}
    ca = ListenerCa.make(directory)
    hooks = contextlib.ExitStack()
    hook = hooks.enter_context(webhook_server())
    inventory = directory / "inventory"
    write_inventory(inventory, remote_host, ports, ca, hook.port)
    key = directory / "age.key"
    env = {
        **remote_host.connector_env,
        "ALLMENDE_AGE_KEY": str(key),
        "ALLMENDE_STATE": str(directory / "state.sqlite"),
        "ALLMENDE_VERIFY_TIMEOUT": "20",
        "ALLMENDE_NOTIFY_TIMEOUT": "20",
        "USER": "tester",
    }
    create_key(inventory, env)
    secret = tsig_secret()
    SecretStore(inventory, env).set(f"dns/{ZONE}/tsig", secret.encode())
    out = directory / "rendered"
    render(inventory, out, env, targets=("dns",))
    knot = Knot(directory / "knot", ports["knot"], ZONE, TSIG_KEY, secret)
    pebble = Pebble(
        directory / "pebble",
        ca,
        ports["pebble"],
        ports["management"],
        ports["http"],
        ports["knot"],
        (REFUSED,),
    )
    (directory / "pebble").mkdir()
    made = World(inventory, remote_host, pebble, knot, hook, env, ports["http"], ports["https"])
    try:
        knot.start(out / "dns" / f"{ZONE}.zone")
        pebble.start()
        made.backends += [
            _backend(directory, ports["site"], "site"),
            _backend(directory, ports["lab"], "lab"),
            _tls_backend(directory, ports["vault"], PASSTHROUGH),
        ]
        yield made
    finally:
        _teardown_edge(remote_host)
        pebble.stop()
        knot.stop()
        for process in made.backends:
            stop(process)
        hooks.close()


#: Runs `allmende ARGS` as a user would, in the world's environment: (exit code, out, err).
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Cli]:
    for name, value in world.env.items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    yield run


def served(world: World, name: str, trust: str | None = None) -> x509.Certificate:
    """Return the certificate the edge serves for ``name``; with ``trust`` (PEM of the roots a
    client trusts) the chain and the name are verified as a browser would."""
    context = ssl.create_default_context(cadata=trust) if trust else ssl.create_default_context()
    if trust is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", world.https), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def alerts(world: World, certificate: str) -> list[dict[str, object]]:
    return [a for a in world.hook.received if a.get("service") == certificate]


def test_routes_get_certificates_over_http01_and_a_wildcard_over_dns01(
    world: World, cli: Cli
) -> None:
    code, out, err = cli("apply", str(world.inventory), "--yes")
    assert code == 0, err
    assert "HAProxy started" in err
    for name in (*HTTP01, *UNDER_WILDCARD):
        assert served(world, name).issuer == served(world, name).subject, "a stand-in first"

    code, out, err = cli("certs", "renew", "-C", str(world.inventory))
    assert code == 0, out + err
    assert "app.certs.test: obtaining over http-01" in err
    assert f"{WILDCARD}: obtaining over dns-01" in err
    for name in (*HTTP01, WILDCARD):
        assert f"{name}: renewed: serial" in out
    roots = world.pebble.roots()
    for name in (*HTTP01, *UNDER_WILDCARD):
        certificate = served(world, name, trust=roots)  # chain and name verified
        assert "Pebble" in certificate.issuer.rfc4514_string()
    assert oct(world.pem("app.certs.test").stat().st_mode & 0o777) == "0o600"
    assert world.knot.answers(f"_acme-challenge.lab.{ZONE}.", "TXT") == set(), "cleaned up"
    # a new account key is in the secret store: one account for the collective
    assert SecretStore(world.inventory, world.env).exists("acme/account-key")
    assert world.hook.received == []

    code, out, err = cli("certs", str(world.inventory))
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line and line[0] != " "}
    assert "Pebble Intermediate CA" in lines["app.certs.test"]
    assert f"edge (127.0.0.1:{world.https})" in lines[WILDCARD]
    assert "dns-01" in lines[WILDCARD]
    # A backend's own certificate is listed, read through the edge, and left alone.
    vault = lines[PASSTHROUGH]
    assert vault.split()[1:4] == ["passthrough", "edge", f"(127.0.0.1:{world.https})"]
    assert re.search(rf"self-signed \({PASSTHROUGH}\) +20 +by the backend itself$", vault), vault
    assert not world.pem(PASSTHROUGH).exists()


@dataclass
class Load:
    """Clients making HTTPS requests to one name through the edge, a new connection each,
    verifying the chain against Pebble's root and the name; the serials they were served."""

    world: World
    name: str
    trust: str
    done: int = 0
    failures: list[str] = field(default_factory=list)
    serials: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def one(self, context: ssl.SSLContext) -> None:
        request = f"GET / HTTP/1.1\r\nHost: {self.name}\r\nConnection: close\r\n\r\n".encode()
        with (
            socket.create_connection(("127.0.0.1", self.world.https), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=self.name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            tls.sendall(request)
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        status = answer.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            raise OSError(f"answered {status!r}")
        assert der is not None
        with self.lock:
            self.serials.append(x509.load_der_x509_certificate(der).serial_number)

    def client(self) -> None:
        context = ssl.create_default_context(cadata=self.trust)
        while not self.stop.is_set():
            try:
                self.one(context)
            except (OSError, ssl.SSLError) as error:
                with self.lock:
                    self.failures.append(repr(error))
            with self.lock:
                self.done += 1


def test_a_forced_renewal_is_served_while_2000_requests_run_none_failing(
    world: World, cli: Cli
) -> None:
    name = HTTP01[0]
    before = served(world, name).serial_number
    load = Load(world, name, world.pebble.roots())
    clients = [threading.Thread(target=load.client) for _ in range(4)]
    for client in clients:
        client.start()
    try:
        while load.done < 300:
            time.sleep(0.02)
        code, out, err = cli("certs", "renew", "-C", str(world.inventory), name)
        assert code == 0, out + err
        renewed_at = load.done
        while load.done < max(2000, renewed_at + 500):
            time.sleep(0.02)
    finally:
        load.stop.set()
        for client in clients:
            client.join()
    after = served(world, name).serial_number
    assert after != before
    assert f"{after:x}" in out
    assert load.failures == []
    assert load.done >= 2000 and renewed_at < load.done - 500
    assert load.serials[0] == before and load.serials[-1] == after
    assert set(load.serials) == {before, after}


def test_nothing_due_changes_nothing(world: World, cli: Cli) -> None:
    serials = {n: served(world, n).serial_number for n in (*HTTP01, UNDER_WILDCARD[0])}
    code, out, err = cli("certs", "renew", "-C", str(world.inventory))
    assert code == 0, err
    assert out.count(": current: ") == 3, out
    assert {n: served(world, n).serial_number for n in serials} == serials


def test_the_edge_timer_renews_on_its_own_with_debians_acme(world: World, cli: Cli) -> None:
    # The apply after the account was made gives the edge the account key (and the TSIG key,
    # the job, allmende's copy and the units).
    code, _, err = cli("apply", str(world.inventory), "--yes")
    assert code == 0, err
    for path in ("/etc/allmende/certs/account.pem", f"/etc/allmende/certs/tsig/{ZONE}.key"):
        assert oct(world.host.local(path).stat().st_mode & 0o777) == "0o600", path
    job = json.loads(world.host.local("/etc/allmende/certs/job.json").read_text())
    assert {c["name"] for c in job["certificates"]} == {*HTTP01, WILDCARD}
    assert world.host.local("/etc/systemd/system/allmende-certs.timer").exists()
    # The app's file is lost on the edge: what the timer finds there is due.
    world.pem(HTTP01[0]).unlink()
    kept = served(world, HTTP01[1]).serial_number
    ran = world.host.run(list(CERTS_COMMAND), timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"{HTTP01[0]}: renewed: serial" in ran.stdout
    assert f"{HTTP01[1]}: current" in ran.stdout
    certificate = served(world, HTTP01[0], trust=world.pebble.roots())
    assert f"{certificate.serial_number:x}" in ran.stdout
    assert served(world, HTTP01[1]).serial_number == kept
    # The host's own state database has the attempt.
    assert world.host.local("/var/lib/allmende/state.sqlite").exists()


def test_a_name_the_ca_refuses_fails_keeps_its_stand_in_and_alerts_once(
    world: World, cli: Cli
) -> None:
    site = world.inventory / "services" / "site.yaml"
    route = f"  - {{domain: {REFUSED}, to: web.http}}\n"
    site.write_text(site.read_text().replace("monitor: []", route + "monitor: []"))
    code, _, err = cli("apply", str(world.inventory), "--yes")
    assert code == 0, err
    stand_in = served(world, REFUSED)
    assert stand_in.issuer == stand_in.subject

    code, out, err = cli("certs", "renew", "-C", str(world.inventory))
    assert code == 1
    assert f"{REFUSED}: FAILED: the CA refuses the name" in out
    assert "rejectedIdentifier" in out
    assert f"certs: 1 of 4 not renewed: {REFUSED}" in out
    assert served(world, REFUSED).serial_number == stand_in.serial_number
    [alert] = alerts(world, REFUSED)
    assert alert["state"] == "problem" and alert["what"] == "certificate not renewed"
    assert "rejectedIdentifier" in str(alert["detail"])

    # At once again: it waits (no retry storm), and nobody is told twice.
    code, out, _ = cli("certs", "renew", "-C", str(world.inventory))
    assert code == 0, out
    assert f"{REFUSED}: waiting: " in out and "1 failed attempt in a row" in out
    assert len(alerts(world, REFUSED)) == 1
    code, out, _ = cli("certs", str(world.inventory))
    assert f"{REFUSED}: the last attempt failed: the CA refuses the name" in out


def test_a_challenge_path_the_ca_cannot_reach_keeps_the_certificate(world: World, cli: Cli) -> None:
    name = HTTP01[0]
    before = served(world, name).serial_number
    world.pebble.stop()
    world.pebble.start(http_port=free_port())  # the CA checks a port nothing answers on
    try:
        code, out, err = cli("certs", "renew", "-C", str(world.inventory), name)
    finally:
        world.pebble.stop()
        world.pebble.start()
    assert code == 1
    assert f"{name}: FAILED: the CA could not check {name} (http-01: " in out
    assert "never reached the responder on edge" in out
    assert served(world, name).serial_number == before
    [alert] = alerts(world, name)
    assert alert["state"] == "problem"

    code, out, err = cli("certs", "renew", "-C", str(world.inventory), name)
    assert code == 0, out + err
    assert served(world, name, trust=world.pebble.roots()).serial_number != before
    problem, recovery = alerts(world, name)
    assert recovery["state"] == "recovery" and recovery["since"] == problem["since"]


def test_the_ca_down_keeps_the_certificate_and_alerts_once(world: World, cli: Cli) -> None:
    name = HTTP01[1]
    before = served(world, name).serial_number
    world.pebble.stop()
    try:
        code, out, err = cli("certs", "renew", "-C", str(world.inventory), name)
    finally:
        world.pebble.start()
    assert code == 1
    assert f"{name}: FAILED: cannot reach the ACME directory {world.pebble.url}" in out
    assert "Connection refused" in out
    assert err.count("trying again in") == 2, err
    assert served(world, name).serial_number == before
    assert [a["state"] for a in alerts(world, name)] == ["problem"]


def test_up_renews_what_is_due_after_applying(world: World, cli: Cli, tmp_path: Path) -> None:
    before = served(world, UNDER_WILDCARD[0]).serial_number
    world.pem(WILDCARD).unlink()  # lost on the edge: due
    code, out, err = cli(
        "up", str(world.inventory), "--yes", "--no-serve", "--out", str(tmp_path / "site")
    )
    assert code == 0, out + err
    assert f"Certificate {WILDCARD}: renewed: serial" in err
    assert f"Certificate {REFUSED}: waiting: " in err  # still within its backoff
    renewed = served(world, UNDER_WILDCARD[1], trust=world.pebble.roots())
    assert renewed.serial_number != before


def test_the_watcher_renews_what_is_due(world: World, tmp_path: Path) -> None:
    name = HTTP01[0]  # the other one still waits after the CA was down
    before = served(world, name).serial_number
    world.pem(name).unlink()  # lost on the edge (HAProxy still serves it from memory): due
    log = tmp_path / "watch.log"
    with log.open("wb") as output:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "allmende", "-v", "watch", str(world.inventory)],
            env={**os.environ, **world.env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(OSError, ssl.SSLError):
                renewed = served(world, name, trust=world.pebble.roots())
                if renewed.serial_number != before:
                    break
            assert watcher.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        # The edge serves the new certificate before the watcher says so in its log.
        said = f"certificate {name}: renewed: serial {renewed.serial_number:x}"
        while said not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        stop(watcher)
    with contextlib.closing(sqlite3.connect(world.env["ALLMENDE_STATE"])) as db:
        [(trigger,)] = db.execute(
            "SELECT trigger FROM cert_attempts WHERE certificate = ? ORDER BY id DESC LIMIT 1",
            (name,),
        )
    assert trigger == "watch"
