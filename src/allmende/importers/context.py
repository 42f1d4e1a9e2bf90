"""What mapping one compose service into one component works with, and collects as it goes.

The mapping functions (ports, volumes, healthcheck, labels, ...) each read the compose
service, write into ``component`` what the inventory can say, put into ``verbatim`` what it
cannot (complete values of compose keys, so that rendering reproduces them), and add notes,
comments and problems; nothing is dropped without a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from allmende.errors import Problem
from allmende.importers.composefile import Project
from allmende.importers.result import Difference, Note, NoteKind
from allmende.inventory.xcompose import escape
from allmende.inventory.yamlpos import KeyPath


@dataclass
class ComponentContext:
    """One compose service being mapped to a component.

    ``name`` is the compose service's name (where notes point), ``cname`` the component's
    (the same, unless that is no valid name), ``service`` the inventory service's.
    """

    project: Project
    service: str
    name: str
    cname: str
    compose: dict[str, Any]
    component: dict[str, Any] = field(default_factory=dict)
    verbatim: dict[str, Any] = field(default_factory=dict)
    comments: dict[KeyPath, str] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    udp: set[str] = field(default_factory=set)
    differences: list[Difference] = field(default_factory=list)
    carried: dict[str, bytes] = field(default_factory=dict)
    executable: set[str] = field(default_factory=set)
    #: host ports the project's components publish (shared by every context of a project)
    taken_ports: set[int] = field(default_factory=set)

    @property
    def base(self) -> KeyPath:
        """The key path of this service in the compose file."""
        return ("services", self.name)

    def note(self, path: KeyPath, kind: NoteKind, message: str) -> None:
        """Add a note located at ``path`` below this service in the compose file."""
        self.notes.append(Note(self.project.where((*self.base, *path)), kind, message))

    def problem(self, path: KeyPath, message: str, hint: str = "") -> None:
        """Add a problem located at ``path`` below this service in the compose file."""
        self.problems.append(self.project.problem((*self.base, *path), message, hint))

    def keep(self, key: str, value: Any, reason: str = "") -> None:
        """Keep the compose key ``key`` verbatim under ``x-compose``, saying why if not obvious.

        The value is kept as Compose reads it: variables resolved, ``$`` written ``$$``.
        """
        self.verbatim[key] = escape(value)
        if reason:
            self.reasons[key] = reason

    def differ(self, key: str, message: str) -> None:
        """Say that the rendered service will do otherwise than the original in the compose
        field ``key`` (and how), located at that field (or the service)."""
        path = (*self.base, key) if key in self.compose else self.base
        where = self.project.where(path, key=key not in self.compose)
        self.differences.append(Difference(where, self.name, key, message))

    def comment(self, path: KeyPath, text: str) -> None:
        """Write ``text`` as a comment after the key at ``path`` of the component."""
        self.comments[path] = text
