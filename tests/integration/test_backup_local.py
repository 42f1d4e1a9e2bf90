"""Backups with the real Borg into a local repository, on this machine under a temp root: the
files come back, the manifest catches what changed, freshness is read from the repository,
every run is recorded, and a wrong passphrase or a full disk fail clearly and lose nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.integration.backup_site import Site, make_site, need_borg

from allmende.actions import backup
from allmende.errors import UserError
from allmende.inventory.backups import passphrase_secret
from allmende.inventory.secrets import SecretStore

FILES = """\
description: Shared files
host: box
components:
  app:
    image: localhost/files:1
    volumes: {data: /data, more: /more}
backup: {consistency: stop}
"""


@pytest.fixture
def site(tmp_path: Path) -> Site:
    need_borg()
    made = make_site(tmp_path, str(tmp_path / "repo" / "{service}"), {"files": FILES})
    data = made.on_host("/srv/files/data")
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "sub" / "b.bin").write_bytes(os.urandom(100_000))
    (data / "link").symlink_to("a.txt")
    made.on_host("/srv/files/more").mkdir()
    (made.on_host("/srv/files/more") / "c.txt").write_text("gamma\n")
    return made


def passphrase(site: Site) -> bytes:
    return SecretStore(site.inventory, site.env).get(passphrase_secret("files"))


def runs(site: Site) -> list[tuple[str, str, int]]:
    with sqlite3.connect(site.env["ALLMENDE_STATE"]) as db:
        return db.execute("SELECT kind, service, ok FROM backup_runs ORDER BY id").fetchall()


def test_a_backup_restores_the_files_and_says_how_fresh_it_is(site: Site) -> None:
    [made] = site.init()
    assert made.created and not made.error
    [outcome] = site.run()
    assert outcome.ok, outcome.message
    archive = outcome.value.archive
    assert archive.startswith("files-")
    # The archive holds the volumes and the manifest, by the paths they have on the host.
    listed = (
        site.borg(
            "list",
            "--short",
            f"{site.directory}/repo/files::{archive}",
            passphrase=passphrase(site),
        )
        .decode()
        .split()
    )
    assert "srv/files/data/a.txt" in listed and "srv/files/more/c.txt" in listed
    assert "srv/files/dumps/allmende-manifest.json" in listed
    assert "srv/files/dumps/allmende-files.json" in listed
    manifest, listing = (
        json.loads(
            site.borg(
                "extract",
                "--stdout",
                f"{site.directory}/repo/files::{archive}",
                f"srv/files/dumps/allmende-{member}.json",
                passphrase=passphrase(site),
            )
        )
        for member in ("manifest", "files")
    )
    assert manifest["file_list"] == "srv/files/dumps/allmende-files.json"
    assert manifest["files"] == 3 and manifest["links"] == 1
    assert listing["files"]["srv/files/data/a.txt"][0] == 6
    assert listing["links"] == {"srv/files/data/link": "a.txt"}

    [fresh] = backup.status(site.context(), site.say)
    assert fresh.ok and fresh.message.startswith(f"fresh: last archive {archive}")
    [verified] = backup.verify(site.context(), site.say)
    assert verified.ok, verified.message
    assert verified.value.files == 3

    # Lose a file, change another: in place brings both back, and keeps today's aside.
    data = site.on_host("/srv/files/data")
    (data / "a.txt").write_text("changed\n")
    (data / "sub" / "b.bin").unlink()
    done = backup.restore_service(site.context("files"), "files", site.say, in_place=True)
    assert (data / "a.txt").read_text() == "alpha\n"
    assert (data / "sub" / "b.bin").stat().st_size == 100_000
    assert [Path(p).name.startswith("data.before-restore-") for p in done.aside if "data" in p]
    assert runs(site) == [
        ("run", "files", 1),
        ("status", "files", 1),
        ("verify", "files", 1),
        ("restore", "files", 1),
    ]


def test_restore_to_a_directory_touches_nothing_live(site: Site) -> None:
    site.init()
    site.run()
    (site.on_host("/srv/files/data") / "a.txt").write_text("newer\n")
    done = backup.restore_service(site.context("files"), "files", site.say, into="/restored")
    assert done.paths[0] == "/restored/srv/files/data"
    assert (site.on_host("/restored/srv/files/data/a.txt")).read_text() == "alpha\n"
    assert (site.on_host("/srv/files/data/a.txt")).read_text() == "newer\n"


def archive_altered(site: Site, alter: Callable[[Path], object]) -> None:
    """Back up, then make a newer archive of what the first holds after ``alter`` (given the
    directory it is extracted to) changed it, as if the repository's copy had been changed."""
    site.init()
    [first] = site.run()
    scratch = site.directory / "scratch"
    scratch.mkdir()
    repo = f"{site.directory}/repo/files"
    site.borg("extract", f"{repo}::{first.value.archive}", passphrase=passphrase(site), cwd=scratch)
    alter(scratch)
    site.borg(
        "create", f"{repo}::files-9999-12-31T00:00:00", "srv", passphrase=passphrase(site),
        cwd=scratch,
    )  # fmt: skip


def test_a_drill_finds_an_archive_that_does_not_match_its_manifest(site: Site) -> None:
    archive_altered(site, lambda scratch: (scratch / "srv/files/data/a.txt").write_text("x\n"))
    [verified] = backup.verify(site.context(), site.say)
    assert not verified.ok
    assert "changed: srv/files/data/a.txt" in verified.message


def test_a_drill_fails_an_archive_without_the_file_list_its_manifest_names(site: Site) -> None:
    archive_altered(
        site, lambda scratch: (scratch / "srv/files/dumps/allmende-files.json").unlink()
    )
    [verified] = backup.verify(site.context(), site.say)
    assert not verified.ok
    assert "the archive's file list is missing or cannot be read" in verified.message


def test_a_drill_reads_an_archive_whose_manifest_holds_the_file_list_itself(site: Site) -> None:
    def as_before(scratch: Path) -> None:  # one manifest, the file list in it (version 1)
        dumps = scratch / "srv/files/dumps"
        listed = json.loads((dumps / "allmende-files.json").read_text())
        (dumps / "allmende-files.json").unlink()
        manifest = json.loads((dumps / "allmende-manifest.json").read_text())
        del manifest["file_list"]
        manifest.update(version=1, files=listed["files"], links=listed["links"])
        (dumps / "allmende-manifest.json").write_text(json.dumps(manifest))
        (scratch / "srv/files/data/a.txt").write_text("x\n")

    archive_altered(site, as_before)
    [verified] = backup.verify(site.context(), site.say)
    assert not verified.ok
    assert verified.message.count("changed: ") == 1  # everything else matched its record
    assert "missing: " not in verified.message and "unexpected: " not in verified.message
    assert "changed: srv/files/data/a.txt" in verified.message


def test_a_wrong_passphrase_fails_clearly_and_is_recorded(site: Site) -> None:
    site.init()
    SecretStore(site.inventory, site.env).set(passphrase_secret("files"), b"not it")
    [outcome] = site.run()
    assert not outcome.ok
    assert "the repository passphrase is wrong" in outcome.message
    assert "not it" not in outcome.message
    assert runs(site) == [("run", "files", 0)]


def test_an_unknown_service_or_one_without_backup_is_refused(site: Site) -> None:
    with pytest.raises(UserError, match="unknown service `fils`"):
        site.context("fils")


def test_a_snapshot_backup_fails_clearly_where_no_snapshot_can_be_taken(site: Site) -> None:
    services = site.inventory / "services" / "files.yaml"
    services.write_text(services.read_text().replace("consistency: stop", "consistency: snapshot"))
    site.init()
    [outcome] = site.run()
    assert not outcome.ok
    assert "`consistency: snapshot` needs each volume to be a btrfs subvolume" in outcome.message
    assert "/srv/files/data is on " in outcome.message


@pytest.fixture
def btrfs(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """Mount a new 128 MiB btrfs on a loop device at the path given (needs root, as CI)."""
    mounted: list[Path] = []

    def mount_at(mount: Path) -> Path:
        image = tmp_path / "btrfs.img"
        with image.open("wb") as handle:
            handle.truncate(128 * 2**20)
        mount.mkdir(parents=True)
        subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
        done = subprocess.run(["mount", "-o", "loop", str(image), str(mount)], capture_output=True)
        if done.returncode != 0:
            pytest.fail(f"cannot mount a btrfs: {done.stderr.decode()}", pytrace=False)
        mounted.append(mount)
        return mount

    try:
        yield mount_at
    finally:
        for mount in mounted:
            subprocess.run(["umount", str(mount)], check=False)


def test_a_snapshot_backup_copies_the_volume_as_it_was_when_the_snapshot_was_taken(
    tmp_path: Path, btrfs: Callable[[Path], Path]
) -> None:
    need_borg()
    made = make_site(
        tmp_path / "site",
        str(tmp_path / "repo" / "{service}"),
        {"files": FILES.replace("consistency: stop", "consistency: snapshot")},
    )
    volumes = btrfs(made.on_host("/srv/files"))  # the service's directory is the file system
    for volume in ("data", "more"):
        subprocess.run(["btrfs", "subvolume", "create", str(volumes / volume)], check=True,
                       capture_output=True)  # fmt: skip
    (volumes / "data/a.txt").write_text("as it was\n")
    (volumes / "more/c.txt").write_text("gamma\n")
    made.init()

    def change_it(line: str) -> None:  # once the snapshots are taken, the service writes on
        made.lines.append(line)
        if line.startswith("files: archiving"):
            (volumes / "data/a.txt").write_text("changed while the copy ran\n")

    [outcome] = backup.run(made.context(), change_it)
    assert outcome.ok, outcome.message
    key = SecretStore(made.inventory, made.env).get(passphrase_secret("files"))
    copied = made.borg("extract", "--stdout", f"{tmp_path}/repo/files::{outcome.value.archive}",
                       "srv/files/data/a.txt", passphrase=key)  # fmt: skip
    assert copied == b"as it was\n"
    assert not list(volumes.glob("*.allmende-snapshot")), "the snapshots are deleted"
    [verified] = backup.verify(made.context(), made.say)
    assert verified.ok, verified.message


def test_the_command_line_shows_each_step_and_lists_sizes(
    site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from allmende.cli.main import main

    for name, value in site.env.items():
        monkeypatch.setenv(name, value)
    assert main(["backup", "init", "-C", str(site.inventory)]) == 0
    assert main(["backup", "run", "-C", str(site.inventory), "files"]) == 0
    out, err = capsys.readouterr()
    assert "files: archiving 2 path(s) and 0 dump(s) as files-" in err
    assert out.strip() == "backup run: all 1 ok"
    assert main(["backup", "list", "-C", str(site.inventory)]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("files: 1 archive(s)\n  files-") and " MiB," in out
    assert main(["backup", "status", "-C", str(site.inventory)]) == 0
    assert "fresh: last archive files-" in capsys.readouterr().out
    assert main(["docs", str(site.inventory), "--out", str(site.directory / "site")]) == 0
    page = (site.directory / "site/markdown/services/files.md").read_text()
    assert "**Last archive:** `files-" in page
    assert main(["backup", "restore", "-C", str(site.inventory), "files"]) == 2
    assert "--to DIR (on the service's host) or --in-place" in capsys.readouterr().err


NOTES = """\
description: Notes in SQLite
host: box
components:
  app:
    image: localhost/notes:1
    volumes: {data: /data}
provides: {database: sqlite, databases: [notes.db]}
"""


def test_a_sqlite_database_is_copied_through_its_backup_api_and_comes_back(
    tmp_path: Path,
) -> None:
    need_borg()
    site = make_site(tmp_path, str(tmp_path / "repo" / "{service}"), {"notes": NOTES})
    database = site.on_host("/srv/notes/data/notes.db")
    database.parent.mkdir(parents=True)
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        db.executemany("INSERT INTO notes (text) VALUES (?)", [(f"n{i}",) for i in range(300)])
    site.init()
    [outcome] = site.run()  # the default for a database provider: dump
    assert outcome.ok, outcome.message
    assert outcome.value.rows == {"notes.db": {"notes": 300}}
    [verified] = backup.verify(site.context(), site.say)
    assert verified.ok and verified.value.databases == {"notes.db": {"notes": 300}}
    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM notes WHERE id > 10")
    done = backup.restore_service(site.context("notes"), "notes", site.say, in_place=True)
    assert done.databases == ["notes.db"]
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM notes").fetchone() == (300,)
