"""Backups with the real programs: Borg, an sshd holding the repositories behind the
append-only forced command allmende generates, podman containers that are stopped during the
copy, a PostgreSQL whose dump brings the rows back, a webhook that gets the alerts.

The service's host is this machine under a temp root; the containers run in the test podman
(its CONTAINERS_* variables are in the environment, as they would be on the host)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.end_to_end.backup_world import (
    RepositoryServer,
    Webhook,
    mariadb,
    mariadb_container,
    postgres_container,
    psql,
    row_counts,
    running,
    state,
    web_container,
)
from tests.end_to_end.conftest import Podman
from tests.integration.backup_site import Site, make_site, need_borg
from tests.ports import free_port

from allmende.actions import backup, backupinit
from allmende.inventory.backups import passphrase_secret
from allmende.inventory.secrets import SecretStore
from allmende.operations import borg

WEB = """\
description: The space's web pages
host: box
components:
  app:
    image: localhost/allmende-test/busybox:1
    volumes: {data: /www}
backup: {consistency: stop}
"""
SHOP = """\
description: The shop's database
host: box
components:
  server:
    image: localhost/allmende-test/postgres:15
provides: {database: postgres, databases: [%s]}
backup: {consistency: dump}
"""


@pytest.fixture(autouse=True)
def test_podman(podman: Podman, monkeypatch: pytest.MonkeyPatch) -> None:
    """Let podman, as allmende runs it on this machine, use the test storage."""
    need_borg()
    for name in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF"):
        monkeypatch.setenv(name, podman.env[name])


def passphrase(site: Site, service: str) -> bytes:
    return SecretStore(site.inventory, site.env).get(passphrase_secret(service))


def web_data(site: Site) -> Path:
    data = site.on_host("/srv/web/data")
    data.mkdir(parents=True, exist_ok=True)
    (data / "index.html").write_text("hello from the space\n")
    return data


def test_append_only_over_ssh_stops_the_service_and_survives_a_delete(
    tmp_path: Path, podman: Podman, repository_server: RepositoryServer
) -> None:
    site = make_site(tmp_path, repository_server.url(), {"web": WEB}, append_only=True)
    data = web_data(site)
    # The line allmende generates is all the repository server lets the key do.
    [line] = backupinit.authorized_keys(site.context()).values()
    restrict = (
        f"borg serve --append-only --restrict-to-path {repository_server.directory}/repos/web"
    )
    assert line.startswith(f'restrict,command="{restrict}" ssh-ed25519 ')
    repository_server.authorized_keys.write_text(line + "\n")
    [made] = site.init()
    assert made.created, made.error

    with web_container(podman, "web", data) as container:
        seen: list[bool] = []

        def watch(line: str) -> None:
            if "archiving" in line:
                seen.append(running(podman, container))

        [outcome] = backup.run(site.context(), watch)
        assert outcome.ok, outcome.message
        assert seen == [False], "the container runs while its volume is copied"
        assert running(podman, container), state(podman, container)
        assert outcome.value.downtime is not None and outcome.value.downtime > 0
    archive = outcome.value.archive

    # Through the same key, a delete "works" but frees nothing, and the archive can be had back.
    job = site.context().jobs["web"]
    env = {**os.environ, **borg.environment(job, lambda p: str(site.on_host(p)))}
    repo = repository_server.directory / "repos" / "web"
    before = sorted(p.name for p in (repo / "data").rglob("*") if p.is_file())
    last_good = transaction(repo)
    for words in (["delete", f"{job.repository}::{archive}"], ["compact", job.repository]):
        subprocess.run(
            ["borg", *words], input=passphrase(site, "web"), env=env, check=False,
            capture_output=True,
        )  # fmt: skip
    assert (
        archive
        not in site.borg("list", "--short", str(repo), passphrase=passphrase(site, "web")).decode()
    )
    after = sorted(p.name for p in (repo / "data").rglob("*") if p.is_file())
    assert set(before) <= set(after), "append-only: no segment was freed"
    roll_back(repo, last_good)
    # Borg remembers the newer state it saw (an attack, as far as it knows): look with a clean
    # cache and security directory, as the roll-back procedure says.
    key = passphrase(site, "web")
    listed = site.borg("list", "--short", str(repo), passphrase=key, base="after-roll-back")
    assert archive in listed.decode().split()
    page = site.borg(
        "extract", "--stdout", f"{repo}::{archive}", "srv/web/data/index.html",
        passphrase=key, base="after-roll-back",
    )  # fmt: skip
    assert page == b"hello from the space\n"


def transaction(repo: Path) -> int:
    """Return the number of the repository's last committed transaction."""
    return max(int(p.name.split(".")[1]) for p in repo.glob("index.*"))


def roll_back(repo: Path, last_good: int) -> None:
    """Undo every transaction after ``last_good`` on the repository server, as Borg's
    documentation says for append-only repositories: delete the later segments and indexes."""
    for segment in (repo / "data").rglob("*"):
        if segment.is_file() and segment.name.isdigit() and int(segment.name) > last_good:
            segment.unlink()
    for kind in ("index", "hints", "integrity"):
        for path in repo.glob(f"{kind}.*"):
            if int(path.name.split(".")[1]) > last_good:
                path.unlink()


def test_a_database_comes_back_row_for_row_and_a_refused_dump_is_alerted(
    tmp_path: Path, podman: Podman, postgres_image: str, webhook: Webhook
) -> None:
    notify = f"  - webhook: {webhook.url}\n"
    site = make_site(
        tmp_path, str(tmp_path / "repos" / "{service}"), {"shop": SHOP % "shop"}, notify=notify
    )
    with postgres_container(podman, postgres_image, "shop") as server:
        psql(podman, server, "postgres", "CREATE DATABASE shop")
        psql(podman, server, "shop",
             "CREATE TABLE items (id int PRIMARY KEY, name text);"
             "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g;"
             "CREATE TABLE orders (id serial PRIMARY KEY, item int REFERENCES items(id));"
             "INSERT INTO orders (item) "
             "SELECT g % 1000 + 1 FROM generate_series(1, 250) g;")  # fmt: skip
        before = row_counts(podman, server, "shop")
        assert before == {"items": 1000, "orders": 250}
        site.init()
        [outcome] = site.run()
        assert outcome.ok, outcome.message
        assert outcome.value.rows == {"shop": {"public.items": 1000, "public.orders": 250}}
        [verified] = backup.verify(site.context(), site.say)
        assert verified.ok, verified.message
        assert verified.value.databases == {"shop": {"public.items": 1000, "public.orders": 250}}

        psql(podman, server, "shop", "DROP TABLE orders; DELETE FROM items WHERE id > 10")
        assert row_counts(podman, server, "shop") == {"items": 10}
        done = backup.restore_service(site.context("shop"), "shop", site.say, in_place=True)
        assert done.databases == ["shop"]
        assert row_counts(podman, server, "shop") == before

        # A database the server refuses to dump: the run fails, says why, keeps no archive
        # with a broken dump, and is alerted; the next good run is alerted as a recovery.
        archives = site.borg("list", "--short", str(tmp_path / "repos/shop"),
                             passphrase=passphrase(site, "shop")).split()  # fmt: skip
        (site.inventory / "services/shop.yaml").write_text(SHOP % "shop, ghost")
        [failed] = site.run()
        assert not failed.ok
        assert "dump of ghost: pg_dump: error: connection to server" in failed.message or (
            'database "ghost" does not exist' in failed.message
        ), failed.message
        assert site.borg("list", "--short", str(tmp_path / "repos/shop"),
                         passphrase=passphrase(site, "shop")).split() == archives  # fmt: skip
        [alert] = webhook.wait_for(1)
        assert alert["service"] == "shop" and alert["what"] == "backup failed"
        assert alert["state"] == "problem" and "ghost" in str(alert["detail"])
        (site.inventory / "services/shop.yaml").write_text(SHOP % "shop")
        [again] = site.run()
        assert again.ok, again.message
        recovery = webhook.wait_for(2)[1]
        assert recovery["state"] == "recovery" and recovery["service"] == "shop"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs (needs root and CAP_SYS_ADMIN, which CI has)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs: {done.stderr.decode()}", pytrace=False)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


def test_a_full_repository_disk_fails_clearly_and_keeps_what_was_there(
    tmp_path: Path, podman: Podman, small_disk: Path
) -> None:
    site = make_site(tmp_path, str(small_disk / "{service}"), {"web": WEB})
    data = web_data(site)
    site.init()
    [first] = site.run()
    assert first.ok, first.message
    (data / "big.bin").write_bytes(os.urandom(40 * 2**20))
    [full] = site.run()
    assert not full.ok
    assert "the repository's disk is full" in full.message
    key = passphrase(site, "web")
    site.borg("check", str(small_disk / "web"), passphrase=key)
    assert site.borg("list", "--short", str(small_disk / "web"), passphrase=key).split() == [
        first.value.archive.encode()
    ]


def test_an_unreachable_repository_fails_clearly_and_is_recorded(tmp_path: Path) -> None:
    nowhere = f"ssh://root@127.0.0.1:{free_port()}{tmp_path}/repos/{{service}}"
    site = make_site(tmp_path, nowhere, {"web": WEB})
    web_data(site)
    [made] = site.init()
    assert "the repository server cannot be reached" in made.error
    [outcome] = site.run()
    assert not outcome.ok
    assert "the repository server cannot be reached" in outcome.message


def test_a_backup_killed_half_way_loses_nothing_and_the_next_one_works(
    tmp_path: Path, podman: Podman
) -> None:
    site = make_site(tmp_path, str(tmp_path / "repos" / "{service}"), {"web": WEB})
    data = web_data(site)
    site.init()
    [first] = site.run()
    assert first.ok
    with web_container(podman, "web", data) as container:
        for number in range(6):
            (data / f"big-{number}.bin").write_bytes(os.urandom(64 * 2**20))
        command = [sys.executable, "-m", "allmende", "backup", "run", "-C", str(site.inventory)]
        # Borg, orphaned by the kill, comes to this process (not to this machine's init, which
        # reaps slowly): reaped here, it leaves a stale lock as it would on a host. The run is a
        # process group of its own: whatever it started and left is found by that group.
        group = 0
        try:
            with subreaper():
                running_backup = subprocess.Popen(
                    command, env=site.env, stderr=subprocess.DEVNULL, start_new_session=True
                )
                group = running_backup.pid
                try:
                    borg_pid = wait_for_borg(str(tmp_path / "repos" / "web"))
                    time.sleep(1.0)
                    running_backup.kill()
                    os.kill(borg_pid, signal.SIGKILL)
                finally:
                    running_backup.wait(30)
                os.waitpid(borg_pid, 0)
            assert not running(podman, container), "killed while the service was stopped"
            key = passphrase(site, "web")
            repo = str(tmp_path / "repos" / "web")
            site.borg("check", repo, passphrase=key)
            page = site.borg("extract", "--stdout", f"{repo}::{first.value.archive}",
                             "srv/web/data/index.html", passphrase=key)  # fmt: skip
            assert page == b"hello from the space\n"
            [second] = site.run()
            assert second.ok, second.message
            assert running(podman, container), "the next run started what the killed one stopped"
            assert any("left stopped" in line for line in site.lines)
            # What the killed run left waiting at its named pipes was let go by the next one.
            left = wait_for_group_to_end(group, 30)
            assert not left, f"the killed run left running: {left}"
        finally:
            stop_group(group)


def members(group: int) -> list[tuple[int, str, int, str]]:
    """Return the processes of a process group: pid, state, parent pid, command."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, parent, pgrp = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        if int(pgrp) == group:
            found.append((int(entry.name), state, int(parent), command.strip()))
    return found


def wait_for_group_to_end(group: int, timeout: float) -> dict[int, str]:
    """Wait until no process of the group runs (zombies aside); return those still running
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = {pid: command for pid, status, _, command in members(group) if status != "Z"}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def stop_group(group: int) -> None:
    """Kill, by pid, every process of the group that still runs, and reap those that were
    handed to this process."""
    if not group:
        return
    for pid, status, _, _ in members(group):
        if status != "Z":
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for pid, _, parent, _ in members(group):
        if parent == os.getpid():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """Make this process the one orphaned descendants are handed to, meanwhile."""
    libc = ctypes.CDLL(None, use_errno=True)
    set_child_subreaper = 36
    libc.prctl(set_child_subreaper, 1, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(set_child_subreaper, 0, 0, 0, 0)


def wait_for_borg(repository: str, timeout: float = 60) -> int:
    """Return the pid of the ``borg create`` writing to ``repository`` once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                words = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"create" in words and any(w.startswith(repository.encode()) for w in words):
                return int(entry.name)
        time.sleep(0.05)
    pytest.fail("borg create did not start", pytrace=False)


def test_a_tampered_repository_fails_the_drill(tmp_path: Path) -> None:
    site = make_site(tmp_path, str(tmp_path / "repos" / "{service}"), {"web": WEB})
    data = web_data(site)
    (data / "photo.bin").write_bytes(os.urandom(2**20))
    site.init()
    [outcome] = site.run()
    assert outcome.ok
    segments = sorted(
        (p for p in (tmp_path / "repos/web/data").rglob("*") if p.name.isdigit()),
        key=lambda p: p.stat().st_size,
    )
    biggest = segments[-1]
    content = bytearray(biggest.read_bytes())
    middle = len(content) // 2
    content[middle : middle + 64] = bytes(64)
    biggest.write_bytes(bytes(content))
    [verified] = backup.verify(site.context(), site.say)
    assert not verified.ok
    assert "borg check fails" in verified.message or "does not restore" in verified.message


MARKET = """\
description: The market's database
host: box
components:
  server:
    image: localhost/allmende-test/mariadb:10.11
provides: {database: mariadb, databases: [market]}
"""


def test_a_mariadb_database_comes_back_row_for_row(
    tmp_path: Path, podman: Podman, mariadb_image: str
) -> None:
    site = make_site(tmp_path, str(tmp_path / "repos" / "{service}"), {"market": MARKET})
    with mariadb_container(podman, mariadb_image, "market") as server:
        mariadb(podman, server, "CREATE DATABASE market")
        mariadb(podman, server,
                "CREATE TABLE stalls (id INT PRIMARY KEY, name TEXT);"
                "INSERT INTO stalls SELECT seq, CONCAT('stall ', seq) FROM seq_1_to_400;"
                "CREATE TABLE visits (id INT AUTO_INCREMENT PRIMARY KEY, stall INT);"
                "INSERT INTO visits (stall) SELECT seq % 400 + 1 FROM seq_1_to_120;",
                "market")  # fmt: skip
        site.init()
        [outcome] = site.run()  # a database provider: dumped while it runs
        assert outcome.ok, outcome.message
        assert outcome.value.rows == {"market": {"stalls": 400, "visits": 120}}
        [verified] = backup.verify(site.context(), site.say)
        assert verified.ok, verified.message
        mariadb(podman, server, "DROP TABLE visits; DELETE FROM stalls WHERE id > 3", "market")
        done = backup.restore_service(site.context("market"), "market", site.say, in_place=True)
        assert done.databases == ["market"]
        counts = mariadb(
            podman, server,
            "SELECT (SELECT count(*) FROM stalls), (SELECT count(*) FROM visits)", "market",
        )  # fmt: skip
        assert counts.split() == ["400", "120"]
