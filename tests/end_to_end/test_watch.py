"""`allmende watch` and `allmende status` against a real world on 127.0.0.1 (``watch_world``):
HTTP servers that answer, fail, hang and recover behind the HAProxy allmende renders, a
passthrough backend whose certificate expires in 3 days, Knot serving the rendered zone that
is then changed to a wrong address, an SMTP sink that must receive exactly one alert and one
recovery per incident, a webhook receiver that is down at first and then gets the queued
alerts; the watcher killed and started again sends nothing twice; a state database held
locked by a reader loses no result.

HAProxy, Knot and aiosmtpd are installed by ``script/bootstrap test``; without them the tests
fail saying so. The watcher runs as its own process (``allmende watch DIR``), as a user runs it.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.end_to_end.test_haproxy import need, prepared_copy
from tests.end_to_end.watch_world import (
    CA,
    Backend,
    Sink,
    TLSBackend,
    Webhook,
    free_udp_and_tcp_port,
    process,
    wait_for,
)
from tests.ports import free_port

from allmende.inventory.load import load
from allmende.render.dns import render as render_dns
from allmende.render.dns import serial, set_serial
from allmende.render.haproxy import render as render_haproxy

PAD_RESULTS = (
    "SELECT at FROM watch_results WHERE probe = 'pad/http/https://pad.watch.test/' ORDER BY at"
)
ALLMENDE = str(Path(sys.executable).parent / "allmende")


@dataclass
class Ports:
    http: int
    https: int
    wiki: int
    pad: int
    hang: int
    vault: int
    dns: int
    smtp: int
    hook: int
    metrics: int

    @classmethod
    def pick(cls) -> Ports:
        taken: set[int] = set()
        found = {}
        for name in cls.__dataclass_fields__:
            while True:
                port = free_udp_and_tcp_port() if name == "dns" else free_port()
                if port not in taken:
                    taken.add(port)
                    found[name] = port
                    break
        return cls(**found)


def write_inventory(root: Path, ports: Ports) -> None:
    files = {
        "allmende.yaml": f"""
name: watchtest
domains: [watch.test]
edge: {{hosts: [edge], bind: 127.0.0.1, http_port: {ports.http}, https_port: {ports.https}}}
notify:
  - {{email: ops@watch.test, smtp: "127.0.0.1:{ports.smtp}"}}
  - {{webhook: "http://127.0.0.1:{ports.hook}/alerts"}}
watch:
  intervals: {{http: 1s, tcp: 1s, tls: 1s, dns: 1s}}
  timeout: 2s
  retries: 1
  recover: 2
  certificate_days: 14
  nameservers: {{ns1.watch.test: "127.0.0.1:{ports.dns}"}}
  metrics: "127.0.0.1:{ports.metrics}"
people:
  alex: {{name: Alex, email: alex@watch.test}}
""",
        "hosts/edge.yaml": "address: 127.0.0.1\npublic_ipv4: 127.0.0.1\n",
        "hosts/apps.yaml": "address: 127.0.0.1\n",
        "zones/watch.test.yaml": "nameservers: [ns1.watch.test.]\n"
        "records:\n  - {name: ns1, type: A, value: 127.0.0.1}\n",
    }
    for name, port, extra in (
        ("wiki", ports.wiki, ""),
        ("pad", ports.pad, ""),
        ("hang", ports.hang, ""),
    ):
        files[f"services/{name}.yaml"] = (
            f"description: the {name}\nmaintainers: [alex]\nhost: apps\n"
            f"components:\n  app:\n    image: example/{name}:1.0\n"
            f"    ports: {{http: 80}}\n    publish: {{http: {port}}}\n"
            f"routes:\n  - {{domain: {name}.watch.test, to: app.http}}\n{extra}"
        )
    # The hanging server is also probed straight, not only through the edge.
    files["services/hang.yaml"] += (
        f"monitor:\n  - {{http: 'http://127.0.0.1:{ports.hang}/', interval: 1s}}\n"
    )
    files["services/vault.yaml"] = (
        "description: keeps its own certificate\nmaintainers: [alex]\nhost: apps\n"
        "components:\n  server:\n    image: example/vault:1.0\n"
        f"    ports: {{https: 443}}\n    publish: {{https: {ports.vault}}}\n"
        "routes:\n  - {domain: vault.watch.test, to: server.https, tls: passthrough}\n"
    )
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip())


@dataclass
class World:
    root: Path
    directory: Path
    ports: Ports
    wiki: Backend
    sink: Sink
    hook: Webhook
    zone: Path
    knotc: list[str]
    env: dict[str, str]

    def allmende(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ALLMENDE, *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def watcher(self, name: str) -> object:
        return process([ALLMENDE, "watch", str(self.root)], self.directory / name, self.env)


def start_haproxy(root: Path, directory: Path, ca: CA, processes: list[object]) -> list[str]:
    """Return the command that runs the inventory's rendered edge under ``directory``, its
    certificates signed by ``ca`` for 90 days."""
    into = directory / "haproxy"
    config = prepared_copy(render_haproxy(load(root, {})), "edge", into, lambda n: ca.leaf(n, 90))
    return [need("haproxy"), "-W", "-db", "-S", f"{into}/run/m.sock,mode,600", "-f", str(config)]


def knot_config(directory: Path, zones: Path, port: int) -> str:
    user = "    user: root:root\n" if os.geteuid() == 0 else ""
    return (
        f"server:\n    rundir: {directory}\n{user}    listen: 127.0.0.1@{port}\n"
        f"    pidfile: {directory}/knot.pid\n"
        "log:\n  - target: stderr\n    any: info\n"
        f"database:\n    storage: {directory}/db\n"
        f'template:\n  - id: default\n    storage: {zones}\n    file: "%s.zone"\n'
        "    zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n"
        "zone:\n  - domain: watch.test\n"
    )


def listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    ports = Ports.pick()
    root = tmp_path / "inventory"
    write_inventory(root, ports)
    ca = CA.create()
    (tmp_path / "ca.pem").write_text(ca.pem())
    (tmp_path / "vault.pem").write_text(ca.leaf("vault.watch.test", 3.2))
    zones = tmp_path / "zones"
    zones.mkdir()
    zone = zones / "watch.test.zone"
    zone.write_bytes(render_dns(load(root, {}))["dns/watch.test.zone"].content)
    knot_dir = tmp_path / "knot"
    (knot_dir / "db").mkdir(parents=True)
    (knot_dir / "knot.conf").write_text(knot_config(knot_dir, zones, ports.dns))
    knotc = [need("knotc"), "-c", str(knot_dir / "knot.conf")]
    env = {
        **os.environ,
        "ALLMENDE_STATE": str(tmp_path / "state.sqlite"),
        "SSL_CERT_FILE": str(tmp_path / "ca.pem"),
        "NO_COLOR": "1",
    }
    backends = [
        Backend("wiki", ports.wiki),
        Backend("pad", ports.pad),
        Backend("hang", ports.hang, "hang"),
    ]
    vault = TLSBackend(ports.vault, tmp_path / "vault.pem")
    sink = Sink(ports.smtp)
    hook = Webhook(ports.hook)
    haproxy = start_haproxy(root, tmp_path, ca, [])
    try:
        with (
            process(haproxy, tmp_path / "haproxy.log") as edge,
            process([need("knotd"), "-c", str(knot_dir / "knot.conf")], tmp_path / "knot.log"),
        ):
            wait_for(lambda: listening(ports.https) or edge.poll() is not None, 10, "HAProxy")
            assert edge.poll() is None, (tmp_path / "haproxy.log").read_text()
            wait_for(
                lambda: (
                    subprocess.run(
                        [*knotc, "zone-status", "watch.test"], capture_output=True
                    ).returncode
                    == 0
                ),
                10,
                "Knot",
            )
            yield World(root, tmp_path, ports, backends[0], sink, hook, zone, knotc, env)
    finally:
        hook.stop()
        sink.stop()
        vault.stop()
        for backend in backends:
            backend.stop()


def test_status_prints_one_round_and_fails_when_something_is_down(world: World) -> None:
    done = world.allmende("status", str(world.root), "--json")
    assert done.returncode == 1, done.stderr  # the hanging server is down
    found = {p["id"]: p for p in json.loads(done.stdout)["probes"]}
    assert found["wiki/http/https://wiki.watch.test/"]["state"] == "up"
    assert found["wiki/tls/wiki.watch.test:443"]["state"] == "up"
    assert found["wiki/dns/wiki.watch.test"]["state"] == "up"
    vault = found["vault/tls/vault.watch.test:443"]
    assert vault["state"] == "degraded" and "expires in 3 days" in vault["detail"]
    hang = found[f"hang/http/http://127.0.0.1:{world.ports.hang}/"]
    assert hang["state"] == "down" and hang["detail"] == "no answer in time"
    table = world.allmende("status", str(world.root))
    assert table.returncode == 1
    assert "\x1b[" not in table.stdout  # no colour but at a terminal
    assert re.search(r"^up\s+wiki\s+http\s+https://wiki.watch.test/", table.stdout, re.M)
    assert "probes:" in table.stdout and "1 degraded" in table.stdout


def test_one_alert_and_one_recovery_per_incident_to_mail_and_late_webhook(world: World) -> None:
    sink, hook = world.sink, world.hook
    with world.watcher("watch-1.log") as watcher:
        wait_for(lambda: sink.about("certificate expiring"), 20, "the expiring certificate")
        wait_for(lambda: sink.about("hang: down"), 20, "the hanging server")
        assert "expires in 3 days" in sink.about("certificate expiring")[0].get_payload()
        # The wiki fails: one alert, however many probes fail.
        world.wiki.mode = "fail"
        wait_for(lambda: sink.about("wiki: down"), 20, "the wiki's alert")
        [alert] = sink.about("wiki: down")
        body = alert.get_payload()
        assert "Service: wiki on apps" in body and "answered 500" in body and "Since: " in body
        # The webhook receiver comes up late: the queued alerts reach it in order.
        time.sleep(2)
        hook.start()
        wait_for(lambda: any(h["service"] == "wiki" for h in hook.received), 40, "the webhook")
        world.wiki.mode = "ok"
        wait_for(lambda: sink.about("wiki: recovered"), 20, "the wiki's recovery")
        time.sleep(3)  # probes go on: nothing more about the wiki
        wiki = [m for m in sink.messages if "wiki:" in str(m["Subject"])]
        assert [m["Subject"] for m in wiki] == [
            alert["Subject"],
            sink.about("wiki: recovered")[0]["Subject"],
        ]
        recovery = sink.about("wiki: recovered")[0].get_payload()
        assert f"Since: {body.split('Since: ')[1].splitlines()[0]}" in recovery
        wait_for(
            lambda: (
                [h["state"] for h in hook.received if h["service"] == "wiki"]
                == ["problem", "recovery"]
            ),
            40,
            "the wiki's recovery at the webhook",
        )
        # The zone changes to a wrong address: the DNS probe alerts.
        text = world.zone.read_bytes()
        wrong = re.sub(rb"^(wiki\s+IN\s+A\s+)127\.0\.0\.1", rb"\g<1>127.0.0.9", text, flags=re.M)
        assert wrong != text
        world.zone.write_bytes(set_serial(wrong, (serial(text) or 1) + 1))
        subprocess.run([*world.knotc, "zone-reload", "watch.test"], check=True, capture_output=True)
        wait_for(lambda: sink.about("DNS answer wrong"), 20, "the DNS alert")
        assert "127.0.0.9" in sink.about("DNS answer wrong")[0].get_payload()
        # Prometheus reads the same.
        with urllib.request.urlopen(
            f"http://127.0.0.1:{world.ports.metrics}/metrics", timeout=5
        ) as r:
            metrics = r.read().decode()
        pad = 'kind="http",probe="pad/http/https://pad.watch.test/",service="pad"'
        assert f"allmende_probe_success{{{pad}}} 1.0" in metrics
        vault = r'kind="tls",probe="vault/tls/[^"]+",service="vault"'
        days = re.search(rf"allmende_certificate_days_left\{{{vault}\}} ([0-9.]+)", metrics)
        assert days and 2.5 < float(days.group(1)) < 3.5
        # Killed and started again: nothing that was sent is sent again.
        time.sleep(2)  # one flush after the last alert
        killed = time.time()
        watcher.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
        watcher.wait(10)  # type: ignore[attr-defined]
    sent = len(sink.messages)
    with world.watcher("watch-2.log") as again:
        time.sleep(6)
        assert len(sink.messages) == sent, [m["Subject"] for m in sink.messages[sent:]]
        again.terminate()  # type: ignore[attr-defined]
        assert again.wait(10) == 0  # type: ignore[attr-defined]
    # A hanging target did not stall the others: the pad was probed about once a second.
    with sqlite3.connect(world.env["ALLMENDE_STATE"]) as db:
        pad = [at for (at,) in db.execute(PAD_RESULTS)]
        hang = db.execute(
            "SELECT count(*) FROM watch_results WHERE probe LIKE 'hang/http/http://127.0.0.1:%'"
        ).fetchone()[0]
    before = [at for at in pad if at < killed - 2]  # the last second before a kill is lost
    gaps = [b - a for a, b in itertools.pairwise(before)]
    assert hang >= 2
    assert len(before) > 20 and max(gaps) < 1.8, max(gaps)


def test_a_locked_state_database_loses_no_result(world: World) -> None:
    state = world.env["ALLMENDE_STATE"]
    with world.watcher("watch-locked.log") as watcher:
        wait_for(lambda: Path(state).exists(), 10, "the state database")
        time.sleep(2)
        reader = sqlite3.connect(state, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM watch_results").fetchone()  # holds a shared lock
        locked_at = time.time()
        time.sleep(8)
        reader.execute("COMMIT")
        reader.close()
        time.sleep(3)
        watcher.terminate()  # type: ignore[attr-defined]
        # a clean exit: its last flush may wait out the busy database (slow on a loaded machine)
        assert watcher.wait(30) == 0  # type: ignore[attr-defined]
    log = (world.directory / "watch-locked.log").read_text()
    assert "cannot write to the state database now" in log
    with sqlite3.connect(state) as db:
        pad = [at for (at,) in db.execute(PAD_RESULTS)]
    during = [at for at in pad if locked_at <= at <= locked_at + 8]
    assert len(during) >= 6, during  # probed, and kept, while the database was locked
    gaps = [b - a for a, b in itertools.pairwise(pad)]
    assert max(gaps) < 1.8
