"""The exception tree of allmende.

Every failure a user can cause and fix is a ``UserError``; the command line prints its message
(never a traceback) and exits with its ``exit_code``. Anything else is a bug in allmende and is
reported as an internal error with a traceback and a request to report it.

::

    AllmendeError
    ├── UserError                 a mistake or situation the user can fix (exit 2)
    │   ├── InventoryError        the inventory does not load: carries every Problem at once
    │   ├── SecretError           the secret store or its key is missing, unreadable or wrong
    │   ├── ToolMissing           an outside program allmende drives is not installed
    │   └── CommandFailed         an outside program ran and failed
    └── InternalError             a bug: an invariant of allmende itself did not hold
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Location:
    """Where something is in the inventory: a file relative to the inventory root, 1-based."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the inventory, located, with what to do about it."""

    location: Location
    keypath: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        key = f" {self.keypath}:" if self.keypath else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.location}:{key} {self.message}{hint}"


class AllmendeError(Exception):
    """Base of every error allmende raises on purpose."""


class UserError(AllmendeError):
    """A mistake or situation the user can fix; printed without a traceback."""

    exit_code = 2


class InventoryError(UserError):
    """The inventory cannot be loaded. ``problems`` holds every problem found, sorted."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(problems))
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [str(p) for p in self.problems]
        lines.append(f"{count} {noun}: the inventory was not loaded.")
        super().__init__("\n".join(lines))


class SecretError(UserError):
    """The secret store, its key, or one secret is missing, unreadable or wrong."""


class ToolMissing(UserError):
    """An outside program allmende drives is not installed."""


class CommandFailed(UserError):
    """An outside program ran and failed; the message names it and says what it printed."""


class InternalError(AllmendeError):
    """A bug in allmende itself."""
