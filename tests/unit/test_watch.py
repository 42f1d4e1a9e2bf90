"""The watcher's own logic: what it derives from an inventory, when a check alerts, maintenance
windows, the plan file, the outbox's retries, and results kept in a file that stops growing."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from allmende.inventory.backupjob import Channel
from allmende.inventory.load import load
from allmende.inventory.watchspec import Probe, Window, from_json, weekdays
from allmende.operations.notify import Event
from allmende.render.output import written_for
from allmende.render.watch import render as render_watch
from allmende.render.watch_plan import plan
from allmende.state import store, watchstore
from allmende.watch.checks import Check
from allmende.watch.outbox import Outbox
from tests.conftest import BASE, FIXTURES

EDGE = FIXTURES / "valid" / "render-edge"


def probe(**changes: object) -> Probe:
    base = {"id": "wiki/http/x", "kind": "http", "service": "wiki", "host": "rack", "what": "x"}
    return Probe(**{**base, "interval": 60.0, "timeout": 5.0, "retries": 2, **changes})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- derived probes


def test_every_route_exposed_port_and_certificate_is_derived() -> None:
    made = plan(load(EDGE, {}))
    found = {p.id: p for p in made.probes}
    web = found["website/http/https://a.test/"]
    assert (web.address, web.port, web.name, web.scheme, web.path) == (
        "127.0.0.1",
        18443,
        "a.test",
        "https",
        "/",
    )
    assert found["website/http/http://plain.test/"].port == 18080  # tls: none, plain HTTP
    assert found["archive/tls/secure.test:443"].name == "secure.test"  # passthrough: its own
    assert "archive/http/https://secure.test/" not in found
    assert found["website/tcp/edge:18025"].port == 18025
    assert made.skipped == ("website: exposed port 18053/udp (UDP is not probed)",)
    assert {p.interval for p in made.probes if p.kind == "tls"} == {3600.0}


def test_a_monitor_replaces_the_derived_probe_and_mail_ports_get_starttls(tmp_path: Path) -> None:
    root = Path(shutil.copytree(EDGE, tmp_path / "inventory"))
    website = root / "services" / "website.yaml"
    website.write_text(
        website.read_text().replace("  - {port: 18025,", "  - {port: 587,") + "monitor:\n"
        "  - http: https://a.test/\n"
        "    expect: {status: 200, contains: backend A}\n"
        "    interval: 10s\n"
        "    retries: 0\n"
    )
    found = {p.id: p for p in plan(load(root, {})).probes}
    web = found["website/http/https://a.test/"]
    assert (web.status, web.contains, web.interval, web.retries) == (200, "backend A", 10.0, 0)
    assert [p for p in found if p.startswith("website/http/https://a.test/")] == [
        "website/http/https://a.test/",
        "website/http/https://a.test/static/",
    ]
    mail = found["website/tls/edge:587"]
    assert (mail.starttls, mail.name, mail.port) == ("smtp", "a.test", 587)


def test_dns_names_are_asked_at_the_zones_nameservers() -> None:
    made = plan(load(FIXTURES / "valid" / "render-dns", {}))
    wiki = {p.id: p for p in made.probes}["wiki/dns/wiki.nordlicht.example"]
    assert wiki.expect == ("198.51.100.7", "2001:db8::7")
    assert wiki.nameservers == ("198.51.100.53:53", "[2001:db8::53]:53", "ns2.example.net:53")


def test_the_watch_host_reads_its_own_backups_and_asks_the_other_hosts(tmp_path: Path) -> None:
    root = Path(shutil.copytree(BASE, tmp_path / "inventory"))
    collective = root / "allmende.yaml"
    collective.write_text(
        collective.read_text()
        + "watch:\n  host: rack\n  maintenance:\n    - {start: '05:30', end: '06:25'}\n"
    )
    inventory = load(root, {})
    everywhere = {p.id for p in plan(inventory).probes if p.kind == "backup"}
    assert everywhere == {"database/backup/database", "git/backup/git", "wiki/backup/wiki"}
    on_rack = plan(inventory, where="rack")
    backups = {p.id: p for p in on_rack.probes if p.kind == "backup"}
    assert backups["wiki/backup/wiki"].job == "/etc/allmende/backup/wiki.json"
    assert set(backups) == everywhere
    assert on_rack.remotes == ()  # every backed-up service runs on rack
    on_gateway = plan(inventory, where="gateway")  # it asks rack, reached over SSH
    asked = {p.id: p for p in on_gateway.probes if p.kind == "backup"}
    assert set(asked) == everywhere and {p.job for p in asked.values()} == {""}
    [rack] = on_gateway.remotes
    assert (rack.host, rack.address, rack.port, rack.user) == ("rack", "192.0.2.10", 22, "root")
    assert rack.key == "/etc/allmende/watch/rack.ssh-key"
    assert rack.known_hosts == "/etc/allmende/watch/known_hosts"
    assert "no key to ask it with yet (the secret watch/rack/ssh-key)" in rack.missing
    assert not [s for s in on_gateway.skipped if "backup" in s]
    assert from_json(on_gateway.to_json()) == on_gateway
    assert all(p.windows == (Window("05:30", "06:25", tuple(range(7))),) for p in on_rack.probes)
    files = render_watch(inventory)
    assert set(files) == {
        "rack/etc/allmende/watch.json",
        "rack/etc/systemd/system/allmende-watch.service",
    }
    assert files["rack/etc/allmende/watch.json"].mode == 0o600
    assert from_json(files["rack/etc/allmende/watch.json"].content) == on_rack
    unit = files["rack/etc/systemd/system/allmende-watch.service"].content.decode()
    program = "/usr/bin/python3 -I /usr/local/lib/allmende/allmende.pyz"
    assert f"ExecStart={program} watch --plan /etc/allmende/watch.json" in unit
    assert "Restart=always" in unit and "WantedBy=multi-user.target" in unit
    # Both say whose inventory wrote them, so that another inventory's plan marks them.
    for rendered in files.values():
        assert written_for(rendered.content) == inventory.collective.name
    assert render_watch(load(BASE, {})) == {}


# --------------------------------------------------------------------------- checks


def test_one_alert_per_incident_and_one_recovery_after_passes_in_a_row() -> None:
    check = Check.new(probe(), 0.0)
    assert check.observe("up", "ok", 1, recover=2, quiet=False) is None
    alert = check.observe("down", "answered 500", 2, recover=2, quiet=False)
    assert alert is not None and (alert.label, alert.since, alert.recovery) == ("down", 2, False)
    assert check.observe("down", "answered 500", 3, recover=2, quiet=False) is None
    assert check.observe("up", "ok", 4, recover=2, quiet=False) is None  # one pass: flapping?
    assert check.observe("down", "answered 502", 5, recover=2, quiet=False) is None
    assert check.observe("up", "ok", 6, recover=2, quiet=False) is None
    recovered = check.observe("up", "ok", 7, recover=2, quiet=False)
    assert recovered is not None and recovered.recovery and recovered.since == 2
    assert check.observe("up", "ok", 8, recover=2, quiet=False) is None


def test_a_certificate_that_expires_alerts_again_and_recovers_once() -> None:
    check = Check.new(probe(kind="tls"), 0.0)
    first = check.observe("degraded", "expires in 3 days", 1, recover=1, quiet=False)
    assert first is not None and first.label == "certificate expiring"
    worse = check.observe("down", "expired", 2, recover=1, quiet=False)
    assert worse is not None and worse.label == "certificate invalid or unreachable"
    assert worse.since == 1
    back = check.observe("up", "90 days left", 3, recover=1, quiet=False)
    assert back is not None and back.recovery and back.label == "certificate invalid or unreachable"


def test_maintenance_holds_alerts_back_and_forgets_what_passed_inside() -> None:
    check = Check.new(probe(), 0.0)
    check.observe("up", "ok", 1, recover=1, quiet=False)
    assert check.observe("down", "rebooting", 2, recover=1, quiet=True) is None
    assert check.observe("up", "ok", 3, recover=1, quiet=True) is None
    assert check.due(4) is None  # came and went inside the window: never alerted
    assert check.observe("down", "still down", 5, recover=1, quiet=True) is None
    held = check.due(6)  # the window is over
    assert held is not None and held.since == 5 and held.detail == "still down"


def test_windows_weekly_across_midnight_and_once() -> None:
    night = Window("23:30", "00:30", weekdays("Sat"))
    assert night.covers(datetime(2026, 3, 7, 23, 45))  # Saturday
    assert night.covers(datetime(2026, 3, 8, 0, 15))  # Sunday, after midnight
    assert not night.covers(datetime(2026, 3, 8, 23, 45))
    assert weekdays("Mon..Wed,Sat") == (0, 1, 2, 5)
    assert weekdays("Fri..Mon") == (0, 4, 5, 6)
    once = Window("2026-03-01 20:00", "2026-03-01 23:00", ())
    assert once.covers(datetime(2026, 3, 1, 21, 0))
    assert not once.covers(datetime(2026, 3, 2, 21, 0))


# --------------------------------------------------------------------------- alerts


def test_a_failing_channel_is_tried_until_delivered_without_holding_another() -> None:
    sent: list[tuple[str, str]] = []
    tries = itertools.count()

    def transport(event: Event, channel: Channel) -> None:
        if channel.kind == "webhook" and next(tries) < 3:
            raise OSError("connection refused")
        sent.append((channel.kind, event.state))

    channels = [Channel("webhook", "http://127.0.0.1:1/"), Channel("email", "a@b", "x:25")]

    async def main() -> Outbox:
        outbox = Outbox(channels, transport=transport, pause=0.01)
        worker = asyncio.create_task(outbox.run())
        outbox.add(Event("wiki", "down: x", "t0"))
        outbox.add(Event("wiki", "down: x", "t0", state="recovery"))
        for _ in range(3000):  # up to 30 s on a loaded machine; done in a few hundredths
            if len(sent) == 4:
                break
            await asyncio.sleep(0.01)
        worker.cancel()
        return outbox

    outbox = asyncio.run(main())
    assert sent[:2] == [("email", "problem"), ("email", "recovery")]  # mail did not wait
    assert sent[2:] == [("webhook", "problem"), ("webhook", "recovery")]  # in order
    latest = {o.key: o for o in outbox.take_changed()}
    assert sorted(o.attempts for o in latest.values()) == [1, 1, 1, 4]
    assert all(o.delivered is not None for o in latest.values())


# --------------------------------------------------------------------------- retention


def test_the_state_database_stops_growing(tmp_path: Path) -> None:
    """Twenty probes every minute for ten simulated days, results kept a day in full and
    three by the hour: after the first four days the file does not grow any more."""
    path = tmp_path / "state.sqlite"
    db = store.open_store(path)
    db.execute("PRAGMA synchronous = OFF")  # no fsync per simulated hour: the size is the point
    probes = [f"service-{i}/http/https://s{i}.example/" for i in range(20)]
    start, minute = 1_800_000_000.0, 60.0
    sizes = {}
    for hour in range(24 * 10):
        results = [
            watchstore.Result(p, start + (hour * 60 + m) * minute, "up" if m % 7 else "down", 0.01)
            for m in range(60)
            for p in probes
        ]
        watchstore.write(db, results)
        watchstore.compact(db, start + (hour + 1) * 3600, 86400, 3 * 86400)
        if hour % 24 == 23:
            sizes[hour // 24 + 1] = path.stat().st_size
    db.close()
    assert sizes[4] > sizes[1]
    assert sizes[10] <= sizes[4] * 1.02, sizes
    db = store.open_store(path)
    hourly = db.execute("SELECT count(*), sum(count), sum(failures) FROM watch_hourly").fetchone()
    assert hourly[0] == 20 * 48  # by the hour from three days back to one
    assert hourly[1] == 20 * 60 * 48 and hourly[2] == 20 * 9 * 48
    assert db.execute("SELECT count(*) FROM watch_results").fetchone()[0] == 20 * 60 * 24


def test_a_plan_survives_its_file() -> None:
    made = plan(load(FIXTURES / "valid" / "render-dns", {}))
    assert from_json(made.to_json("comment")) == made
    with pytest.raises(ValueError, match="version"):
        from_json('{"version": 99}')


def test_apply_restarts_the_watcher_when_its_plan_changes_and_disables_it_when_it_leaves() -> None:
    from allmende.plan.actions import host_actions
    from allmende.plan.changes import Change

    unit = "/etc/systemd/system/allmende-watch.service"
    wanted = {unit: object(), "/etc/allmende/watch.json": object()}
    changed = [Change("update", "rack", "/etc/allmende/watch.json", "")]
    actions = host_actions("rack", changed, wanted, None, systemd=True)
    [restart] = [a for a in actions if a.verb == "restart"]
    assert restart.commands == (
        ("systemctl", "enable", "allmende-watch.service"),
        ("systemctl", "restart", "allmende-watch.service"),
    )
    assert not [a for a in host_actions("rack", [], wanted, None, True) if a.verb == "restart"]
    gone = [Change("delete", "rack", unit, "")]
    [down] = [a for a in host_actions("rack", gone, {}, None, True) if a.verb == "down"]
    assert down.commands == (("systemctl", "disable", "--now", "allmende-watch.service"),)
    # Without systemd nothing would start it: the plan says how to, and runs nothing.
    [note] = [a for a in host_actions("rack", changed, wanted, None, False) if a.subject == "watch"]
    assert note.verb == "note" and not note.commands
    assert note.reason.startswith("rack does not run systemd, so nothing starts the watcher")
    program = "/usr/bin/python3 -I /usr/local/lib/allmende/allmende.pyz"
    assert f"`{program} watch --plan /etc/allmende/watch.json` on rack" in note.reason


def test_apply_on_a_watch_host_without_systemd_says_how_to_start_the_watcher(
    tmp_path: Path,
) -> None:
    from allmende.actions.apply import plan_and_apply
    from allmende.actions.plan import Seams
    from allmende.connectors.base import Ran
    from allmende.inventory.secrets import create_key
    from tests.memory import MemoryHost

    inventory = tmp_path / "inventory"
    (inventory / "hosts").mkdir(parents=True)
    (inventory / "allmende.yaml").write_text("name: testers\nwatch: {host: box}\n")
    (inventory / "hosts" / "box.yaml").write_text("description: a box without systemd\n")
    env = {"ALLMENDE_AGE_KEY": str(tmp_path / "age.key"), "ALLMENDE_STATE": str(tmp_path / "db")}
    create_key(inventory, env)
    host = MemoryHost("box")
    host.answer(["python3"], Ran(0, b"", b""))  # the watcher's modules are there
    host.answer(["test", "-d"], Ran(1, b"", b""))  # no /run/systemd/system
    said: list[str] = []
    outcome = plan_and_apply(
        inventory,
        env,
        show=lambda plan: None,
        confirm=lambda plan: True,
        say=said.append,
        seams=Seams(connect=lambda inventory, name, env: host),
    )
    assert outcome.status == "applied", outcome.results
    assert "/etc/allmende/watch.json" in host.files
    assert not [c for c in host.ran if c[0] == "systemctl"]
    assert said[-1].startswith("box: watch: box does not run systemd")
    assert "allmende.pyz watch --plan /etc/allmende/watch.json` on box" in said[-1]


def test_a_watcher_says_what_it_does_not_probe_when_it_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from allmende.inventory.watchspec import Plan
    from allmende.watch.runner import Watcher

    skipped = "git: backup freshness is read on rack or from the inventory"
    watcher = Watcher(Plan("testers", (), skipped=(skipped,)), None)

    async def started_and_stopped() -> None:
        stop = asyncio.Event()
        stop.set()
        await watcher.run(stop)

    asyncio.run(started_and_stopped())
    assert f"not probed here: {skipped}" in caplog.text


def test_stopping_cancels_again_a_task_that_swallowed_its_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from allmende.watch.runner import _cancelled

    swallowed = {"n": 0}

    async def stubborn_once() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed["n"] += 1
                if swallowed["n"] > 1:
                    raise

    stubborn = {"until": True}

    async def never() -> None:
        while stubborn["until"]:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    async def main() -> tuple[bool, bool]:
        once = asyncio.create_task(stubborn_once(), name="once")
        forever = asyncio.create_task(never(), name="forever")
        await asyncio.sleep(0)
        await _cancelled([once], patience=5)
        stopped_once = once.done()
        await _cancelled([forever], patience=0.6)
        left = not forever.done()
        stubborn["until"] = False
        forever.cancel()
        await forever
        return stopped_once, left

    stopped_once, left = asyncio.run(main())
    assert stopped_once and swallowed["n"] == 2
    assert left and "1 task(s) did not stop, left behind: forever" in caplog.text
