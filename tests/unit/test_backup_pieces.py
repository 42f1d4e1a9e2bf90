"""The pure pieces of backups: Borg's command lines and what its failures mean, how fresh an
archive is against a schedule, what a drill compares, and the programs run on hosts (rows
counted in a dump as it streams, checksums of a tree with their cache)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from allmende.errors import CommandFailed
from allmende.inventory import sshkeys
from allmende.inventory.backupjob import Job
from allmende.onhost import dumps, hashes
from allmende.operations import archives, borg, drill, repository

JOB = Job("wiki", "rack", "ssh://borg@vault:2222/srv/borg/wiki", "stop", "daily",
          append_only=True, keep=(("daily", 7), ("weekly", 4)))  # fmt: skip


def test_borg_commands_are_argument_lists_without_the_passphrase() -> None:
    assert borg.init(JOB) == [
        "borg", "init", "--encryption=repokey-blake2", "--make-parent-dirs", "--append-only",
        JOB.repository,
    ]  # fmt: skip
    created = borg.create(JOB, "wiki-1", ["srv/wiki/images"], ["pp:srv/wiki/cache"])
    assert created[:4] == ["borg", "create", "--json", "--read-special"]
    assert created[-2:] == [f"{JOB.repository}::wiki-1", "srv/wiki/images"]
    assert created[created.index("--exclude") :][:2] == ["--exclude", "pp:srv/wiki/cache"]
    assert borg.prune(JOB)[2:4] == ["--glob-archives=wiki-*", "--keep-daily=7"]
    assert borg.in_dir("/", ["borg", "list"]) == ["env", "-C", "/", "borg", "list"]
    # The watch unit, to which every repository is read-only, lists without the lock.
    assert "--bypass-lock" not in borg.list_archives(JOB)
    assert borg.list_archives(JOB, lock=False)[-2:] == ["--bypass-lock", JOB.repository]
    env = borg.environment(JOB)
    assert env["BORG_PASSPHRASE_FD"] == "0" and env["TZ"] == "UTC"
    assert "-i /etc/allmende/backup/wiki.ssh-key" in env["BORG_RSH"]
    assert "StrictHostKeyChecking=accept-new" in env["BORG_RSH"]
    assert not any("passphrase" in v.lower() for k, v in env.items() if k != "BORG_PASSPHRASE_FD")


def test_borg_failures_say_what_they_mean() -> None:
    said = "passphrase supplied in BORG_PASSPHRASE, by BORG_PASSCOMMAND or via ... is incorrect."
    error = borg.failure(CommandFailed("x", exit=2, output=said), "wiki", "borg list")
    assert str(error).startswith("wiki: borg list failed: the repository passphrase is wrong")
    full = borg.failure(CommandFailed("x", exit=2, output="[Errno 28] No space left on device"),
                        "wiki", "borg create")  # fmt: skip
    assert "the repository's disk is full" in str(full)
    assert borg.meaning("something else entirely") == ""


def test_an_archive_or_a_repository_that_already_exists_is_told_apart() -> None:
    # What Borg 1.2 prints for each, word for word.
    archive = borg.meaning("Archive wiki-2026-12-06T02:00:00.000 already exists")
    assert archive.startswith("an archive of that name is already in the repository")
    assert borg.meaning("A repository already exists at /srv/backup/wiki.") == (
        "a repository already exists there"
    )
    missing = borg.meaning("Archive wiki-2026-12-06T02:00:00.000 does not exist")
    assert missing.startswith("there is no archive of that name")
    assert borg.meaning("Repository /srv/backup/wiki does not exist.").startswith(
        "there is no Borg repository there"
    )
    assert "refuses this host's SSH key" in borg.meaning("Permission denied (publickey).")


def test_the_forced_command_allows_only_appending_to_one_repository() -> None:
    key = sshkeys.new_key("allmende-backup-wiki@rack")
    public = sshkeys.public_of(key.private, "allmende-backup-wiki@rack")
    assert public == key.public and public.startswith("ssh-ed25519 ")
    line = repository.authorized_key(JOB, public)
    assert line == (
        'restrict,command="borg serve --append-only --restrict-to-path /srv/borg/wiki" ' + public
    )
    assert repository.repository_path("ssh://u@h/./relative/x") == "relative/x"


@pytest.mark.parametrize(
    ("schedule", "hours"),
    [("hourly", 1), ("daily", 24), ("weekly", 168), ("*-*-* 00,03,06,09,12,15,18,21:00:00", 3),
     ("*-*-* 02:30:00", 24), ("Mon..Fri *-*-* 02:30", 72), ("Sun 04:00", 168),
     ("Mon,Wed,Fri 03:00", 72), ("*-*-* *:00/15", 1)],
)  # fmt: skip
def test_the_period_of_a_schedule(schedule: str, hours: int) -> None:
    assert archives.period(schedule) == timedelta(hours=hours)


def test_fresh_late_and_missing_are_read_from_the_archives() -> None:
    now = datetime(2026, 12, 5, 12, tzinfo=UTC)
    made = [archives.Listed("wiki-a", now - timedelta(hours=20))]
    assert archives.freshness(JOB, made, now).state == "fresh"
    late = [archives.Listed("wiki-b", now - timedelta(hours=31))]
    status = archives.freshness(JOB, late, now)
    assert status.state == "late" and "31.0 h ago" in status.describe()
    assert archives.freshness(JOB, [], now).state == "missing"
    assert archives.parse_time("2026-12-05T03:00:00.000000").tzinfo == UTC
    assert not archives.usable("wiki-2026-12-05T03:00:00.checkpoint")


def test_a_drill_names_every_difference() -> None:
    manifest = {"files": {"a": [1, "x"], "b": [2, "y"]}, "links": {"l": "a"}}
    found = {"files": {"a": [1, "x"], "b": [2, "z"], "c": [0, "e"]}, "links": {}}
    assert drill.compare_files(manifest, found) == [
        "changed: b", "unexpected: c", "changed link: l",
    ]  # fmt: skip
    assert drill.compare_files(manifest, {"files": {}, "links": {"l": "a"}}) == [
        "missing: a", "missing: b",
    ]  # fmt: skip
    want = {"sha256": "1", "rows": {"public.t": 3}}
    assert drill.compare_rows("shop", want, {"sha256": "1", "rows": {"public.t": 3}}) == []
    assert drill.compare_rows("shop", want, {"sha256": "2", "rows": {}}) == [
        "the dump of shop differs from the one made",
        "shop.public.t: no rows restored, 3 recorded",
    ]


POSTGRES_DUMP = b"""\
SET statement_timeout = 0;
CREATE TABLE public.items (id integer, name text);
COPY public.items (id, name) FROM stdin;
1\tone
2\ttwo
\\.
COPY public.empty (id) FROM stdin;
\\.
"""


def test_rows_are_counted_in_a_dump_whatever_the_blocks(tmp_path: Path) -> None:
    counter = dumps.Counter("postgres")
    for start in range(0, len(POSTGRES_DUMP), 7):  # blocks that cut lines anywhere
        counter.feed(POSTGRES_DUMP[start : start + 7])
    result = counter.result()
    assert result["rows"] == {"public.empty": 0, "public.items": 2}
    assert result["bytes"] == len(POSTGRES_DUMP)
    mysql = dumps.Counter("mariadb")
    mysql.feed(b"CREATE TABLE `t` (\nINSERT INTO `t` VALUES (1);\nINSERT INTO `t` VALUES (2);\n")
    assert mysql.result()["rows"] == {"t": 2}
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (x)")
        db.executemany("INSERT INTO notes VALUES (?)", [(1,), (2,), (3,)])
    assert dumps.count("sqlite", str(path))["rows"] == {"notes": 3}


def test_a_dump_streams_into_a_pipe_and_a_failing_one_says_why(tmp_path: Path) -> None:
    fifo = tmp_path / "dump.sql"
    stats = tmp_path / "stats.json"
    fifo.write_bytes(b"")  # a plain file stands in for the pipe
    spec = {"kind": "postgres", "fifo": str(fifo), "stats": str(stats),
            "command": ["printf", "COPY a (x) FROM stdin;\\n1\\n\\\\.\\n"]}  # fmt: skip
    assert dumps.write(spec) == 0
    assert json.loads(stats.read_text())["rows"] == {"a": 1}
    assert fifo.read_bytes() == b"COPY a (x) FROM stdin;\n1\n\\.\n"
    spec["command"] = ["sh", "-c", "echo 'pg_dump: error: no such database' >&2; exit 1"]
    assert dumps.write(spec) == 1
    recorded = json.loads(stats.read_text())
    assert recorded["exit"] == 1 and "no such database" in recorded["error"]


def test_hashes_cover_files_links_and_specials_and_reuse_the_cache(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = root / "srv/wiki/data"
    (data / "skip").mkdir(parents=True)
    (data / "a.txt").write_text("a")
    (data / "skip/b.txt").write_text("b")
    (data / "link").symlink_to("a.txt")
    os.mkfifo(data / "pipe")
    cache = tmp_path / "cache.json"
    spec = {"root": str(root), "paths": ["/srv/wiki/data"],
            "exclude": ["/srv/wiki/data/skip"], "cache": str(cache)}  # fmt: skip
    found = hashes.walk(spec)
    assert list(found["files"]) == ["srv/wiki/data/a.txt"]  # type: ignore[call-overload]
    assert found["links"] == {"srv/wiki/data/link": "a.txt"}
    assert found["special"] == ["srv/wiki/data/pipe"]
    cached = json.loads(cache.read_text())
    cached["srv/wiki/data/a.txt"][-1] = "from the cache"
    cache.write_text(json.dumps(cached))
    again = hashes.walk(spec)
    assert again["files"] == {"srv/wiki/data/a.txt": [1, "from the cache"]}
    # A changed file is read again, even with its size and modification time put back.
    before = (data / "a.txt").stat()
    (data / "a.txt").write_text("b")
    os.utime(data / "a.txt", ns=(before.st_atime_ns, before.st_mtime_ns))
    changed = hashes.walk(spec)
    assert changed["files"] == {"srv/wiki/data/a.txt": [1, hashlib.sha256(b"b").hexdigest()]}


def test_the_file_list_goes_to_its_own_file_the_same_bytes_while_nothing_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    data = root / "srv/wiki/data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("a")
    (data / "sub/b.txt").write_text("bb")
    (data / "link").symlink_to("sub")
    out = tmp_path / "files.json"
    spec = {"root": str(root), "paths": ["/srv/wiki/data"], "exclude": [],
            "cache": str(tmp_path / "cache.json"), "out": str(out)}  # fmt: skip
    hashes.main(spec)
    assert json.loads(capsys.readouterr().out) == {"files": 2, "links": 1, "special": []}
    first = out.read_bytes()
    listed = json.loads(first)
    assert listed["files"]["srv/wiki/data/sub/b.txt"] == [2, hashlib.sha256(b"bb").hexdigest()]
    assert listed["links"] == {"srv/wiki/data/link": "sub"}  # not followed into
    hashes.main(spec)
    assert out.read_bytes() == first
    (data / "a.txt").write_text("A")
    hashes.main(spec)
    assert out.read_bytes() != first
