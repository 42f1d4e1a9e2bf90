"""A rendered zone served by a real Knot on 127.0.0.1: every record of the rendered files
answers, authoritatively, as the inventory says; the serial moves only when the zone does.

Knot runs in the foreground (``knotd -c knot.conf``) on port 18553 with its run directory and
database in a temporary directory, and reads the zone files straight from the rendered tree.
script/bootstrap installs it (Debian package ``knot``); without it the test fails and says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest
from tests.conftest import FIXTURES

from allmende.actions.render import render
from allmende.render.dns import serial

PORT = 18553
ADDRESS = "127.0.0.1"
ZONES = ("nordlicht.example", "lab.nordlicht.example")
EDGE_V4, EDGE_V6 = "198.51.100.7", "2001:db8::7"


@dataclass(frozen=True)
class Knot:
    """A running knotd and how to reach it."""

    process: subprocess.Popen[bytes]
    config: Path
    knotc: str
    log: Path

    def reload(self) -> None:
        """Reload every zone from its file and wait until Knot has done so."""
        for zone in ZONES:
            subprocess.run(
                [self.knotc, "-c", str(self.config), "-b", "zone-reload", zone],
                check=True,
                capture_output=True,
                timeout=10,
            )


def query(name: str, kind: str, timeout: float = 2) -> dns.message.Message:
    """Ask Knot for one record set over UDP; fail unless the answer is authoritative."""
    message = dns.message.make_query(name, kind)
    response = dns.query.udp(message, ADDRESS, port=PORT, timeout=timeout)
    assert response.rcode() == dns.rcode.NOERROR, (
        f"{name} {kind}: {dns.rcode.to_text(response.rcode())}"
    )
    assert response.flags & dns.flags.AA, f"{name} {kind}: not authoritative"
    return response


def answer(name: str, kind: str, timeout: float = 2) -> set[str]:
    """Return the data Knot answers for ``name``/``kind`` as text (empty for no data)."""
    response = query(name, kind, timeout)
    wanted = dns.rdatatype.from_text(kind)
    return {
        rdata.to_text()
        for rrset in response.answer
        if rrset.rdtype == wanted and rrset.name == dns.name.from_text(name)
        for rdata in rrset
    }


def knot_config(directory: Path, zones: Path) -> str:
    user = "    user: root:root\n" if os.geteuid() == 0 else ""
    listing = "".join(f"  - domain: {zone}\n" for zone in ZONES)
    return (
        "server:\n"
        f"    rundir: {directory / 'run'}\n"
        f"{user}"
        f"    listen: {ADDRESS}@{PORT}\n"
        f"    pidfile: {directory / 'run' / 'knot.pid'}\n"
        "log:\n"
        "  - target: stderr\n"
        "    any: info\n"
        "database:\n"
        f"    storage: {directory / 'db'}\n"
        "template:\n"
        "  - id: default\n"
        f"    storage: {zones}\n"
        '    file: "%s.zone"\n'
        "    zonefile-sync: -1\n"
        "    zonefile-load: whole\n"
        "    journal-content: none\n"
        "    semantic-checks: on\n"
        "zone:\n" + listing
    )


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "valid" / "render-dns", tmp_path / "inventory"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment whose state database (which keeps the zone serials) is under tmp_path."""
    return {"ALLMENDE_STATE": str(tmp_path / "state.sqlite")}


@pytest.fixture
def out(inventory: Path, tmp_path: Path, env: dict[str, str]) -> Path:
    out = tmp_path / "out"
    render(inventory, out, env, targets=("dns",))
    return out


@pytest.fixture
def knot(tmp_path: Path, out: Path) -> Iterator[Knot]:
    knotd, knotc = shutil.which("knotd"), shutil.which("knotc")
    if knotd is None or knotc is None:
        pytest.fail("knotd/knotc are missing: apt-get install knot (script/bootstrap test does)")
    directory = tmp_path / "knot"
    (directory / "run").mkdir(parents=True)
    (directory / "db").mkdir()
    config = directory / "knot.conf"
    config.write_text(knot_config(directory, out / "dns"))
    check = subprocess.run([knotc, "-c", str(config), "conf-check"], capture_output=True)
    assert check.returncode == 0, check.stderr.decode()
    log = directory / "knotd.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([knotd, "-c", str(config)], stdout=sink, stderr=sink)
    server = Knot(process, config, knotc, log)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, f"knotd exited:\n{log.read_text()}"
            try:
                if all(answer(f"{zone}.", "SOA", timeout=0.1) for zone in ZONES):
                    break
            except (dns.exception.Timeout, AssertionError, OSError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"knotd does not answer:\n{log.read_text()}") from None
                time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_every_rendered_record_is_served(knot: Knot, out: Path) -> None:
    checked = 0
    for zone_name in ZONES:
        zone = dns.zone.from_file(
            str(out / "dns" / f"{zone_name}.zone"), zone_name, relativize=False
        )
        delegated = [
            name
            for name, node in zone.nodes.items()
            if name != zone.origin and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS)
        ]
        for name, node in zone.nodes.items():
            if any(name.is_subdomain(cut) for cut in delegated):
                continue  # the delegation and its glue: the child zone answers for these names
            for rdataset in node.rdatasets:
                kind = dns.rdatatype.to_text(rdataset.rdtype)
                expected = {rdata.to_text() for rdata in rdataset}
                assert answer(name.to_text(), kind) == expected, f"{name} {kind}"
                checked += 1
    assert checked >= 30, checked
    complaints = [line for line in knot.log.read_text().splitlines() if " info: " not in line]
    assert not complaints, "\n".join(complaints)  # semantic checks are on


def test_derived_and_written_records_answer_as_the_inventory_says(knot: Knot) -> None:
    # route records: the edge's public addresses
    for name in ("wiki", "git", "pages", "ci.lab"):
        assert answer(f"{name}.nordlicht.example.", "A") == {EDGE_V4}
        assert answer(f"{name}.nordlicht.example.", "AAAA") == {EDGE_V6}
    assert answer("nordlicht.example.", "A") == {EDGE_V4}
    # host records: at the host's address name, else <host>.<first domain>
    assert answer("ns1.nordlicht.example.", "A") == {"198.51.100.53"}
    assert answer("ns1.nordlicht.example.", "AAAA") == {"2001:db8::53"}
    assert answer("rack.nordlicht.example.", "A") == {"192.0.2.10"}
    assert answer("box.lab.nordlicht.example.", "A") == {"192.0.2.30"}
    # from the zone file
    assert answer("nordlicht.example.", "MX") == {"10 mail.nordlicht.example."}
    assert answer("nordlicht.example.", "TXT") == {'"v=spf1 mx -all"'}
    assert answer("nordlicht.example.", "CAA") == {'0 issue "letsencrypt.org"'}
    assert answer("handbook.nordlicht.example.", "A") == {"192.0.2.80"}
    response = query("mail._domainkey.nordlicht.example.", "TXT")
    strings = next(iter(response.answer[0])).strings
    assert len(strings) == 2 and len(strings[0]) == 255
    assert b"".join(strings).endswith(b"IDAQAB")
    motto = next(iter(query("motto.nordlicht.example.", "TXT").answer[0])).strings
    assert b"".join(motto).decode() == 'Grüße aus dem "Nordlicht" \\ Hackspace'
    # NS and SOA
    assert answer("nordlicht.example.", "NS") == {"ns1.nordlicht.example.", "ns2.example.net."}
    assert answer("nordlicht.example.", "SOA") == {
        "ns1.nordlicht.example. dns\\.admin.nordlicht.example. 1 14400 3600 1209600 3600"
    }
    # managed domains that make no zone are not served at all
    refused = dns.query.udp(
        dns.message.make_query("handbook.nordlicht.org.", "A"), ADDRESS, port=PORT, timeout=2
    )
    assert refused.rcode() == dns.rcode.REFUSED


def soa_serial(zone: str) -> int:
    return int(next(iter(answer(f"{zone}.", "SOA"))).split()[2])


def test_the_serial_moves_only_with_the_content(
    knot: Knot, inventory: Path, out: Path, env: dict[str, str]
) -> None:
    zone_file = out / "dns" / "nordlicht.example.zone"
    assert serial(zone_file.read_bytes()) == 1
    render(inventory, out, env, targets=("dns",))
    knot.reload()
    assert serial(zone_file.read_bytes()) == soa_serial("nordlicht.example") == 1
    gateway = inventory / "hosts" / "gateway.yaml"
    gateway.write_text(gateway.read_text().replace(EDGE_V4, "198.51.100.8"))
    render(inventory, out, env, targets=("dns",))
    knot.reload()
    assert serial(zone_file.read_bytes()) == soa_serial("nordlicht.example") == 2
    assert soa_serial("lab.nordlicht.example") == 2
    assert answer("wiki.nordlicht.example.", "A") == {"198.51.100.8"}
    assert answer("ci.lab.nordlicht.example.", "A") == {"198.51.100.8"}
    render(inventory, out, env, targets=("dns",))
    knot.reload()
    assert serial(zone_file.read_bytes()) == soa_serial("nordlicht.example") == 2
