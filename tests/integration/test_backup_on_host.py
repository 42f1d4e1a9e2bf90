"""What a host's backup timer runs: allmende's zip application, by the system's python3 with
nothing but the standard library (``-I -S``: no site-packages at all), reading the job file and
passphrase apply writes, backing up into a real Borg repository, recording the run in the host's
state database and alerting a real SMTP server when it fails."""

from __future__ import annotations

import email
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from tests.integration.backup_site import Site, make_site, need_borg
from tests.ports import free_port

from allmende.actions import backuphost, backupinit
from allmende.actions.plan import prepare as plan_prepare
from allmende.errors import UserError
from allmende.inventory.hostpaths import PROGRAM, backup_job, backup_passphrase
from allmende.plan.backupfiles import program
from allmende.render import systemd

NOTES = """\
description: Notes
host: box
components:
  app:
    image: localhost/notes:1
    volumes: {data: /data}
backup: {consistency: dump}
"""


class Inbox:
    """An SMTP sink: every message handed to it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def site(tmp_path: Path, smtp: tuple[Inbox, int]) -> Site:
    need_borg()
    made = make_site(
        tmp_path,
        str(tmp_path / "repo" / "{service}"),
        {"notes": NOTES},
        notify=f"  - {{email: infra@testers.example, smtp: '127.0.0.1:{smtp[1]}'}}\n",
    )
    (made.on_host("/srv/notes/data")).mkdir(parents=True)
    (made.on_host("/srv/notes/data/todo.txt")).write_text("back up\n")
    return made


def apply_backup_files(site: Site) -> None:
    """Write what apply writes for the backup (job file, passphrase, program) under the host's
    root."""
    prepared = plan_prepare(site.inventory, site.env)
    for path, rendered in prepared.wanted["box"].items():
        if path.startswith(("/etc/allmende/", "/usr/local/lib/allmende/")):
            target = site.on_host(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(rendered.content)
            target.chmod(rendered.mode)


def run_timer_command(site: Site) -> subprocess.CompletedProcess[str]:
    """Run the unit's ExecStart (with -S added: not even the system's site-packages)."""
    words = [*systemd.BACKUP_COMMAND, "notes"]
    words[words.index(PROGRAM)] = str(site.on_host(PROGRAM))
    words.insert(1, "-S")
    env = {
        "PATH": os.environ["PATH"],
        "ALLMENDE_HOST_ROOT": str(site.host_root),
        "ALLMENDE_NOTIFY_TIMEOUT": "20",
    }
    return subprocess.run(words, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_timer_command_backs_up_with_the_standard_library_alone(
    site: Site, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    [made] = backupinit.init(site.context(), site.say)
    assert not made.error
    apply_backup_files(site)
    assert site.on_host(backup_job("notes")).exists()
    assert oct(site.on_host(backup_passphrase("notes")).stat().st_mode & 0o777) == "0o600"
    assert site.on_host(PROGRAM).read_bytes() == program()

    done = run_timer_command(site)
    assert done.returncode == 0, done.stderr
    assert "notes: notes-" in done.stdout
    state = site.on_host("/var/lib/allmende/state.sqlite")
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT kind, service, ok FROM backup_runs").fetchall() == [
            ("run", "notes", 1)
        ]
    assert inbox.messages == []

    # A wrong passphrase on the host: the run fails, is recorded, and mailed once.
    right = site.on_host(backup_passphrase("notes")).read_bytes()
    site.on_host(backup_passphrase("notes")).write_text("hunter2-not-it\n")
    failed = run_timer_command(site)
    assert failed.returncode == 2
    assert "the repository passphrase is wrong" in failed.stderr
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT ok FROM backup_runs ORDER BY id").fetchall() == [(1,), (0,)]
    [(_sender, to, content)] = inbox.messages
    assert to == ["infra@testers.example"]
    message = email.message_from_bytes(content)
    assert message["Subject"] == "[allmende testers] notes: backup failed"
    body = str(message.get_payload())
    assert "the repository passphrase is wrong" in body and "hunter2" not in body

    # Still failing: the same incident, no second mail. Repaired: one recovery.
    assert run_timer_command(site).returncode == 2
    assert len(inbox.messages) == 1
    site.on_host(backup_passphrase("notes")).write_bytes(right)
    assert run_timer_command(site).returncode == 0
    assert len(inbox.messages) == 2
    recovery = email.message_from_bytes(inbox.messages[1][2])
    assert recovery["Subject"].startswith("[allmende testers] notes: recovered (backup failed")


def test_the_program_imports_nothing_but_the_standard_library(tmp_path: Path) -> None:
    archive = tmp_path / "allmende.pyz"
    archive.write_bytes(program())
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(archive), "backup", "job", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Back up SERVICE on this host" in done.stdout


def test_the_host_says_how_fresh_its_backups_are_and_records_each_run(
    site: Site, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    env = {"ALLMENDE_HOST_ROOT": str(site.host_root), "ALLMENDE_NOTIFY_TIMEOUT": "20"}
    assert backuphost.freshness(env) == {}  # nothing applied here yet
    [made] = backupinit.init(site.context(), site.say)
    assert not made.error
    apply_backup_files(site)
    before = backuphost.freshness(env)["notes"]
    assert (before["state"], before["age"], before["last"]) == ("missing", None, None)

    said: list[str] = []
    result = backuphost.job("notes", env, said.append)
    assert result.archive.startswith("notes-") and result.files == 1
    now = backuphost.freshness(env)["notes"]
    assert now["state"] == "fresh" and isinstance(now["age"], float) and now["age"] < 0.1
    assert str(now["last"]).startswith(result.archive[len("notes-") :][:10])

    secret = site.on_host(backup_passphrase("notes"))
    right = secret.read_bytes()
    secret.write_text("hunter2-not-it\n")
    with pytest.raises(UserError, match="the repository passphrase is wrong"):
        backuphost.job("notes", env, said.append)
    wrong = backuphost.freshness(env)["notes"]
    assert wrong["state"] == "unreadable" and "passphrase is wrong" in str(wrong["detail"])
    secret.unlink()
    with pytest.raises(UserError, match="no repository passphrase on this host"):
        backuphost.job("notes", env, said.append)  # nothing to run: not recorded
    state = site.on_host("/var/lib/allmende/state.sqlite")
    with sqlite3.connect(state) as db:
        rows = db.execute("SELECT ok, archive FROM backup_runs ORDER BY id").fetchall()
    assert rows == [(1, result.archive), (0, "")]
    assert len(inbox.messages) == 1  # the failure, alerted once
    secret.write_bytes(right)
    assert backuphost.job("notes", env, said.append).archive != result.archive
    assert len(inbox.messages) == 2  # and the recovery


def test_the_host_says_what_is_wrong_with_a_backup_job_file(tmp_path: Path) -> None:
    job = tmp_path / backup_job("notes").lstrip("/")
    job.parent.mkdir(parents=True)
    job.write_text('{"version": 1, "service": "notes"}')
    with pytest.raises(UserError, match=r"cannot read the backup job .*notes\.json"):
        backuphost.job("notes", {"ALLMENDE_HOST_ROOT": str(tmp_path)}, print)
    with pytest.raises(UserError, match="no backup job for `wiki` on this host"):
        backuphost.job("wiki", {"ALLMENDE_HOST_ROOT": str(tmp_path)}, print)
    [(service, said)] = backuphost.freshness({"ALLMENDE_HOST_ROOT": str(tmp_path)}).items()
    assert service == "notes" and said["state"] == "unreadable"
