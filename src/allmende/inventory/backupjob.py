"""What one service's backup does, as a host runs it: the job file's shape.

A ``Job`` is derived from the inventory (``inventory.backups.job``) and written as JSON to
``/etc/allmende/backup/<service>.json`` on the service's host by apply; the backup timer runs
it there (``allmende backup job SERVICE``) and ``allmende backup run`` runs the same job from
the inventory. This module imports only the standard library: allmende's copy on a host runs it
without any of allmende's dependencies.

Commands are argument lists run on the host. Where a command needs the id of a running container
(the engines start containers under names of their own), ``find`` is the command that prints the
ids, one a line, of the containers that carry the service's labels, and ``CONTAINER`` in a
command stands for the first of them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: The version of the job file's format.
VERSION = 1
#: In a command, the place of the container id that ``find`` printed.
CONTAINER = "{container}"

Argv = tuple[str, ...]


@dataclass(frozen=True)
class Control:
    """How a service is stopped (for a ``stop`` backup, a restore in place) and started again.

    With ``find``: the ids it prints are the containers to stop (``stop`` + ids) and to start
    again afterwards (``start`` + ids); none running means nothing to stop. Without: ``stop``
    and ``start`` are run as they are.
    """

    stop: tuple[Argv, ...]
    start: tuple[Argv, ...]
    find: Argv = ()


@dataclass(frozen=True)
class Dump:
    """One database a service provides, dumped into the archive while the service runs.

    ``path`` is where the dump is in the archive (``srv/<service>/dumps/<db>.sql`` as the host
    path ``/srv/<service>/dumps/<db>.sql``, a named pipe while the backup runs). ``command``
    writes the dump on its standard output, ``load`` reads one on its standard input into the
    database (a restore in place); ``find`` prints the id of the provider's container. A SQLite
    database has no commands: ``command`` is its file on the host, copied through SQLite's
    backup API.
    """

    database: str
    kind: str
    path: str
    command: Argv
    load: Argv
    find: Argv = ()


@dataclass(frozen=True)
class Channel:
    """Where alerts about this backup go: an e-mail address (handed to ``smtp``,
    ``host:port``) or a webhook URL."""

    kind: str
    target: str
    smtp: str = ""


@dataclass(frozen=True)
class Job:
    """Everything a host needs to back up one service and check that it arrived."""

    service: str
    host: str
    repository: str
    consistency: str
    schedule: str
    encryption: str = "repokey-blake2"
    append_only: bool = False
    compression: str = "lz4"
    keep: tuple[tuple[str, int], ...] = ()
    paths: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    control: Control | None = None
    dumps: tuple[Dump, ...] = ()
    notify: tuple[Channel, ...] = ()
    #: What runs the service there, for messages (``compose on podman``).
    engine: str = ""
    collective: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def remote(self) -> bool:
        """Whether the repository is reached over SSH."""
        return self.repository.startswith("ssh://")

    def to_json(self, comment: str = "") -> str:
        """Return the job as the JSON text of its file (keys sorted, one trailing newline),
        with ``comment`` (what it was made from) as its first key, ``_comment``."""
        data = asdict(self)
        data.pop("extra")
        data["version"] = VERSION
        if comment:
            data["_comment"] = comment
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _argv(value: Any) -> Argv:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"not a command (a list of words): {value!r}")
    return tuple(value)


def versioned(text: str | bytes, version: int, what: str) -> dict[str, Any]:
    """Return the keys of a JSON file allmende wrote (without its ``_comment`` and
    ``version``). Raise ValueError if it is not a JSON object of ``version``."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    data.pop("_comment", None)
    if data.pop("version", None) != version:
        raise ValueError(f"not a {what} of version {version}")
    return data


def from_json(text: str | bytes) -> Job:
    """Return the job a job file holds. Raise ValueError if it is not one (or of another
    version)."""
    data = versioned(text, VERSION, "job file")
    control = data.pop("control", None)
    dumps = data.pop("dumps", [])
    notify = data.pop("notify", [])
    plain: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "keep"
    }
    try:
        return Job(
            **plain,
            keep=tuple((str(k), int(n)) for k, n in data.get("keep", [])),
            control=None
            if control is None
            else Control(
                tuple(_argv(c) for c in control["stop"]),
                tuple(_argv(c) for c in control["start"]),
                _argv(control.get("find", [])),
            ),
            dumps=tuple(
                Dump(
                    str(d["database"]),
                    str(d["kind"]),
                    str(d["path"]),
                    _argv(d["command"]),
                    _argv(d["load"]),
                    _argv(d.get("find", [])),
                )
                for d in dumps
            ),
            notify=tuple(Channel(str(c["kind"]), str(c["target"]), str(c["smtp"])) for c in notify),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"incomplete job file: {exc}") from None


def with_container(argv: Argv, container: str) -> list[str]:
    """Return ``argv`` with ``CONTAINER`` replaced by the id of a container."""
    return [container if word == CONTAINER else word for word in argv]
