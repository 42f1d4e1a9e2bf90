"""The `backup` verbs, from the inventory: init, run, list, status, verify, restore.

Each loads the inventory, derives each service's job (``inventory.backups.job``), reaches the
service's host (backups run where the data is), opens the repository with the passphrase from
the secret store (``backup/<service>/passphrase``, given to Borg on its standard input), records
what it did in the state database (``ALLMENDE_STATE``) and alerts the collective's ``notify``
channels when a run or drill fails, a backup is late or missing, and once when it works again.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from allmende.actions.plan import Seams
from allmende.apply.verify import verify as run_monitors
from allmende.connectors.base import Connector
from allmende.errors import UserError
from allmende.inventory import backups
from allmende.inventory.backupjob import Job
from allmende.inventory.backups import passphrase_secret
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.inventory.secrets import SecretStore
from allmende.inventory.typed import typed
from allmende.inventory.validate import did_you_mean
from allmende.operations import archives, drill, restore
from allmende.operations import backup as operation
from allmende.operations.notify import Event, Notifier, now
from allmende.state import store

T = TypeVar("T")
Say = Callable[[str], None]


@dataclass(frozen=True)
class Context:
    """What every backup verb works with: the inventory, the jobs chosen, the secrets."""

    root: Path
    env: Mapping[str, str]
    inventory: Inventory
    jobs: dict[str, Job]
    seams: Seams = field(default_factory=Seams)

    def store(self) -> SecretStore:
        return SecretStore(self.root, self.env)

    def passphrase(self, service: str) -> bytes:
        """Return the service's repository passphrase. Raise UserError (SecretError)."""
        name = passphrase_secret(service)
        if not self.store().exists(name):
            raise UserError(
                f"{service}: no repository passphrase in the secret store ({name}): run "
                f"`{typed(self.root, 'backup', 'init', service)}`"
            )
        return self.store().get(name)

    def connector(self, service: str) -> Connector:
        return self.seams.connect(self.inventory, self.jobs[service].host, self.env)


def prepare(
    root: Path, env: Mapping[str, str], services: Sequence[str] = (), seams: Seams | None = None
) -> Context:
    """Load the inventory and return the jobs of ``services`` (every backed-up service if
    none). Raise UserError for an unknown service or one that is not backed up."""
    inventory = load(root, env)
    chosen = backups.backed_up(inventory)
    for name in services:
        if name not in inventory.services:
            raise UserError(
                f"unknown service `{name}` ({did_you_mean(name, inventory.services, 'service')})"
            )
        if name not in chosen:
            raise UserError(
                f"`{name}` is not backed up (no data, `consistency: none`, or no repository)"
            )
    names = list(services) or chosen
    jobs = {n: j for n in names if (j := backups.job(inventory, n)) is not None}
    return Context(root, env, inventory, jobs, seams or Seams())


async def on_host(context: Context, service: str, work: Callable[[Connector], Awaitable[T]]) -> T:
    """Open the service's host and run ``work`` on it."""
    async with context.connector(service) as host:
        return await work(host)


def _record(
    context: Context, kind: str, service: str, ok: bool, archive: str, detail: str, facts: Any
) -> bool | None:
    """Record a finished operation; return whether the one of the same kind before it was ok
    (None when there was none)."""
    job = context.jobs[service]
    with closing(store.open_store(store.default_path(context.env))) as db:
        try:
            before = store.backup_runs(db, service, kind, limit=1)
            run_id = store.start_backup_run(db, kind, service, job.host)
            store.finish_backup_run(
                db, run_id, ok, archive=archive, detail=detail, facts=facts or {}
            )
        except sqlite3.Error as exc:
            raise UserError(f"cannot record the {kind} of {service}: {exc}") from None
    return before[0].ok if before else None


def alert(
    notifier: Notifier,
    job: Job,
    what: str,
    ok: bool,
    previous: bool | None,
    detail: str = "",
    since: str = "",
) -> None:
    """Send one alert per incident: when an operation fails that did not fail last time, and
    the recovery when it works again after failing (the state database is the memory)."""
    if ok and previous is False:
        notifier.send(
            Event(job.service, what, since or now(), detail, "recovery", job.host, job.collective)
        )
    elif not ok and previous is not False:
        notifier.send(
            Event(job.service, what, since or now(), detail, "problem", job.host, job.collective)
        )


def notifier_of(context: Context) -> Notifier:
    """Return the notifier of the collective's ``notify`` channels."""
    return Notifier(backups.channels_of(context.inventory))


@dataclass
class Outcome:
    """How one verb went for one service: ``ok``, what it says, and what it found."""

    service: str
    ok: bool
    message: str
    value: Any = None


def _each(
    context: Context,
    kind: str,
    what: str,
    work: Callable[[Connector, Job, bytes], Awaitable[tuple[bool, str, str, Any]]],
    say: Say,
) -> list[Outcome]:
    """Run ``work`` for every job, record it, alert; return each service's outcome. ``work``
    returns (ok, archive, message, value)."""
    notifier = notifier_of(context)
    outcomes: list[Outcome] = []
    for service, job in context.jobs.items():
        try:
            passphrase = context.passphrase(service)

            async def one(
                host: Connector, j: Job = job, p: bytes = passphrase
            ) -> tuple[bool, str, str, Any]:
                return await work(host, j, p)

            ok, archive, message, value = asyncio.run(on_host(context, service, one))
        except UserError as exc:
            ok, archive, message, value = False, "", str(exc), None
        facts = value.facts() if hasattr(value, "facts") else {}
        previous = _record(context, kind, service, ok, archive, message, facts)
        alert(notifier, job, what, ok, previous, message)
        outcomes.append(Outcome(service, ok, message, value))
        say(f"{service}: {'ok' if ok else 'FAILED'}: {message}")
    undelivered = notifier.close(timeout=float(context.env.get("ALLMENDE_NOTIFY_TIMEOUT") or 60))
    for delivery in undelivered:
        say(f"alert to {delivery.channel.target} not delivered: {delivery.error or 'timed out'}")
    return outcomes


def _prefixed(say: Say, service: str) -> Say:
    """Return ``say`` with each line prefixed by the service's name."""
    return lambda line: say(f"{service}: {line}")


def run(context: Context, say: Say) -> list[Outcome]:
    """Back up every chosen service now (``operations.backup.run``)."""

    async def work(host: Connector, job: Job, passphrase: bytes) -> tuple[bool, str, str, Any]:
        result = await operation.run(host, job, passphrase, _prefixed(say, job.service))
        size = result.stats.get("deduplicated", 0) / 2**20
        down = f", down {result.downtime:.1f} s" if result.downtime is not None else ""
        return True, result.archive, f"{result.archive} ({size:.1f} MiB new{down})", result

    return _each(context, "run", "backup failed", work, say)


def status(context: Context, say: Say) -> list[Outcome]:
    """Say how fresh each service's last archive is, as its repository has it; a late or
    missing backup is alerted (once, until it is fresh again)."""

    async def work(host: Connector, job: Job, passphrase: bytes) -> tuple[bool, str, str, Any]:
        found = await archives.status(host, job, passphrase)
        name = found.last.name if found.last else ""
        return found.state == "fresh", name, found.describe(), found

    return _each(context, "status", "backup late or missing", work, say)


def verify(context: Context, say: Say, verify_data: bool = False) -> list[Outcome]:
    """Check each repository and drill its latest archive against its manifest."""

    async def work(host: Connector, job: Job, passphrase: bytes) -> tuple[bool, str, str, Any]:
        found = await drill.verify(
            host,
            job,
            passphrase,
            _prefixed(say, job.service),
            verify_data=verify_data,
        )
        if found.ok:
            rows = sum(sum(t.values()) for t in found.databases.values())
            message = f"{found.archive} restores: {found.files} files, {rows} rows match"
        else:
            message = "; ".join(found.problems)
        return found.ok, found.archive, message, found

    return _each(context, "verify", "restore drill failed", work, say)


def listing(context: Context) -> dict[str, list[archives.Listed]]:
    """Return every chosen service's archives with their age and size, oldest first."""
    found: dict[str, list[archives.Listed]] = {}
    for service, job in context.jobs.items():
        passphrase = context.passphrase(service)
        found[service] = asyncio.run(
            on_host(
                context,
                service,
                functools.partial(archives.archives, job=job, passphrase=passphrase, sizes=True),
            )
        )
    return found


def restore_service(
    context: Context,
    service: str,
    say: Say,
    *,
    archive: str | None = None,
    into: str | None = None,
    in_place: bool = False,
) -> restore.Restored:
    """Restore one service: into the host directory ``into``, or ``in_place`` (then the
    monitors are run). Record it. Raise UserError."""
    if (into is None) == (not in_place):
        raise UserError("say where to restore: --to DIR (on the service's host) or --in-place")
    job = context.jobs[service]
    passphrase = context.passphrase(service)

    async def work(host: Connector) -> restore.Restored:
        if into is not None:
            return await restore.to_directory(host, job, passphrase, archive, into, say)
        return await restore.in_place(host, job, passphrase, archive, say)

    try:
        done = asyncio.run(on_host(context, service, work))
    except UserError as exc:
        _record(context, "restore", service, False, archive or "", str(exc), {})
        raise
    problems: list[str] = []
    if in_place:
        say("running the monitors")
        timeout = float(context.env.get("ALLMENDE_VERIFY_TIMEOUT") or 60)
        problems = asyncio.run(run_monitors(context.inventory, [service], timeout))
    detail = "; ".join(problems)
    _record(context, "restore", service, not problems, done.archive, detail, {"paths": done.paths})
    if problems:
        raise UserError(f"{service}: restored {done.archive}, but {detail}")
    return done


def last_runs(env: Mapping[str, str]) -> dict[str, dict[str, store.BackupRun]]:
    """Return, per service, the latest recorded run, status and verify (for the docs)."""
    path = store.default_path(env)
    if not path.exists():
        return {}
    found: dict[str, dict[str, store.BackupRun]] = {}
    with closing(store.open_store(path)) as db:
        for record in reversed(store.backup_runs(db, limit=10000)):
            found.setdefault(record.service, {})[record.kind] = record
    return found
