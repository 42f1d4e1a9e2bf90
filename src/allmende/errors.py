"""The exception tree of allmende.

Every failure a user can cause and fix is a ``UserError``; the command line prints its message
(never a traceback) and exits with its ``exit_code``. Anything else is a bug in allmende and is
reported as an internal error with a traceback and a request to report it.

::

    AllmendeError
    ├── UserError                 a mistake or situation the user can fix (exit 2)
    │   ├── InventoryError        the inventory does not load: carries every Problem at once
    │   ├── CheckFailed           plan and apply refuse an inventory with error findings
    │   ├── SecretError           the secret store or its key is missing, unreadable or wrong
    │   ├── CommandFailed         a program ran and failed (``host`` None: on this machine)
    │   │   ├── ToolMissing       the program is not installed where it was run
    │   │   └── CommandTimedOut   the program did not finish in time
    │   ├── HostError             something about one host (``host``)
    │   │   ├── Unreachable       the host cannot be reached or trusted
    │   │   └── LockHeld          another apply holds the host's lock
    │   ├── UnsafePlan            the plan deletes more than is safe without --force
    │   ├── PlanChanged           the plan or a host changed since the plan was shown
    │   ├── ApplyFailed           a host's apply failed (``rolled_back``, ``problems``)
    │   └── CertificateFailed     a certificate was not obtained (``kind``, ``retry_after``)
    └── InternalError             a bug: an invariant of allmende itself did not hold
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: str, keep: str = "") -> str:
    """Return ``text`` with every control or invisible formatting character (ESC, a carriage
    return, a right-to-left override, ...) but those in ``keep`` written as an escape
    (``\\x1b``, ``\\u202e``), so that nothing from an inventory or a host can move the cursor,
    repaint a terminal or fake a line of output."""
    if text.isprintable() and not keep:
        return text
    out = []
    for character in text:
        if character in keep or character.isprintable() or character == " ":
            out.append(character)
        elif character in _ESCAPES:
            out.append(_ESCAPES[character])
        else:
            out.append(repr(character)[1:-1])
    return "".join(out)


@dataclass(frozen=True, order=True)
class Location:
    """Where something is in the inventory: a file relative to the inventory root, 1-based."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{visible(self.file)}:{self.line}:{self.column}"
        return visible(self.file)


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the inventory, located, with what to do about it."""

    location: Location
    keypath: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        key = f" {visible(self.keypath)}:" if self.keypath else ""
        hint = f" ({visible(self.hint)})" if self.hint else ""
        return f"{self.location}:{key} {visible(self.message)}{hint}"


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


class CheckFailed(UserError):
    """The inventory loads but its check finds errors: plan and apply refuse it."""


class SecretError(UserError):
    """The secret store, its key, or one secret is missing, unreadable or wrong."""


class CommandFailed(UserError):
    """A program ran and failed; the message names it, where it ran and what it printed.

    ``host`` is the inventory host it ran on (None: this machine, outside any host),
    ``argv`` the command with secrets masked, ``exit`` its exit status (None when it never
    finished) and ``output`` the tail of what it printed.
    """

    def __init__(
        self,
        message: str,
        *,
        host: str | None = None,
        argv: Sequence[str] = (),
        exit: int | None = None,
        output: str = "",
    ) -> None:
        super().__init__(message)
        self.host = host
        self.argv = tuple(argv)
        self.exit = exit
        self.output = output


class ToolMissing(CommandFailed):
    """A program allmende drives is not installed where it was to run."""


class CommandTimedOut(CommandFailed):
    """A program did not finish within its time."""


class HostError(UserError):
    """Something about one host went wrong; ``host`` names it."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message)
        self.host = host


class Unreachable(HostError):
    """A host cannot be reached or trusted (connection, login, host key)."""


class LockHeld(HostError):
    """Another apply holds the host's lock."""


class UnsafePlan(UserError):
    """The plan does more than is safe without ``--force`` (many deletes)."""


class PlanChanged(UserError):
    """The plan, or a file on a host, changed since the plan was shown: nothing was applied."""


class ApplyFailed(HostError):
    """A host's apply failed. ``cause`` is the first error; ``rolled_back`` says whether the
    host was put back as it was; ``undone`` what the rollback did, ``problems`` what it then
    failed to do. The message says it all in one sentence."""

    def __init__(
        self,
        host: str,
        cause: UserError,
        *,
        rolled_back: bool,
        problems: Sequence[str] = (),
        undone: Sequence[str] = (),
    ) -> None:
        if problems:
            tail = "; rolling back left problems: " + "; ".join(problems)
        elif rolled_back and undone:
            tail = "; rolled back: " + ", ".join(undone)
        elif rolled_back:
            tail = "; the host was rolled back to its previous files and services"
        else:
            tail = ""
        super().__init__(host, f"{cause}{tail}")
        self.cause = cause
        self.rolled_back = rolled_back
        self.problems = tuple(problems)
        self.undone = tuple(undone)


class CertificateFailed(UserError):
    """A certificate could not be obtained or installed; the one in service stays.

    ``kind`` says why, as the renewal decides what to do next: ``unreachable`` (the ACME
    directory did not answer), ``rejected`` (the CA refuses the name), ``rate_limited``,
    ``validation`` (the CA could not check a challenge), ``dns`` (a dns-01 update or its
    propagation failed), ``install`` (the edge did not take it) or ``other``.
    ``retry_after`` is the CA's ``Retry-After`` (an aware datetime), when it gave one.
    """

    def __init__(
        self, message: str, kind: str = "other", retry_after: datetime | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Whether trying again at once may work (the directory did not answer)."""
        return self.kind == "unreachable"


class InternalError(AllmendeError):
    """A bug in allmende itself."""
