"""What the watcher probes, as it runs it: the watch plan's shape.

A ``Plan`` is derived from the inventory (``render.watch_plan``) and either run at once
(``allmende watch DIR``, ``allmende status DIR``) or written as JSON to
``/etc/allmende/watch.json`` on the host the inventory names in ``watch.host``, whose systemd
unit runs allmende's copy there on it. This module imports only the standard library: that copy
reads it without the inventory or any of allmende's model dependencies.

Every ``Probe`` is one thing to try, already routed: ``address`` and ``port`` are where to
connect (the edge for a routed name), ``name`` is what to speak to there (the Host header, the
TLS server name, the name whose certificate must be valid, the DNS name asked for).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from allmende.inventory.backupjob import Channel, versioned

#: The version of the plan file's format.
VERSION = 1

Kind = Literal["http", "tcp", "tls", "dns", "backup"]
KINDS: tuple[Kind, ...] = ("http", "tcp", "tls", "dns", "backup")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Window:
    """A maintenance window: weekly from ``start`` to ``end`` (``HH:MM``, an end before the
    start is the next day) on ``days`` (0 is Monday), or once (``YYYY-MM-DD HH:MM``)."""

    start: str
    end: str
    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    reason: str = ""

    @property
    def once(self) -> bool:
        return len(self.start) > 5

    def covers(self, moment: datetime) -> bool:
        """Return whether the (naive, local) ``moment`` is inside the window."""
        if self.once:
            start = datetime.fromisoformat(self.start.replace(" ", "T"))
            end = datetime.fromisoformat(self.end.replace(" ", "T"))
            return start <= moment < end
        for back in (0, 1):  # a window that started yesterday may last past midnight
            day = (moment - timedelta(days=back)).date()
            if day.weekday() not in self.days:
                continue
            start = datetime.combine(day, datetime.strptime(self.start, "%H:%M").time())
            end = datetime.combine(day, datetime.strptime(self.end, "%H:%M").time())
            if end <= start:
                end += timedelta(days=1)
            if start <= moment < end:
                return True
        return False


def weekdays(spec: str) -> tuple[int, ...]:
    """Return the weekdays (0 is Monday) of a systemd day list: ``Mon..Fri``, ``Sat,Sun``."""
    found: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition("..")
        start = DAYS.index(first)
        end = DAYS.index(last) if last else start
        found.update(range(start, end + 1) if end >= start else [*range(start, 7), *range(end + 1)])
    return tuple(sorted(found))


@dataclass(frozen=True)
class Probe:
    """One check the watcher runs every ``interval`` seconds, each try at most ``timeout``.

    ``id`` is stable across runs (results and open incidents are kept under it); ``what`` is
    how it is shown (a URL, ``host:port``, a DNS name). For ``http``: ``scheme``, ``path``, the
    expected ``status`` (0: any below 400) and text it ``contains``. For ``tls``: ``starttls``
    (``smtp``, ``imap``, ``pop3`` or empty for TLS from the start). For ``dns``: the addresses
    every nameserver in ``nameservers`` (``address:port`` or a name) must answer, ``expect``.
    For ``backup``: ``job``, the job file on this host (empty: read through the inventory).
    """

    id: str
    kind: Kind
    service: str
    host: str
    what: str
    interval: float
    timeout: float
    retries: int
    address: str = ""
    port: int = 0
    name: str = ""
    scheme: str = ""
    path: str = ""
    status: int = 0
    contains: str = ""
    starttls: str = ""
    expect: tuple[str, ...] = ()
    nameservers: tuple[str, ...] = ()
    job: str = ""
    windows: tuple[Window, ...] = ()

    def in_maintenance(self, moment: datetime) -> Window | None:
        """Return the maintenance window ``moment`` (local time) is in, if any."""
        return next((w for w in self.windows if w.covers(moment)), None)


@dataclass(frozen=True)
class Remote:
    """A host the watch host asks how fresh its services' backups are: over SSH as ``user``
    at ``address``:``port``, with the private ``key`` whose only use there is that answer (a
    forced command), the host key checked against ``known_hosts`` (an unknown or changed key
    is refused). Both files are on the watch host; ``missing`` says why the key is not there
    yet (then the host's backup probes are down with that reason)."""

    host: str
    address: str
    port: int
    user: str
    key: str
    known_hosts: str
    missing: str = ""


@dataclass(frozen=True)
class Plan:
    """Everything a watcher runs: its probes, where alerts go, how results are kept.

    ``recover`` passes in a row close an incident; a certificate with less than
    ``certificate_days`` left is degraded, and one that verifies neither against the system's
    CAs nor ``trust`` is down; results are kept in full for ``keep_full`` seconds,
    then one row per probe and hour for ``keep_hourly`` seconds. ``skipped`` says what the
    inventory holds that is not probed, and why. On a watch host, ``remotes`` are the hosts
    whose backups it asks for over SSH (a backup probe of a service on another host).
    """

    collective: str
    probes: tuple[Probe, ...]
    channels: tuple[Channel, ...] = ()
    metrics: str = ""
    recover: int = 2
    certificate_days: int = 14
    #: PEM of the private CA that signs the edges' certificates (``acme.trust``), trusted by
    #: the certificate probes beside the system's CAs ("": the system's alone).
    trust: str = ""
    keep_full: float = 2 * 86400.0
    keep_hourly: float = 90 * 86400.0
    skipped: tuple[str, ...] = ()
    remotes: tuple[Remote, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self, comment: str = "") -> str:
        """Return the plan as the JSON text of its file, ``comment`` first (``_comment``)."""
        data = asdict(self)
        data.pop("extra")
        data["version"] = VERSION
        if comment:
            data["_comment"] = comment
        return json.dumps(data, indent=1, sort_keys=True) + "\n"


def _window(data: dict[str, Any]) -> Window:
    return Window(
        str(data["start"]), str(data["end"]), tuple(data["days"]), str(data.get("reason", ""))
    )


def _probe(data: dict[str, Any]) -> Probe:
    plain: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "windows"
    }
    return Probe(**plain, windows=tuple(_window(w) for w in data.get("windows", [])))


def from_json(text: str | bytes) -> Plan:
    """Return the plan a plan file holds. Raise ValueError if it is not one (or of another
    version)."""
    data = versioned(text, VERSION, "watch plan")
    try:
        return Plan(
            **{
                k: v
                for k, v in data.items()
                if k not in ("probes", "channels", "skipped", "remotes")
            },
            probes=tuple(_probe(p) for p in data["probes"]),
            channels=tuple(
                Channel(str(c["kind"]), str(c["target"]), str(c["smtp"]))
                for c in data.get("channels", [])
            ),
            skipped=tuple(str(s) for s in data.get("skipped", [])),
            remotes=tuple(Remote(**r) for r in data.get("remotes", [])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"incomplete watch plan: {exc}") from None
