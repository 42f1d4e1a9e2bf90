"""The watcher's part of the state database (``state.store`` makes its tables).

- ``watch_results``: every probe result of the last ``keep_full`` seconds, as it was;
- ``watch_hourly``: older results folded into one row per probe and hour (how many, how many
  not up, the latency's sum and maximum), kept ``keep_hourly`` seconds; ``compact`` moves and
  drops rows, and SQLite reuses the pages freed, so the file stops growing;
- ``watch_checks``: each check's confirmed state, since when, and what was last alerted about
  it (``up``: nothing open), so that a watcher started again does not alert again;
- ``watch_outbox``: every alert for every channel until it is delivered (and a while after).

Everything one watcher learns is written in one transaction (``write``); a database locked by
someone else makes it raise ``sqlite3.OperationalError`` and the caller tries again later with
the same and newer rows, so nothing is lost.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """One probe's result: ``state`` is ``up``, ``degraded`` or ``down``; ``latency`` in
    seconds; ``value`` what it measured (days a certificate has left, a backup's age in hours,
    an HTTP status)."""

    probe: str
    at: float
    state: str
    latency: float | None = None
    value: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class CheckRow:
    """A check as recorded: its confirmed ``state`` since ``since``, the state last alerted
    (``alerted``, with the ``label`` of that alert; ``up`` when no incident is open) and when
    the open incident started (``opened``)."""

    probe: str
    state: str
    since: float
    alerted: str
    label: str = ""
    opened: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class Outgoing:
    """One alert to one channel: both as JSON, the tries so far, and when it was delivered."""

    key: str
    channel: str
    event: str
    created: float
    attempts: int = 0
    error: str = ""
    delivered: float | None = None


def write(
    db: sqlite3.Connection,
    results: Sequence[Result],
    checks: Iterable[CheckRow] = (),
    outgoing: Iterable[Outgoing] = (),
) -> None:
    """Record ``results``, the latest state of ``checks`` and ``outgoing`` alerts, in one
    transaction. Raise sqlite3.Error (nothing written) if the database is locked or broken."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany(
            "INSERT INTO watch_results (probe, at, state, latency, value, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(r.probe, r.at, r.state, r.latency, r.value, r.detail) for r in results],
        )
        db.executemany(
            "INSERT INTO watch_checks (probe, state, since, alerted, label, opened, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (probe) DO UPDATE SET"
            " state = excluded.state, since = excluded.since, alerted = excluded.alerted,"
            " label = excluded.label, opened = excluded.opened, detail = excluded.detail",
            [(c.probe, c.state, c.since, c.alerted, c.label, c.opened, c.detail) for c in checks],
        )
        db.executemany(
            "INSERT INTO watch_outbox (key, channel, event, attempts, error, created, delivered)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
            " attempts = excluded.attempts, error = excluded.error,"
            " delivered = excluded.delivered",
            [
                (o.key, o.channel, o.event, o.attempts, o.error, o.created, o.delivered)
                for o in outgoing
            ],
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def checks(db: sqlite3.Connection) -> dict[str, CheckRow]:
    """Return every recorded check by probe id."""
    rows = db.execute(
        "SELECT probe, state, since, alerted, label, opened, detail FROM watch_checks"
    ).fetchall()
    return {r[0]: CheckRow(*r) for r in rows}


def undelivered(db: sqlite3.Connection) -> list[Outgoing]:
    """Return the alerts not delivered yet, oldest first."""
    rows = db.execute(
        "SELECT key, channel, event, created, attempts, error, delivered FROM watch_outbox"
        " WHERE delivered IS NULL ORDER BY created, key"
    ).fetchall()
    return [Outgoing(*r) for r in rows]


def results(db: sqlite3.Connection, probe: str | None = None, limit: int = 1000) -> list[Result]:
    """Return the latest full results (of ``probe``), newest first."""
    query = "SELECT probe, at, state, latency, value, detail FROM watch_results"
    parameters: tuple[object, ...] = ()
    if probe is not None:
        query += " WHERE probe = ?"
        parameters = (probe,)
    rows = db.execute(query + " ORDER BY at DESC LIMIT ?", (*parameters, limit)).fetchall()
    return [Result(*r) for r in rows]


def compact(db: sqlite3.Connection, now: float, keep_full: float, keep_hourly: float) -> None:
    """Fold the results older than ``keep_full`` seconds into their hours, drop hours older
    than ``keep_hourly`` and delivered alerts older than ``keep_full``, in one transaction.
    Raise sqlite3.Error if the database is locked (nothing changed)."""
    cut = now - keep_full
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(
            "INSERT INTO watch_hourly (probe, hour, count, failures, latency_sum, latency_max)"
            " SELECT probe, CAST(at / 3600 AS INTEGER) AS h, count(*), sum(state != 'up'),"
            " total(latency), max(latency) FROM watch_results WHERE at < ? GROUP BY probe, h"
            " ON CONFLICT (probe, hour) DO UPDATE SET count = count + excluded.count,"
            " failures = failures + excluded.failures,"
            " latency_sum = latency_sum + excluded.latency_sum,"
            " latency_max = max(coalesce(latency_max, 0), coalesce(excluded.latency_max, 0))",
            (cut,),
        )
        db.execute("DELETE FROM watch_results WHERE at < ?", (cut,))
        db.execute("DELETE FROM watch_hourly WHERE hour < ?", (int((now - keep_hourly) // 3600),))
        db.execute("DELETE FROM watch_outbox WHERE delivered IS NOT NULL AND delivered < ?", (cut,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def forget(db: sqlite3.Connection, keep: Iterable[str]) -> None:
    """Drop the checks of probes not in ``keep`` (they left the inventory): a probe that comes
    back starts afresh."""
    known = set(keep)
    gone = [p for (p,) in db.execute("SELECT probe FROM watch_checks") if p not in known]
    db.executemany("DELETE FROM watch_checks WHERE probe = ?", [(p,) for p in gone])
