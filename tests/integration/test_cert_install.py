"""New certificates on an edge: written in place of the old ones and served by the real HAProxy
after a reload through its master socket, or, when HAProxy rejects them, the old ones back and
still served. The edge is this machine with a directory standing in for its ``/``."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tests.ports import free_port
from tests.unit.test_cert_renewal import build

from allmende.connectors.local import LocalConnector
from allmende.errors import CertificateFailed
from allmende.inventory.hostpaths import (
    HAPROXY_CONFIG,
    HAPROXY_MASTER_SOCKET,
    HAPROXY_PIDFILE,
)
from allmende.operations.certs.install import install

PEM = "/etc/haproxy/certs/wiki.test.pem"
CONFIG = """global
    log stderr format raw local0 err
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend https
    bind 127.0.0.1:{port} ssl crt {pem}
    http-request return status 200 content-type text/plain string ok
"""


def certificate() -> tuple[bytes, int]:
    """Return a self-signed certificate for wiki.test and its key as one PEM (what HAProxy's
    ``crt`` reads), and its serial number."""
    cert, key = build(("wiki.test",), 30)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM) + private, cert.serial_number


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def served_serial(port: int) -> int:
    """Return the serial number of the certificate 127.0.0.1:``port`` presents."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="wiki.test") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@dataclass
class Edge:
    root: Path
    port: int
    connector: LocalConnector

    def at(self, path: str) -> Path:
        return self.root / path.lstrip("/")


@pytest.fixture
def edge(tmp_path: Path) -> Edge:
    if shutil.which("haproxy") is None:
        pytest.fail("HAProxy is not installed: run `script/bootstrap test` (haproxy)")
    root = tmp_path / "edge"
    port = free_port()
    made = Edge(root, port, LocalConnector("edge", str(root)))
    made.at(PEM).parent.mkdir(parents=True)
    made.at(PEM).write_bytes(certificate()[0])
    made.at(PEM).chmod(0o600)
    made.at(HAPROXY_CONFIG).write_text(CONFIG.format(port=port, pem=made.at(PEM)))
    return made


@pytest.fixture
def running(edge: Edge) -> Iterator[Edge]:
    """The edge with HAProxy running in master-worker mode, its master socket where allmende
    looks for it."""
    socket_path = edge.at(HAPROXY_MASTER_SOCKET)
    socket_path.parent.mkdir(parents=True)
    master = subprocess.Popen(
        ["haproxy", "-W", "-db", "-S", f"{socket_path},mode,600",
         "-p", str(edge.at(HAPROXY_PIDFILE)), "-f", str(edge.at(HAPROXY_CONFIG))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                served_serial(edge.port)
                break
            except OSError:
                assert master.poll() is None, "HAProxy did not start"
                assert time.monotonic() < deadline, "HAProxy does not answer"
                time.sleep(0.05)
        yield edge
    finally:
        master.send_signal(signal.SIGTERM)  # the master stops its workers with it
        try:
            master.wait(10)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait(5)


def test_a_running_haproxy_serves_the_new_certificate_after_the_reload(running: Edge) -> None:
    assert served_serial(running.port) == serial_of(running.at(PEM))
    new, serial = certificate()
    said: list[str] = []
    reloaded = asyncio.run(install(running.connector, [(PEM, new)], said.append))
    assert reloaded is True
    assert served_serial(running.port) == serial
    assert oct(running.at(PEM).stat().st_mode & 0o777) == "0o600"
    assert b"BEGIN CERTIFICATE" in running.at(PEM + ".allmende-prev").read_bytes()
    assert not running.at("/var/lib/allmende/apply.lock").exists()  # the lock was let go


def test_a_certificate_haproxy_rejects_leaves_the_old_one_served(running: Edge) -> None:
    old = running.at(PEM).read_bytes()
    serial = serial_of(running.at(PEM))
    with pytest.raises(CertificateFailed) as failed:
        asyncio.run(install(running.connector, [(PEM, b"not a certificate\n")]))
    assert failed.value.kind == "install"
    assert str(failed.value).startswith(
        "edge: the new certificate was not taken, the previous one stays: edge: HAProxy rejects"
    )
    assert running.at(PEM).read_bytes() == old
    assert served_serial(running.port) == serial


def test_without_a_running_haproxy_the_files_are_only_checked(edge: Edge) -> None:
    new, serial = certificate()
    assert asyncio.run(install(edge.connector, [(PEM, new)])) is False
    assert serial_of(edge.at(PEM)) == serial
    new = "/etc/haproxy/certs/new.test.pem"  # a file that was not there before goes again
    with pytest.raises(CertificateFailed, match="the previous one stays"):
        asyncio.run(install(edge.connector, [(PEM, b"broken\n"), (new, b"broken\n")]))
    assert serial_of(edge.at(PEM)) == serial
    assert not edge.at(new).exists()


def test_an_apply_that_holds_the_lock_is_waited_for(
    edge: Edge, monkeypatch: pytest.MonkeyPatch
) -> None:
    from allmende.apply.lock import host_lock
    from allmende.operations.certs import install as module

    monkeypatch.setattr(module, "LOCK_WAIT", 0.0)
    before = serial_of(edge.at(PEM))

    async def during_an_apply() -> None:
        async with host_lock(edge.connector, "allmende apply", 1):
            await install(edge.connector, [(PEM, certificate()[0])])

    with pytest.raises(CertificateFailed, match="the new certificates were not installed"):
        asyncio.run(during_an_apply())
    assert serial_of(edge.at(PEM)) == before
