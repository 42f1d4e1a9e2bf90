"""A real ACME CA and a real authoritative DNS server on 127.0.0.1, for the certificate tests.

``Pebble`` is Let's Encrypt's test CA (Debian's ``pebble``), started in the foreground with a
configuration of its own: its API's TLS certificate signed by a CA the test makes
(``ListenerCa``, which the inventory names as ``acme.trust``), its http-01 checks sent to the
edge's HTTP port, names looked up at ``Knot``, a block list of names it refuses. Pebble makes a
new root at every start: ``roots()`` fetches the current one from its management port, which
is what a TLS client must trust to verify what the edge serves.

``Knot`` is a knotd serving one zone file with a TSIG key that may update it (RFC 2136):
allmende's dns-01 writes its ``_acme-challenge`` records there, and Pebble resolves every name
through it (A records, and those TXT records).

Both are stopped by their PID; everything lives in the test's temporary directory.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

INSTALL = "run `script/bootstrap test` (as root it installs Debian's pebble and knot)"


def need(*programs: str) -> None:
    """Fail the test, saying what to install, if a program is missing."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.fail(f"the certificate tests need {', '.join(missing)}: {INSTALL}", pytrace=False)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a daemon the test started, by its PID."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class ListenerCa:
    """The CA that signs Pebble's API certificate (for ``localhost`` and 127.0.0.1)."""

    pem: str
    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> ListenerCa:
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "allmende test ACME API CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        (directory / "api-cert.pem").write_text(_pem(leaf))
        (directory / "api-key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cls(_pem(ca), directory / "api-cert.pem", directory / "api-key.pem")


@dataclass
class Pebble:
    """A Pebble of the test's, restartable with another http-01 port."""

    directory: Path
    ca: ListenerCa
    port: int
    management: int
    http_port: int
    dns_port: int
    blocked: tuple[str, ...]
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The ACME directory's URL."""
        return f"https://127.0.0.1:{self.port}/dir"

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca.pem)

    def start(self, http_port: int | None = None) -> None:
        """Start Pebble (checking http-01 on ``http_port``, else the edge's) and wait until
        its directory answers."""
        need("pebble")
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management}",
                "certificate": str(self.ca.cert),
                "privateKey": str(self.ca.key),
                "httpPort": http_port or self.http_port,
                "tlsPort": self.http_port + 1 if http_port is None else http_port + 1,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "domainBlocklist": list(self.blocked),
            }
        }
        path = self.directory / "pebble.json"
        path.write_text(json.dumps(config))
        self.starts += 1
        log = self.directory / f"pebble-{self.starts}.log"
        self.logs.append(log)
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
        }
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                ["pebble", "-config", str(path), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 20
        while True:
            assert self.process.poll() is None, f"pebble exited:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(self.url, context=self._context(), timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"pebble does not answer:\n{log.read_text()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop Pebble (its accounts and certificates are gone with it)."""
        if self.process is not None:
            stop(self.process)
            self.process = None

    def roots(self) -> str:
        """Return the current root and intermediate of Pebble, as PEM (what clients trust)."""
        found = []
        for path in ("roots/0", "intermediates/0"):
            url = f"https://127.0.0.1:{self.management}/{path}"
            with urllib.request.urlopen(url, context=self._context(), timeout=5) as answer:
                found.append(answer.read().decode())
        return "".join(found)


def tsig_secret() -> str:
    """Return a new TSIG secret, base64, as keymgr and tsig-keygen print one."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Knot:
    """A knotd of the test's serving one zone, updatable with a TSIG key."""

    directory: Path
    port: int
    zone: str
    key: str
    secret: str
    process: subprocess.Popen[bytes] | None = None

    def start(self, zone_file: Path) -> None:
        """Serve ``zone_file`` as the zone and wait until it answers."""
        need("knotd", "knotc")
        (self.directory / "run").mkdir(parents=True, exist_ok=True)
        (self.directory / "db").mkdir(exist_ok=True)
        zones = self.directory / "zones"
        zones.mkdir(exist_ok=True)
        shutil.copyfile(zone_file, zones / f"{self.zone}.zone")
        user = "    user: root:root\n" if os.geteuid() == 0 else ""
        config = self.directory / "knot.conf"
        config.write_text(
            "server:\n"
            f"    rundir: {self.directory / 'run'}\n"
            f"{user}"
            f"    listen: 127.0.0.1@{self.port}\n"
            f"    pidfile: {self.directory / 'run' / 'knot.pid'}\n"
            "log:\n"
            "  - target: stderr\n"
            "    any: info\n"
            "database:\n"
            f"    storage: {self.directory / 'db'}\n"
            "key:\n"
            f"  - id: {self.key}\n"
            "    algorithm: hmac-sha256\n"
            f"    secret: {self.secret}\n"
            "acl:\n"
            "  - id: update\n"
            f"    key: {self.key}\n"
            "    action: update\n"
            "template:\n"
            "  - id: default\n"
            f"    storage: {zones}\n"
            '    file: "%s.zone"\n'
            "    zonefile-sync: -1\n"
            "    zonefile-load: difference-no-serial\n"
            "    journal-content: all\n"
            "zone:\n"
            f"  - domain: {self.zone}\n"
            "    acl: update\n"
        )
        checked = subprocess.run(
            ["knotc", "-c", str(config), "conf-check"], capture_output=True, check=False
        )
        assert checked.returncode == 0, checked.stderr.decode()
        log = self.directory / "knotd.log"
        with log.open("wb") as sink:
            self.process = subprocess.Popen(["knotd", "-c", str(config)], stdout=sink, stderr=sink)
        deadline = time.monotonic() + 10
        while not self.answers(f"{self.zone}.", "SOA"):
            assert self.process.poll() is None, f"knotd exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"knotd does not answer:\n{log.read_text()}"
            time.sleep(0.05)

    def answers(self, name: str, kind: str) -> set[str]:
        """Return what Knot answers for ``name``/``kind`` (empty: nothing, or no answer)."""
        try:
            response = dns.query.udp(
                dns.message.make_query(name, kind), "127.0.0.1", port=self.port, timeout=1
            )
        except (dns.exception.DNSException, OSError):
            return set()
        wanted = dns.rdatatype.from_text(kind)
        return {r.to_text() for rrset in response.answer if rrset.rdtype == wanted for r in rrset}

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None
