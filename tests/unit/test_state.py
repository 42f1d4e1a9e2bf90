"""The state database: created, migrated, applies and zone serials recorded and listed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from allmende.errors import UserError
from allmende.state.store import (
    MIGRATIONS,
    VERSION,
    ZoneSerial,
    default_path,
    finish_apply,
    list_applies,
    open_store,
    record_zone_serial,
    start_apply,
    zone_serials,
)


def test_default_path_follows_the_environment() -> None:
    assert default_path({"ALLMENDE_STATE": "/x/s.sqlite"}) == Path("/x/s.sqlite")
    assert default_path({"XDG_STATE_HOME": "/st"}) == Path("/st/allmende/state.sqlite")
    assert default_path({"HOME": "/h"}) == Path("/h/.local/state/allmende/state.sqlite")


def test_applies_are_recorded_and_listed_newest_first(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.sqlite"
    db = open_store(path)
    first = start_apply(
        db, who="ada", inventory="/inv", host="rack", checksum="c1", changes=[{"kind": "create"}]
    )
    finish_apply(db, first, "ok")
    start_apply(db, who="bob", inventory="/inv", host="edge", checksum="c2", changes=[])
    db.close()
    db = open_store(path)
    applies = list_applies(db)
    assert [(a.host, a.who, a.result) for a in applies] == [
        ("edge", "bob", None),
        ("rack", "ada", "ok"),
    ]
    rack = list_applies(db, host="rack")
    assert rack[0].changes == [{"kind": "create"}] and rack[0].finished is not None
    assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {VERSION + 1}")
    db.close()
    with pytest.raises(UserError, match="newer than this allmende knows"):
        open_store(path)


def test_an_unopenable_path_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="cannot open the state database"):
        open_store(tmp_path / "file" / "state.sqlite")


def test_a_version_1_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    old = sqlite3.connect(path)
    old.executescript(f"{MIGRATIONS[0]} PRAGMA user_version = 1;")
    old.execute(
        "INSERT INTO applies (started, who, inventory, host, checksum, changes, result)"
        " VALUES ('2024-01-01T00:00:00+00:00', 'ada', '/inv', 'rack', 'c', '[]', 'ok')"
    )
    old.commit()
    old.close()
    db = open_store(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION >= 2
    assert [a.who for a in list_applies(db)] == ["ada"]
    assert zone_serials(db, "/inv") == {}
    record_zone_serial(db, "/inv", "example.org", ZoneSerial(3, "abc"))
    record_zone_serial(db, "/inv", "example.org", ZoneSerial(4, "def"))
    record_zone_serial(db, "/other", "example.org", ZoneSerial(9, "xyz"))
    assert zone_serials(db, "/inv") == {"example.org": ZoneSerial(4, "def")}
    db.close()


def test_plain_hashes_of_secret_files_are_scrubbed_and_the_file_made_private(
    tmp_path: Path,
) -> None:
    """Applies recorded before the hashes of secret files were keyed keep no plain sha256 of
    them; a database others could read is made readable by its owner only."""
    path = tmp_path / "state.sqlite"
    old = sqlite3.connect(path)
    old.executescript(f"{MIGRATIONS[0]} {MIGRATIONS[1]} PRAGMA user_version = 2;")
    changes = (
        '[{"kind": "update", "path": "/srv/wiki/secrets/db-password", "before": "f52fbd32",'
        ' "after": "ab12"}, {"kind": "create", "path": "/srv/wiki/compose.yaml",'
        ' "before": null, "after": "cd34"}, {"verb": "up", "subject": "wiki"}]'
    )
    old.execute(
        "INSERT INTO applies (started, who, inventory, host, checksum, changes, result)"
        " VALUES ('2024-01-01T00:00:00+00:00', 'ada', '/inv', 'rack', 'c', ?, 'ok')",
        (changes,),
    )
    old.commit()
    old.close()
    path.chmod(0o644)
    db = open_store(path)
    [applied] = list_applies(db)
    db.close()
    assert applied.changes == [
        {
            "kind": "update",
            "path": "/srv/wiki/secrets/db-password",
            "before": "secret",
            "after": "secret",
        },
        {"kind": "create", "path": "/srv/wiki/compose.yaml", "before": None, "after": "cd34"},
        {"verb": "up", "subject": "wiki"},
    ]
    assert path.stat().st_mode & 0o777 == 0o600
    fresh = tmp_path / "new" / "state.sqlite"
    open_store(fresh).close()
    assert fresh.stat().st_mode & 0o777 == 0o600 and fresh.parent.stat().st_mode & 0o777 == 0o700
