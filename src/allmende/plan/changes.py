"""Changes and plans: what would happen to which file on which host, and a checksum over it.

Pure: no I/O. ``observe`` reads the hosts and calls ``file_change`` for each file. A plan's
checksum covers every change by its content hashes and modes (not by its diff, which follows
from them), so ``apply`` can refuse to run anything but the plan it showed.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["create", "update", "delete"]
Verb = Literal["up", "down", "start-proxy", "reload-proxy", "reload-systemd", "install"]

#: Shown instead of the diff of a file that carries (or would carry) a secret value.
HIDDEN = "(diff not shown: the file carries secret values)\n"


@dataclass(frozen=True)
class Change:
    """One file to create, update or delete on one host.

    ``before``/``after`` are sha256 hex digests (None where the file is absent) and
    ``mode_before``/``mode_after`` its permission bits. ``sensitive`` files never show a diff.
    """

    kind: Kind
    host: str
    path: str
    diff: str
    before: str | None = None
    after: str | None = None
    mode_before: int | None = None
    mode_after: int | None = None
    sensitive: bool = False

    def canonical(self) -> dict[str, Any]:
        """Return what the checksum covers: everything but the diff."""
        return {
            "kind": self.kind,
            "host": self.host,
            "path": self.path,
            "before": self.before,
            "after": self.after,
            "mode_before": self.mode_before,
            "mode_after": self.mode_after,
        }

    def as_json(self) -> dict[str, Any]:
        """Return the change as plain data for ``--json`` (modes in octal text)."""
        data = self.canonical()
        for key in ("mode_before", "mode_after"):
            mode = data[key]
            data[key] = None if mode is None else f"{mode:04o}"
        data["sensitive"] = self.sensitive
        data["diff"] = HIDDEN if self.sensitive else self.diff
        return data

    def shown_diff(self) -> str:
        """Return the diff to print: hidden for sensitive files, and a line for a mode change."""
        text = HIDDEN if self.sensitive else self.diff
        if self.kind == "update" and self.mode_before != self.mode_after:
            text += f"mode {self.mode_before:04o} -> {self.mode_after:04o}\n"
        return text


@dataclass(frozen=True)
class Action:
    """One thing apply does on a host after (``down``: before) writing its files."""

    host: str
    verb: Verb
    subject: str
    reason: str
    commands: tuple[tuple[str, ...], ...] = ()

    def canonical(self) -> dict[str, Any]:
        """Return what a plan's checksum covers."""
        return {
            "host": self.host,
            "verb": self.verb,
            "subject": self.subject,
            "commands": [list(c) for c in self.commands],
        }

    def as_json(self) -> dict[str, Any]:
        """Return the action as plain data for ``--json``."""
        return {**self.canonical(), "reason": self.reason}

    def shown(self) -> str:
        """Return the action as one line for people."""
        return f"{self.verb} {self.subject}: {self.reason}"


@dataclass(frozen=True)
class Plan:
    """The changes for every host reached, and why the others could not be planned."""

    changes: tuple[Change, ...]
    hosts: tuple[str, ...]
    failed: Mapping[str, str] = field(default_factory=dict)
    actions: tuple[Action, ...] = ()

    @property
    def checksum(self) -> str:
        """Return the sha256 of the canonical JSON of the changes and actions, in order."""
        canonical = json.dumps(
            [c.canonical() for c in self.changes] + [a.canonical() for a in self.actions],
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def empty(self) -> bool:
        """Whether applying would do nothing at all."""
        return not self.changes and not self.actions

    def count(self, kind: Kind) -> int:
        """Return how many changes are of ``kind``."""
        return sum(1 for c in self.changes if c.kind == kind)

    def as_json(self) -> dict[str, Any]:
        """Return the plan as plain data for ``--json``."""
        return {
            "checksum": self.checksum,
            "hosts": list(self.hosts),
            "failed": dict(sorted(self.failed.items())),
            "changes": [c.as_json() for c in self.changes],
            "actions": [a.as_json() for a in self.actions],
        }


def sha256(data: bytes) -> str:
    """Return the sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sensitive(*modes: int | None) -> bool:
    """A file carries secrets when either side is readable by its owner only (0600): that is
    how allmende writes every file holding a secret value."""
    return any(mode is not None and mode & 0o077 == 0 for mode in modes)


def unified_diff(label: str, before: bytes | None, after: bytes | None) -> str:
    """Return a unified diff from ``before`` (on the host) to ``after`` (rendered), None being
    an absent file; "binary files differ" when either is not UTF-8 text."""
    try:
        old = (before or b"").decode("utf-8")
        new = (after or b"").decode("utf-8")
    except UnicodeDecodeError:
        return f"Binary files differ: {label}\n"
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"{label} (on the host)" if before is not None else "/dev/null",
        tofile=f"{label} (rendered)" if after is not None else "/dev/null",
    )
    text = ""
    for line in lines:
        text += line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
    return text


def file_change(
    host: str,
    path: str,
    wanted: bytes | None,
    wanted_mode: int | None,
    have_hash: str | None,
    have_mode: int | None,
    have: bytes | None = None,
) -> Change | None:
    """Compare one file: what render wants (None: it should not exist) with what the host has
    (``have_hash`` None: absent; ``have`` its content, needed only when the hashes differ).
    Return the Change, or None when they agree."""
    label = f"{host}:{path}"
    secret = sensitive(wanted_mode, have_mode)
    if wanted is None:
        if have_hash is None:
            return None
        return Change(
            "delete",
            host,
            path,
            unified_diff(label, have, None),
            before=have_hash,
            mode_before=have_mode,
            sensitive=secret,
        )
    after = sha256(wanted)
    if have_hash is None:
        return Change(
            "create",
            host,
            path,
            unified_diff(label, None, wanted),
            after=after,
            mode_after=wanted_mode,
            sensitive=secret,
        )
    if have_hash == after and have_mode == wanted_mode:
        return None
    diff = "" if have_hash == after else unified_diff(label, have, wanted)
    return Change(
        "update",
        host,
        path,
        diff,
        before=have_hash,
        after=after,
        mode_before=have_mode,
        mode_after=wanted_mode,
        sensitive=secret,
    )
