"""The backup as a host's timer runs it (``allmende backup job SERVICE``), and how fresh the
backups of the host are, as the watch host's key asks it (``allmende backup freshness``).

On the service's host, without the inventory: the job file apply wrote
(``/etc/allmende/backup/<service>.json``), the passphrase file beside it, Borg. The run is
recorded in the host's own state database (``ALLMENDE_STATE``, which the unit sets to
``/var/lib/allmende/state.sqlite``) and a failure is alerted to the job's channels once per
incident (not again while it keeps failing), as is the first success after it.

This module, and everything it imports, uses the standard library only: it is what allmende's
copy on a host (``/usr/local/lib/allmende/allmende.pyz``) runs.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping
from contextlib import closing
from pathlib import Path

from allmende.connectors.base import under
from allmende.connectors.local import LocalConnector
from allmende.errors import UserError
from allmende.inventory.backupjob import Job, from_json
from allmende.inventory.hostpaths import BACKUP_DIR, HOST_STATE, backup_job, backup_passphrase
from allmende.operations import archives
from allmende.operations import backup as operation
from allmende.operations.notify import Event, Notifier
from allmende.state import store


def read_job(root: str, service: str) -> tuple[Job, bytes]:
    """Return the job of ``service`` and its passphrase, as apply put them on this host (under
    ``root``). Raise UserError naming what is missing."""
    path = Path(under(root, backup_job(service)))
    try:
        job = from_json(path.read_bytes())
    except FileNotFoundError:
        raise UserError(
            f"no backup job for `{service}` on this host ({path}): is the service backed up, "
            "and was the inventory applied here?"
        ) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the backup job {path}: {exc}") from None
    secret = Path(under(root, backup_passphrase(service)))
    try:
        passphrase = secret.read_bytes().rstrip(b"\n")
    except FileNotFoundError:
        raise UserError(
            f"{service}: no repository passphrase on this host ({secret}): run `allmende "
            f"backup init {service}`, then `allmende apply`"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot read {secret}: {exc.strerror}") from None
    return job, passphrase


async def fresh(root: str, service: str, lock: bool = True) -> dict[str, object]:
    """Return how fresh the backup of ``service`` on this host (under ``root``) is, as
    ``freshness`` says it for each (without the repository's lock unless ``lock``)."""
    try:
        found, passphrase = read_job(root, service)
        host = LocalConnector(found.host, root)
        status = await archives.status(host, found, passphrase, lock=lock)
    except UserError as exc:
        return {"state": "unreadable", "detail": str(exc), "age": None, "last": None}
    return {
        "state": status.state,
        "detail": status.describe(),
        "age": status.age.total_seconds() / 3600 if status.age is not None else None,
        "last": status.last.time.isoformat() if status.last is not None else None,
    }


def freshness(env: Mapping[str, str]) -> dict[str, dict[str, object]]:
    """Return how fresh the backup of every service whose job is on this host is, read from
    its repository (what the watch host's key may ask, ``allmende backup freshness``): per
    service its state (``fresh``, ``late``, ``missing``, or ``unreadable`` with the error),
    the words for it, the last archive's age in hours and its time."""
    root = env.get("ALLMENDE_HOST_ROOT") or "/"
    jobs = Path(under(root, BACKUP_DIR))
    services = sorted(p.stem for p in jobs.glob("*.json")) if jobs.is_dir() else []

    async def every() -> list[dict[str, object]]:
        return list(await asyncio.gather(*(fresh(root, s) for s in services)))

    return dict(zip(services, asyncio.run(every()), strict=True))


def job(service: str, env: Mapping[str, str], say: Callable[[str], None]) -> operation.Result:
    """Back up ``service`` on this machine as its job file says; record it, alert on failure
    (and on the first success after one). Raise UserError if it fails (after recording and
    alerting)."""
    root = env.get("ALLMENDE_HOST_ROOT") or "/"
    state = Path(env.get("ALLMENDE_STATE") or under(root, HOST_STATE))
    found, passphrase = read_job(root, service)
    host = LocalConnector(found.host, root)
    with closing(store.open_store(state)) as db:
        before = store.backup_runs(db, service, "run", limit=1)
        run_id = store.start_backup_run(db, "run", service, found.host)
        try:
            result = asyncio.run(operation.run(host, found, passphrase, say))
        except UserError as exc:
            _finish(db, run_id, False, "", str(exc), {})
            if not before or before[0].ok is not False:  # one alert per incident
                _alert(found, "problem", str(exc), env)
            raise
        _finish(db, run_id, True, result.archive, "", result.facts())
    if before and before[0].ok is False:
        _alert(found, "recovery", f"{result.archive} was made", env, before[0].started)
    return result


def _finish(
    db: sqlite3.Connection, run_id: int, ok: bool, archive: str, detail: str, facts: object
) -> None:
    try:
        store.finish_backup_run(db, run_id, ok, archive=archive, detail=detail, facts=facts)  # type: ignore[arg-type]
    except sqlite3.Error as exc:
        raise UserError(f"cannot record the backup run: {exc}") from None


def _alert(job: Job, state: str, detail: str, env: Mapping[str, str], since: str = "") -> None:
    notifier = Notifier(job.notify)
    event = Event(
        job.service,
        "backup failed",
        since or store.now(),
        detail,
        "recovery" if state == "recovery" else "problem",
        job.host,
        job.collective,
    )
    notifier.send(event)
    notifier.close(timeout=float(env.get("ALLMENDE_NOTIFY_TIMEOUT") or 60))
