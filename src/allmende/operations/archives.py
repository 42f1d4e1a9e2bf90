"""What a service's repository holds: its archives, their age and size, and how fresh the
last one is against the schedule, as seen in the repository itself (never a local log)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from allmende.connectors.base import Connector
from allmende.errors import UserError
from allmende.inventory.backupjob import Job
from allmende.operations import borg
from allmende.operations.backup import borg_run

#: How far apart the runs of each schedule shorthand are.
PERIODS = {
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekly": timedelta(days=7),
    "monthly": timedelta(days=31),
}
#: The timers start up to this much late at random (``render.systemd.RANDOMIZED_DELAY``).
DELAY = timedelta(minutes=15)

Freshness = Literal["fresh", "late", "missing"]


@dataclass(frozen=True)
class Listed:
    """One archive with its age and sizes (bytes before and after deduplication)."""

    name: str
    time: datetime
    original: float = 0.0
    deduplicated: float = 0.0


def parse_time(text: str) -> datetime:
    """Return a Borg time (UTC, as ``borg.environment`` makes Borg write it) as a datetime."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def usable(name: str) -> bool:
    """Return whether an archive is a finished backup (not a checkpoint of a killed run)."""
    return not name.endswith(".checkpoint") and ".checkpoint." not in name


async def archives(
    host: Connector, job: Job, passphrase: bytes, sizes: bool = False, lock: bool = True
) -> list[Listed]:
    """Return the service's finished archives in its repository, oldest first (with their
    sizes if ``sizes``: one ``borg info`` of them all). Raise UserError if the repository
    cannot be read.

    Borg takes the repository's lock, a file it writes in the repository, even to list its
    archives. Without ``lock`` it reads without (``--bypass-lock``): what the watch unit does,
    to which the file system, the repositories included, is read-only."""
    if sizes:
        argv = [
            "borg",
            "info",
            "--json",
            f"--glob-archives={borg.archive_prefix(job.service)}*",
            *([] if lock else ["--bypass-lock"]),
            job.repository,
        ]
        data = json.loads(await borg_run(host, job, argv, passphrase, "borg info"))
        found = [
            Listed(
                str(a["name"]),
                parse_time(str(a["start"])),
                float(a.get("stats", {}).get("original_size", 0)),
                float(a.get("stats", {}).get("deduplicated_size", 0)),
            )
            for a in data.get("archives", [])
        ]
    else:
        argv = borg.list_archives(job, lock=lock)
        output = await borg_run(host, job, argv, passphrase, "borg list")
        found = [Listed(a.name, parse_time(a.time)) for a in borg.parse_list(output)]
    return sorted((a for a in found if usable(a.name)), key=lambda a: a.time)


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _weekdays(spec: str) -> list[int]:
    """Return the weekdays an OnCalendar day spec names (``Mon..Fri``, ``Sat,Sun``)."""
    days: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition("..")
        if first[:3] in _DAYS:
            start = _DAYS.index(first[:3])
            end = _DAYS.index(last[:3]) if last[:3] in _DAYS else start
            days.update(
                range(start, end + 1) if end >= start else [*range(start, 7), *range(end + 1)]
            )
    return sorted(days)


def period(schedule: str) -> timedelta:
    """Return how far apart a schedule's runs are, at most: the shorthands' periods; for an
    OnCalendar expression, the longest gap between the hours it lists (``*-*-* 00,03,06:00``),
    an hour when it runs every hour, a day, or the longest gap between its weekdays."""
    if schedule in PERIODS:
        return PERIODS[schedule]
    days = _weekdays(schedule.split()[0]) if schedule.split() else []
    if days:
        gaps = [b - a for a, b in zip(days, [*days[1:], days[0] + 7], strict=True)]
        if max(gaps) > 1:
            return timedelta(days=max(gaps))
    match = re.search(r"([^\s:]+):([^\s:]+)(:[^\s:]+)?$", schedule)
    if match:
        hours, minutes = match.group(1), match.group(2)
        if minutes.startswith("*") or "/" in minutes or "," in minutes:
            return timedelta(hours=1)
        if hours.startswith("*") or "/" in hours:
            step = hours.partition("/")[2]
            return timedelta(hours=int(step) if step.isdigit() else 1)
        if "," in hours:
            values = sorted(int(h) for h in hours.split(",") if h.isdigit())
            gaps = [b - a for a, b in zip(values, [*values[1:], values[0] + 24], strict=True)]
            return timedelta(hours=max(gaps) if gaps else 24)
    return timedelta(days=1)


def allowed_age(schedule: str) -> timedelta:
    """Return how old the last archive may be before the backup counts as late: one period,
    the timer's random delay, and a quarter of the period (at least half an hour) for the run
    itself."""
    step = period(schedule)
    return step + DELAY + max(step / 4, timedelta(minutes=30))


@dataclass(frozen=True)
class Status:
    """How fresh a service's backup is in its repository."""

    service: str
    state: Freshness
    last: Listed | None
    age: timedelta | None
    allowed: timedelta
    count: int

    def describe(self) -> str:
        """Return the state in words (``fresh: last archive 3 h ago``)."""
        if self.last is None or self.age is None:
            return "missing: the repository holds no archive of it"
        hours = self.age.total_seconds() / 3600
        age = f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
        limit = self.allowed.total_seconds() / 3600
        return f"{self.state}: last archive {self.last.name}, {age} ago (allowed {limit:.1f} h)"


def freshness(job: Job, found: list[Listed], at: datetime | None = None) -> Status:
    """Return how fresh the job's backup is, given its archives."""
    moment = at or datetime.now(UTC)
    allowed = allowed_age(job.schedule)
    if not found:
        return Status(job.service, "missing", None, None, allowed, 0)
    last = found[-1]
    age = moment - last.time
    state: Freshness = "fresh" if age <= allowed else "late"
    return Status(job.service, state, last, age, allowed, len(found))


async def status(host: Connector, job: Job, passphrase: bytes, lock: bool = True) -> Status:
    """Return how fresh the service's backup is, read from its repository (taking its lock
    unless not ``lock``: see ``archives``). Raise UserError if it cannot be read."""
    try:
        return freshness(job, await archives(host, job, passphrase, lock=lock))
    except ValueError as exc:
        raise UserError(f"{job.service}: cannot read what Borg listed: {exc}") from None
