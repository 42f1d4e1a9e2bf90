"""What an importer hands back: the service data it made, and everything worth saying about it.

A ``Note`` is one line for the user: a field kept verbatim, a value moved into the secret
store, a warning (an unset variable, an assumption made). ``ImportRefused`` is the user error
raised, with every problem at once, when a file cannot be imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from allmende.errors import Location, Problem, UserError
from allmende.inventory.yamlpos import KeyPath

NoteKind = Literal["kept", "moved", "warning", "info"]


@dataclass(frozen=True, order=True)
class Note:
    """One thing the user should read about an import, located in the source file."""

    location: Location
    kind: NoteKind
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass(frozen=True, order=True)
class Difference:
    """One way the rendered service will do something else than the original did: the compose
    service and field it is about (``db``, ``volumes``), said to the user line by line before
    anything is applied."""

    location: Location
    service: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.service}.{self.field}: {self.message}"


@dataclass(frozen=True)
class Connection:
    """A component's environment names a database host: ``DB_HOST=db`` or a database URL."""

    component: str
    host: str
    database: str | None
    engine: str | None
    location: Location


@dataclass
class Imported:
    """One service made from a compose project (or changed by an HAProxy import).

    ``data`` is the service file's content as plain data; ``comments`` maps key paths to a
    comment written after that key; ``secrets`` maps secret names to the values to store;
    ``kept`` lists the fields kept verbatim under ``x-compose`` (``app.cap_add``);
    ``differences`` what the rendered service will do otherwise than the original; ``files``
    the configuration files carried into ``files/<service>/``, by path there, ``executable``
    those of them that are executable. ``source``
    names the files as given, ``origin`` by their absolute paths.
    """

    name: str
    source: str
    header: str
    data: dict[str, Any]
    origin: str = ""
    comments: dict[KeyPath, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    executable: set[str] = field(default_factory=set)
    connections: list[Connection] = field(default_factory=list)


class ImportRefused(UserError):
    """A file cannot be imported; ``problems`` holds every reason, located, sorted."""

    def __init__(self, problems: Sequence[Problem], what: str = "nothing was imported") -> None:
        self.problems = tuple(sorted(set(problems)))
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [str(p) for p in self.problems]
        lines.append(f"{count} {noun}: {what}.")
        super().__init__("\n".join(lines))
