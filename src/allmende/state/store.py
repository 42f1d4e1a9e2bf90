"""The state database: one SQLite file (mode 0600) recording every apply, the serial of every
rendered DNS zone, every backup run, restore, drill and freshness check (``backup_runs``), and
the watcher's results, checks and alerts (``state.watchstore``), and every attempt to obtain a
certificate (``cert_attempts``).
The changes of an apply carry the hashes a plan shows: keyed, for a file that carries secrets
(``plan.digest``), never its plain sha256.

Where: ``ALLMENDE_STATE`` if set, else ``$XDG_STATE_HOME/allmende/state.sqlite``, else
``~/.local/state/allmende/state.sqlite``. The schema version is SQLite's ``user_version``;
``MIGRATIONS[n]`` brings a database from version ``n`` to ``n + 1``, each in one transaction,
so an older file is upgraded when opened and a newer one is refused.

An inventory is named by its resolved root directory, as text. Zone serials are kept per
inventory and zone, with the hash of the zone they were last given to, and stay when a zone
leaves the inventory, so that it continues from there should it come back.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from allmende.errors import UserError

#: Each step from one schema version to the next; the index is the version it starts from.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE applies (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started TEXT NOT NULL,
        finished TEXT,
        who TEXT NOT NULL,
        inventory TEXT NOT NULL,
        host TEXT NOT NULL,
        checksum TEXT NOT NULL,
        changes TEXT NOT NULL,
        result TEXT
    );
    CREATE INDEX applies_host ON applies (host, started);
    """,
    """
    CREATE TABLE zone_serials (
        inventory TEXT NOT NULL,
        zone TEXT NOT NULL,
        serial INTEGER NOT NULL,
        content TEXT NOT NULL,
        updated TEXT NOT NULL,
        PRIMARY KEY (inventory, zone)
    );
    """,
    # Before the hashes of secret files were keyed with the host's key (plan.digest), applies
    # recorded their plain sha256: a dictionary attack away from the value. Scrubbed.
    """
    UPDATE applies SET changes = (
        SELECT json_group_array(
            CASE WHEN json_extract(value, '$.path') LIKE '%/secrets/%'
            THEN json_set(
                value,
                '$.before', CASE WHEN json_extract(value, '$.before') IS NULL
                    THEN NULL ELSE 'secret' END,
                '$.after', CASE WHEN json_extract(value, '$.after') IS NULL
                    THEN NULL ELSE 'secret' END)
            ELSE json(value) END)
        FROM json_each(applies.changes)
    );
    """,
    """
    CREATE TABLE backup_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        service TEXT NOT NULL,
        host TEXT NOT NULL,
        started TEXT NOT NULL,
        finished TEXT,
        ok INTEGER,
        archive TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '',
        facts TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX backup_runs_service ON backup_runs (service, kind, id);
    """,
    # The watcher (state.watchstore): recent results in full, older ones by the hour, each
    # check's confirmed state and what was last alerted about it, and alerts not yet delivered.
    """
    CREATE TABLE watch_results (
        probe TEXT NOT NULL,
        at REAL NOT NULL,
        state TEXT NOT NULL,
        latency REAL,
        value REAL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX watch_results_at ON watch_results (at);
    CREATE INDEX watch_results_probe ON watch_results (probe, at);
    CREATE TABLE watch_hourly (
        probe TEXT NOT NULL,
        hour INTEGER NOT NULL,
        count INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        latency_sum REAL NOT NULL,
        latency_max REAL,
        PRIMARY KEY (probe, hour)
    );
    CREATE TABLE watch_checks (
        probe TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        since REAL NOT NULL,
        alerted TEXT NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        opened REAL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE watch_outbox (
        key TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        event TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        delivered REAL
    );
    """,
    # Certificates (operations.certs): every attempt to obtain one, how it ended, when to retry.
    """
    CREATE TABLE cert_attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        certificate TEXT NOT NULL,
        trigger TEXT NOT NULL,
        started TEXT NOT NULL,
        finished TEXT,
        ok INTEGER,
        kind TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '',
        serial TEXT NOT NULL DEFAULT '',
        not_after TEXT NOT NULL DEFAULT '',
        retry_after TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX cert_attempts_certificate ON cert_attempts (certificate, id);
    """,
)
VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Apply:
    """One recorded apply to one host. ``result`` is None while it runs."""

    id: int
    started: str
    finished: str | None
    who: str
    inventory: str
    host: str
    checksum: str
    changes: list[dict[str, Any]]
    result: str | None


@dataclass(frozen=True)
class ZoneSerial:
    """The serial a zone of an inventory was last rendered with, and the hash of its content
    without the serial (``render.dns.content_hash``)."""

    serial: int
    content: str


def default_path(env: Mapping[str, str]) -> Path:
    """Return where the state database lives (see the module docstring)."""
    if env.get("ALLMENDE_STATE"):
        return Path(env["ALLMENDE_STATE"])
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local/state")
    return Path(base) / "allmende" / "state.sqlite"


def _insert(db: sqlite3.Connection, sql: str, values: Sequence[Any]) -> int:
    """Insert one row and return its id."""
    cursor = db.execute(sql, values)
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def now() -> str:
    """Return the current UTC time as ISO 8601 text, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _private(path: Path) -> None:
    """Make the database file (and a new directory for it) readable by its owner only: it
    names hosts, paths and who applied what. SQLite gives its journal the file's mode."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(handle).st_mode & 0o077:
            os.fchmod(handle, 0o600)
    finally:
        os.close(handle)


def open_store(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the state database at ``path``, migrated to ``VERSION``.
    Raise UserError if it cannot be opened or was written by a newer allmende."""
    try:
        _private(path)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 5000")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > VERSION:
            db.close()
            raise UserError(
                f"the state database {path} is of schema version {version}, newer than this "
                f"allmende knows ({VERSION}): upgrade allmende"
            )
        for step in range(version, VERSION):
            db.executescript(
                f"BEGIN IMMEDIATE; {MIGRATIONS[step]} PRAGMA user_version = {step + 1}; COMMIT;"
            )
    except (sqlite3.Error, OSError) as exc:
        raise UserError(f"cannot open the state database {path}: {exc}") from None
    return db


def start_apply(
    db: sqlite3.Connection,
    *,
    who: str,
    inventory: str,
    host: str,
    checksum: str,
    changes: Sequence[Mapping[str, Any]],
) -> int:
    """Record that an apply to ``host`` started, with its plan checksum and changes; return its
    id for ``finish_apply``."""
    return _insert(
        db,
        "INSERT INTO applies (started, who, inventory, host, checksum, changes)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (now(), who, inventory, host, checksum, json.dumps(list(changes), sort_keys=True)),
    )


def finish_apply(db: sqlite3.Connection, apply_id: int, result: str) -> None:
    """Record how the apply ``apply_id`` ended (``ok``, ``failed: ...``, ``rolled back: ...``)."""
    db.execute(
        "UPDATE applies SET finished = ?, result = ? WHERE id = ?", (now(), result, apply_id)
    )


def list_applies(db: sqlite3.Connection, host: str | None = None, limit: int = 50) -> list[Apply]:
    """Return the latest applies (of ``host`` if given), newest first."""
    query = "SELECT * FROM applies"
    parameters: tuple[Any, ...] = ()
    if host is not None:
        query += " WHERE host = ?"
        parameters = (host,)
    query += " ORDER BY id DESC LIMIT ?"
    rows = db.execute(query, (*parameters, limit)).fetchall()
    return [Apply(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8]) for r in rows]


def zone_serials(db: sqlite3.Connection, inventory: str) -> dict[str, ZoneSerial]:
    """Return the last serial of every zone recorded for ``inventory``, by zone name."""
    rows = db.execute(
        "SELECT zone, serial, content FROM zone_serials WHERE inventory = ?", (inventory,)
    ).fetchall()
    return {zone: ZoneSerial(number, content) for zone, number, content in rows}


def record_zone_serial(
    db: sqlite3.Connection, inventory: str, zone: str, serial: ZoneSerial
) -> None:
    """Record ``serial`` as the last serial of ``zone`` in ``inventory``, replacing the one
    before."""
    db.execute(
        "INSERT INTO zone_serials (inventory, zone, serial, content, updated)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (inventory, zone) DO UPDATE SET"
        " serial = excluded.serial, content = excluded.content, updated = excluded.updated",
        (inventory, zone, serial.serial, serial.content, now()),
    )


@dataclass(frozen=True)
class BackupRun:
    """One recorded backup operation on a service: ``kind`` is ``run``, ``restore``,
    ``verify`` or ``status``; ``ok`` is None while it runs; ``facts`` what it found (sizes,
    downtime, the archive's age ...)."""

    id: int
    kind: str
    service: str
    host: str
    started: str
    finished: str | None
    ok: bool | None
    archive: str
    detail: str
    facts: dict[str, Any]


def start_backup_run(db: sqlite3.Connection, kind: str, service: str, host: str) -> int:
    """Record that a backup operation started; return its id for ``finish_backup_run``."""
    return _insert(
        db,
        "INSERT INTO backup_runs (kind, service, host, started) VALUES (?, ?, ?, ?)",
        (kind, service, host, now()),
    )


def finish_backup_run(
    db: sqlite3.Connection,
    run_id: int,
    ok: bool,
    *,
    archive: str = "",
    detail: str = "",
    facts: Mapping[str, Any] | None = None,
) -> None:
    """Record how the backup operation ``run_id`` ended."""
    db.execute(
        "UPDATE backup_runs SET finished = ?, ok = ?, archive = ?, detail = ?, facts = ?"
        " WHERE id = ?",
        (now(), int(ok), archive, detail, json.dumps(dict(facts or {}), sort_keys=True), run_id),
    )


def backup_runs(
    db: sqlite3.Connection,
    service: str | None = None,
    kind: str | None = None,
    limit: int = 50,
) -> list[BackupRun]:
    """Return the latest recorded backup operations (of ``service``, of ``kind``), newest
    first."""
    query = "SELECT * FROM backup_runs WHERE 1 = 1"
    parameters: list[Any] = []
    if service is not None:
        query += " AND service = ?"
        parameters.append(service)
    if kind is not None:
        query += " AND kind = ?"
        parameters.append(kind)
    rows = db.execute(query + " ORDER BY id DESC LIMIT ?", (*parameters, limit)).fetchall()
    return [
        BackupRun(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            None if r[6] is None else bool(r[6]),
            r[7],
            r[8],
            json.loads(r[9]),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class CertAttempt:
    """One attempt to obtain a certificate: ``ok`` is None while it runs; ``kind`` says why it
    failed (``CertificateFailed.kind``); ``retry_after`` is the CA's, when it gave one."""

    id: int
    certificate: str
    trigger: str
    started: str
    finished: str | None
    ok: bool | None
    kind: str
    detail: str
    serial: str
    not_after: str
    retry_after: str


def start_cert_attempt(db: sqlite3.Connection, certificate: str, trigger: str) -> int:
    """Record that an attempt to obtain ``certificate`` started (``trigger``: what started
    it: ``timer``, ``up``, ``renew``, ``watch``); return its id for ``finish_cert_attempt``."""
    return _insert(
        db,
        "INSERT INTO cert_attempts (certificate, trigger, started) VALUES (?, ?, ?)",
        (certificate, trigger, now()),
    )


def finish_cert_attempt(
    db: sqlite3.Connection,
    attempt_id: int,
    ok: bool,
    *,
    kind: str = "",
    detail: str = "",
    serial: str = "",
    not_after: str = "",
    retry_after: str = "",
) -> None:
    """Record how the attempt ``attempt_id`` ended."""
    db.execute(
        "UPDATE cert_attempts SET finished = ?, ok = ?, kind = ?, detail = ?, serial = ?,"
        " not_after = ?, retry_after = ? WHERE id = ?",
        (now(), int(ok), kind, detail, serial, not_after, retry_after, attempt_id),
    )


def cert_attempts(
    db: sqlite3.Connection, certificate: str | None = None, limit: int = 50
) -> list[CertAttempt]:
    """Return the latest finished attempts (for ``certificate`` if given), newest first."""
    query = "SELECT * FROM cert_attempts WHERE finished IS NOT NULL"
    parameters: list[Any] = []
    if certificate is not None:
        query += " AND certificate = ?"
        parameters.append(certificate)
    rows = db.execute(query + " ORDER BY id DESC LIMIT ?", (*parameters, limit)).fetchall()
    return [
        CertAttempt(r[0], r[1], r[2], r[3], r[4], None if r[5] is None else bool(r[5]), *r[6:])
        for r in rows
    ]
