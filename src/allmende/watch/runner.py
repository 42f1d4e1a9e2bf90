"""The watcher's loop: every probe on its interval, results and alerts into the state database.

Each probe runs as a task of its own, so a target that accepts and never answers holds one
slot (of ``concurrency``) for its ``timeout`` and stalls nothing else. A try that fails is
repeated ``retries`` times, a tenth of the interval apart (at most 30 s), before its result
counts (``checks``). Results, checks and alerts are written by ``flush`` once a second on a
worker thread; when the database is locked they stay in memory and go with the next flush.

``Housekeeping`` tasks run every so often beside the probes: the first folds old results
into hours (``state.watchstore.compact``); periodic maintenance of the collective's own (such
as renewing certificates that are due) is added to ``Watcher.housekeeping`` the same way.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from allmende.inventory.watchspec import Plan, Probe
from allmende.operations.notify import Event
from allmende.state import store, watchstore
from allmende.state.watchstore import CheckRow, Result
from allmende.watch import probes
from allmende.watch.checks import Alert, Check
from allmende.watch.metrics import Metrics, serve
from allmende.watch.outbox import Outbox

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The most results kept in memory while the database stays locked (the oldest go first).
MAX_BUFFER = 500_000


@dataclass(frozen=True)
class Housekeeping:
    """A task the watcher runs every ``every`` seconds beside its probes; a failure is logged
    and tried again next time, never stopping the probes."""

    name: str
    every: float
    run: Callable[[], Awaitable[None]]


def iso(moment: float) -> str:
    """Return a Unix time as ISO 8601 text in UTC, to the second."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


@dataclass
class Options:
    """How a watcher runs besides its plan (tests and benchmarks change these)."""

    concurrency: int = 100
    flush_every: float = 1.0
    compact_every: float = 600.0
    transport: Callable[[Event, object], None] | None = None
    alert_pause: float = 2.0
    clock: Callable[[], float] = time.time
    local_now: Callable[[], datetime] = datetime.now
    backups: probes.BackupReader | None = None
    housekeeping: list[Housekeeping] = field(default_factory=list)


class Watcher:
    """Runs a plan: ``run`` forever, or ``round`` once."""

    def __init__(self, plan: Plan, state: Path | None, options: Options | None = None) -> None:
        self.plan = plan
        self.options = options or Options()
        self.state = state
        self.metrics = Metrics()
        kwargs = {} if self.options.transport is None else {"transport": self.options.transport}
        self.outbox = Outbox(
            plan.channels,
            pause=self.options.alert_pause,
            clock=self.options.clock,
            **kwargs,  # type: ignore[arg-type]
        )
        now = self.options.clock()
        self.checks = {p.id: Check.new(p, now) for p in plan.probes}
        self.latest: dict[str, Result] = {}
        self.tries = 0
        self._results: list[Result] = []
        self._dirty: dict[str, CheckRow] = {}
        self._db: sqlite3.Connection | None = None
        # Every use of the database on one thread of its own (SQLite's objects stay on theirs).
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="watch-db")
        self._slots = asyncio.Semaphore(self.options.concurrency)
        self._sessions = probes.Sessions()
        self.housekeeping = [
            Housekeeping("results", self.options.compact_every, self._compact),
            *self.options.housekeeping,
        ]

    # ------------------------------------------------------------------ probing

    async def try_once(self, probe: Probe) -> probes.Outcome:
        """Try ``probe`` once (waiting for a free slot first)."""
        async with self._slots:
            self.tries += 1
            try:
                async with asyncio.timeout(probe.timeout + 1):
                    return await self._dispatch(probe)
            except TimeoutError:
                return probes.Outcome("down", "no answer in time", probe.timeout)
            except Exception as exc:  # a probe never takes the watcher down
                log.exception("probe %s failed unexpectedly", probe.id)
                return probes.Outcome("down", f"{type(exc).__name__}: {exc}")

    async def _dispatch(self, probe: Probe) -> probes.Outcome:
        if probe.kind == "http":
            return await probes.http(probe, self._sessions)
        if probe.kind == "tcp":
            return await probes.tcp(probe)
        if probe.kind == "tls":
            return await probes.tls(probe, self.plan.certificate_days, trust=self.plan.trust)
        if probe.kind == "dns":
            return await probes.dns(probe)
        return await probes.backup(probe, self.options.backups)

    async def confirmed(self, probe: Probe, pause: float) -> probes.Outcome:
        """Try ``probe``; while it is not up, try again up to ``retries`` times, ``pause``
        seconds apart; return the last outcome."""
        outcome = await self.try_once(probe)
        for _ in range(probe.retries):
            if outcome.state == "up":
                break
            await asyncio.sleep(pause)
            outcome = await self.try_once(probe)
        return outcome

    def take(self, probe: Probe, outcome: probes.Outcome) -> Alert | None:
        """Record a confirmed outcome; queue the alert it calls for, if any."""
        now = self.options.clock()
        result = Result(
            probe.id, now, outcome.state, outcome.latency, outcome.value, outcome.detail
        )
        self.latest[probe.id] = result
        self._results.append(result)
        if len(self._results) > MAX_BUFFER:
            del self._results[: len(self._results) - MAX_BUFFER]
            log.warning("the state database stays locked: the oldest results are dropped")
        check = self.checks[probe.id]
        quiet = probe.in_maintenance(self.options.local_now()) is not None
        alert = check.observe(outcome.state, outcome.detail, now, self.plan.recover, quiet)
        self._dirty[probe.id] = check.row
        self.metrics.record(probe, outcome.state, outcome.latency, outcome.value, check.row.state)
        if alert is not None:
            self.send(alert)
        return alert

    def send(self, alert: Alert) -> None:
        """Queue ``alert`` for every channel."""
        probe = alert.probe
        event = Event(
            service=probe.service,
            what=f"{alert.label}: {probe.what}",
            since=iso(alert.since),
            detail=alert.detail,
            state="recovery" if alert.recovery else "problem",
            host=probe.host,
            collective=self.plan.collective,
        )
        log.warning("%s", event.subject())
        self.outbox.add(event)
        self.metrics.pending.set(self.outbox.pending())

    async def _loop(self, probe: Probe) -> None:
        pause = min(probe.interval / 10, 30.0)
        while True:
            started = time.monotonic()
            self.take(probe, await self.confirmed(probe, pause))
            await asyncio.sleep(max(0.0, probe.interval - (time.monotonic() - started)))

    async def _windows(self) -> None:
        """Send what a maintenance window held back once it is over."""
        while True:
            await asyncio.sleep(min(30.0, max(self.options.flush_every, 0.2)))
            moment = self.options.local_now()
            for check in self.checks.values():
                if check.probe.in_maintenance(moment) is None:
                    alert = check.due(self.options.clock())
                    if alert is not None:
                        self._dirty[check.probe.id] = check.row
                        self.send(alert)

    # ------------------------------------------------------------------ the database

    async def _in_db(self, work: Callable[..., T], *args: object) -> T:
        """Run ``work(*args)`` on the database's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, work, *args)

    def _open(self) -> tuple[dict[str, CheckRow], list[watchstore.Outgoing]]:
        """Open the state database (on its thread); return the recorded checks and the
        alerts still undelivered."""
        assert self.state is not None
        self._db = store.open_store(self.state)
        recorded = watchstore.checks(self._db)
        watchstore.forget(self._db, self.checks)
        return recorded, watchstore.undelivered(self._db)

    async def open(self) -> None:
        """Open the state database and take up where the last watcher left off: each check
        in the state it recorded, the alerts it did not deliver queued again."""
        if self.state is None or self._db is not None:
            return
        recorded, waiting = await self._in_db(self._open)
        for probe_id, check in self.checks.items():
            if probe_id in recorded:
                check.row = recorded[probe_id]
        self.outbox.restore(waiting)

    async def flush(self) -> bool:
        """Write what was learnt since the last flush; return whether it was written (a
        locked database keeps it for the next one)."""
        if self._db is None:
            return False
        results, self._results = self._results, []
        checks, self._dirty = self._dirty, {}
        outgoing = self.outbox.take_changed()
        if not (results or checks or outgoing):
            return True
        try:
            await self._in_db(watchstore.write, self._db, results, list(checks.values()), outgoing)
        except sqlite3.Error as exc:
            log.warning("cannot write to the state database now (%s): kept for later", exc)
            self._results = results + self._results
            self._dirty = {**checks, **self._dirty}
            self.outbox.changed = outgoing + self.outbox.changed
            return False
        return True

    async def _compact(self) -> None:
        if self._db is None:
            return
        plan = self.plan
        await self._in_db(
            watchstore.compact, self._db, self.options.clock(), plan.keep_full, plan.keep_hourly
        )

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.options.flush_every)
            await self.flush()
            self.metrics.pending.set(self.outbox.pending())

    async def _housekeeper(self, task: Housekeeping) -> None:
        while True:
            try:
                await task.run()
            except Exception:
                log.exception("housekeeping %s failed; tried again later", task.name)
            await asyncio.sleep(task.every)

    # ------------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Probe until ``stop`` is set (forever without), then write what is left."""
        await self.open()
        for line in self.plan.skipped:  # in the journal of a watch host's unit
            log.warning("not probed here: %s", line)
        server = await serve(self.metrics, self.plan.metrics) if self.plan.metrics else None
        tasks = [asyncio.create_task(self._loop(p)) for p in self.plan.probes]
        tasks += [asyncio.create_task(self._housekeeper(h)) for h in self.housekeeping]
        tasks += [
            asyncio.create_task(self._flusher()),
            asyncio.create_task(self._windows()),
            asyncio.create_task(self.outbox.run()),
        ]
        try:
            await (stop or asyncio.Event()).wait()
        finally:
            await _cancelled(tasks)
            await self.flush()
            await self._sessions.close()
            if server is not None:
                await server.cleanup()
            if self._db is not None:
                await self._in_db(self._db.close)
                self._db = None
            self._db_thread.shutdown()

    async def round(self, pause: float = 1.0) -> dict[str, Result]:
        """Try every probe once (with its retries, ``pause`` apart), all at once; return the
        results by probe id. Nothing is recorded or alerted."""
        try:
            outcomes = await asyncio.gather(*(self.confirmed(p, pause) for p in self.plan.probes))
        finally:
            await self._sessions.close()
        now = self.options.clock()
        return {
            p.id: Result(p.id, now, o.state, o.latency, o.value, o.detail)
            for p, o in zip(self.plan.probes, outcomes, strict=True)
        }


async def _cancelled(tasks: list[asyncio.Task[Any]], patience: float = 10.0) -> None:
    """Cancel ``tasks`` and wait until they are done, cancelling again those that went on (a
    library may swallow a cancellation that meets its own completion); give up on those still
    running after ``patience`` seconds, saying so, so that the watcher still stops."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
        if pending and loop.time() > deadline:
            names = ", ".join(sorted(t.get_name() for t in pending))
            log.warning("stopping: %d task(s) did not stop, left behind: %s", len(pending), names)
            return
