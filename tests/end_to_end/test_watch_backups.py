"""The watcher's backup probe with the real Borg: each service's freshness read from its
repository (a real sshd holding the repositories behind allmende's ``borg serve`` lines)
through the service's own host: ``box`` is this machine under a temp root, ``far`` the remote
host reached over SSH. A service backed up is up; one whose repository holds no archive yet is
down, alerted once to a real SMTP sink (aiosmtpd), and recovered once after its backup runs.

Borg, sshd, podman and aiosmtpd are installed by ``script/bootstrap test``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.end_to_end.backup_world import RepositoryServer
from tests.end_to_end.conftest import Podman
from tests.end_to_end.remote import RemoteHost
from tests.end_to_end.watch_world import Sink, process, wait_for
from tests.integration.backup_site import Site, make_site, need_borg
from tests.ports import free_port

from allmende.actions import backupinit

ALLMENDE = str(Path(sys.executable).parent / "allmende")

SERVICE = """\
description: {what}
host: {host}
components:
  app:
    image: localhost/allmende-test/busybox:1
    volumes: {{data: /www}}
backup: {{consistency: stop}}
"""
WATCH = """\
watch:
  intervals: {backup: 1s}
  timeout: 60s
  retries: 0
  recover: 1
"""


def backed_up(tmp_path: Path, server: RepositoryServer, remote: RemoteHost, smtp: int) -> Site:
    """Return the site: ``web`` on ``box`` (here), ``notes`` on ``far`` (over SSH), their
    repositories made, their keys allowed on the repository server."""
    site = make_site(
        tmp_path,
        server.url(),
        {
            "web": SERVICE.format(what="The space's web pages", host="box"),
            "notes": SERVICE.format(what="The plenum's notes", host="far"),
        },
        notify=f'  - {{email: ops@watch.test, smtp: "127.0.0.1:{smtp}"}}\n',
        env={**remote.connector_env, "NO_COLOR": "1"},
    )
    collective = site.inventory / "allmende.yaml"
    collective.write_text(collective.read_text() + WATCH)
    far = (
        "description: the remote host\nengine: compose\nruntime: podman\naddress: 127.0.0.1\n"
        f"ssh: {remote.inventory_ssh}\n"
    )
    (site.inventory / "hosts" / "far.yaml").write_text(far)
    for data in (site.on_host("/srv/web/data"), remote.local("/srv/notes/data")):
        data.mkdir(parents=True, exist_ok=True)
        (data / "index.html").write_text("written before the backup\n")
    lines = backupinit.authorized_keys(site.context()).values()
    server.authorized_keys.write_text("".join(f"{line}\n" for line in lines))
    made = site.init()
    assert [(m.created, m.error) for m in made] == [(True, "")] * 2, made
    return site


def status(site: Site) -> tuple[int, dict[str, dict[str, object]]]:
    done = subprocess.run(
        [ALLMENDE, "status", str(site.inventory), "--json"],
        env=site.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.stdout, done.stderr
    return done.returncode, {p["id"]: p for p in json.loads(done.stdout)["probes"]}


def test_backup_freshness_is_read_on_each_host_and_alerted_once(
    tmp_path: Path,
    podman: Podman,
    repository_server: RepositoryServer,
    remote_host: RemoteHost,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    need_borg()
    for name in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF"):
        monkeypatch.setenv(name, podman.env[name])
    sink = Sink(free_port())
    try:
        site = backed_up(tmp_path, repository_server, remote_host, sink.controller.port)
        [web] = site.run("web")
        assert web.ok, web.message

        # One round: the web's archive is fresh; the notes have none yet.
        code, found = status(site)
        assert code == 1, found
        assert found["web/backup/web"]["state"] == "up", found["web/backup/web"]
        assert found["web/backup/web"]["host"] == "box"
        notes = found["notes/backup/notes"]
        assert notes["state"] == "down" and notes["host"] == "far", notes
        assert "no archive" in str(notes["detail"]), notes
        assert not sink.messages  # `status` alerts nobody

        argv = [ALLMENDE, "watch", str(site.inventory)]
        with process(argv, tmp_path / "watch.log", site.env):
            wait_for(lambda: sink.about("notes: backup late or missing"), 60, "the notes' alert")
            [alert] = sink.about("notes: backup late or missing")
            assert "Service: notes on far" in alert.get_payload()
            # The notes are backed up on their host: the next round finds the archive.
            [run] = site.run("notes")
            assert run.ok, run.message
            wait_for(lambda: sink.about("notes: recovered"), 60, "the notes' recovery")
            time.sleep(3)  # rounds go on: nothing more is sent
        subjects = [str(m["Subject"]) for m in sink.messages]
        assert subjects == [alert["Subject"], sink.about("notes: recovered")[0]["Subject"]], (
            subjects,
            (tmp_path / "watch.log").read_text(),
        )
        code, found = status(site)
        assert code == 0, found
        assert {found[p]["state"] for p in ("web/backup/web", "notes/backup/notes")} == {"up"}
    finally:
        sink.stop()
        remote_host.empty("/srv", "/var/lib/allmende", "/etc/allmende", "/var/cache/allmende")
