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
from pathlib import PurePosixPath
from typing import Any, Literal

from allmende.plan.digest import HostKey
from allmende.render.output import written_for

Kind = Literal["create", "update", "delete"]
#: A file's owner: (uid, gid).
Owner = tuple[int, int]
Verb = Literal[
    "install",
    "pull",
    "prepare",
    "up",
    "replace",
    "down",
    "provision",
    "start-proxy",
    "reload-proxy",
    "reload-systemd",
    "restart",
    "authorize",
    "note",
]

#: Shown instead of the diff of a file that carries (or would carry) a secret value.
HIDDEN = "(diff not shown: the file carries secret values)\n"


@dataclass(frozen=True)
class Change:
    """One file to create, update or delete on one host.

    ``before``/``after`` are sha256 hex digests (None where the file is absent), keyed with
    the host's key for ``sensitive`` files (``digest.HostKey``), and ``mode_before``/
    ``mode_after`` its permission bits. ``sensitive`` files never show a diff.
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
    #: The owner (uid, gid) it gets, where it must have one, and the one it had when that
    #: differs.
    owner_after: Owner | None = None
    owner_before: Owner | None = None
    #: The collective whose inventory wrote the file there (its header), when that is not the
    #: one planning: apply takes it over only with --force.
    foreign: str | None = None

    def canonical(self, masked: bool = False) -> dict[str, Any]:
        """Return what the checksum covers: everything but the diff. ``masked``: the hashes of
        a sensitive file only as whether there is one (its host has no key yet)."""
        before, after = self.before, self.after
        if masked and self.sensitive:
            before = None if before is None else "secret"
            after = None if after is None else "secret"
        data: dict[str, Any] = {
            "kind": self.kind,
            "host": self.host,
            "path": self.path,
            "before": before,
            "after": after,
            "mode_before": self.mode_before,
            "mode_after": self.mode_after,
        }
        if self.owner_after is not None:
            data["owner_before"] = self.owner_before and list(self.owner_before)
            data["owner_after"] = list(self.owner_after)
        if self.foreign is not None:
            data["foreign"] = self.foreign
        return data

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
        if self.owner_before is not None and self.owner_after is not None:
            before, after = (":".join(map(str, o)) for o in (self.owner_before, self.owner_after))
            text += f"owner {before} -> {after}\n"
        return text


@dataclass(frozen=True)
class Action:
    """One thing apply does on a host after (``down``: before) writing its files; ``undo``
    puts back what it changed when the apply is rolled back, where the engine says how."""

    host: str
    verb: Verb
    subject: str
    reason: str
    commands: tuple[tuple[str, ...], ...] = ()
    undo: tuple[tuple[str, ...], ...] = ()
    #: What the (last) command reads on its standard input: made by the plan, never shown and
    #: not in the checksum (a database's SQL, which carries freshly salted password verifiers).
    input: bytes = field(default=b"", repr=False, compare=False)

    def canonical(self) -> dict[str, Any]:
        """Return what a plan's checksum covers: what is done, not why (the reason is for
        people), except for ``provision``, whose reason says what is created (its SQL, made
        with fresh salts, is not covered)."""
        data: dict[str, Any] = {
            "host": self.host,
            "verb": self.verb,
            "subject": self.subject,
            "commands": [list(c) for c in self.commands],
        }
        if self.verb == "provision":
            data["does"] = self.reason
        if self.undo:
            data["undo"] = [list(c) for c in self.undo]
        return data

    def as_json(self) -> dict[str, Any]:
        """Return the action as plain data for ``--json``."""
        data = self.canonical()
        data.pop("does", None)
        return {**data, "reason": self.reason}

    def shown(self) -> str:
        """Return the action as one line for people."""
        return f"{self.verb} {self.subject}: {self.reason}"


@dataclass(frozen=True)
class Held:
    """Changes of a reachable host the plan holds back, because they depend on a host that
    could not be read (``plan.hold``): what (HAProxy's files, a service) and why."""

    host: str
    what: str
    reason: str

    def shown(self) -> str:
        """Return the hold as one line for people."""
        return f"{self.host}: {self.what} held back: {self.reason}"


@dataclass(frozen=True)
class Plan:
    """The changes for every host reached, and why the others could not be planned."""

    changes: tuple[Change, ...]
    hosts: tuple[str, ...]
    failed: Mapping[str, str] = field(default_factory=dict)
    actions: tuple[Action, ...] = ()
    #: Each host's key for the hashes of its secret files (never shown).
    keys: Mapping[str, HostKey] = field(default_factory=dict, repr=False)
    #: What waits for a host that could not be read (not in ``changes`` or ``actions``).
    held: tuple[Held, ...] = ()

    @property
    def checksum(self) -> str:
        """Return the sha256 of the canonical JSON of the changes and actions, in order (the
        hashes of secret files masked on hosts that have no key yet)."""
        fresh = {h for h, k in self.keys.items() if k.new}
        canonical = json.dumps(
            [c.canonical(c.host in fresh) for c in self.changes]
            + [a.canonical() for a in self.actions],
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def empty(self) -> bool:
        """Whether applying would do nothing at all (notes do nothing)."""
        return not self.changes and all(a.verb == "note" for a in self.actions)

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
            "held": [{"host": h.host, "what": h.what, "reason": h.reason} for h in self.held],
        }


def sha256(data: bytes) -> str:
    """Return the sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sensitive(path: str, *modes: int | None) -> bool:
    """A file carries secrets when it is under a ``secrets/`` directory, where allmende puts
    every file holding a secret value, or when either side is readable by its owner only."""
    if "secrets" in PurePosixPath(path).parts[:-1]:
        return True
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
    *,
    key: HostKey,
    owner: Owner | None = None,
    have_owner: Owner | None = None,
) -> Change | None:
    """Compare one file: what render wants (None: it should not exist) with what the host has
    (``have_hash`` None: absent; ``have`` its content, needed only when the hashes differ and
    it carries no secrets). A wanted ``owner`` (uid, gid) is compared with ``have_owner``;
    without one, whoever owns the file is right. Return the Change, its hashes keyed with the
    host's ``key`` and no diff if it carries secrets, or None when they agree."""
    label = f"{host}:{path}"
    secret = sensitive(path, wanted_mode, have_mode)
    before = None if have_hash is None else key.shown(have_hash, secret)
    if wanted is None:
        if have_hash is None:
            return None
        return Change(
            "delete",
            host,
            path,
            "" if secret else unified_diff(label, have, None),
            before=before,
            mode_before=have_mode,
            sensitive=secret,
        )
    plain = sha256(wanted)
    after = key.shown(plain, secret)
    if have_hash is None:
        return Change(
            "create",
            host,
            path,
            "" if secret else unified_diff(label, None, wanted),
            after=after,
            mode_after=wanted_mode,
            sensitive=secret,
            owner_after=owner,
        )
    owned = owner is None or owner == have_owner
    if have_hash == plain and have_mode == wanted_mode and owned:
        return None
    diff = "" if have_hash == plain or secret else unified_diff(label, have, wanted)
    theirs = written_for(have)
    return Change(
        "update",
        host,
        path,
        diff,
        before=before,
        after=after,
        mode_before=have_mode,
        mode_after=wanted_mode,
        sensitive=secret,
        owner_before=None if owned else have_owner,
        owner_after=owner,
        foreign=theirs if theirs is not None and theirs != written_for(wanted) else None,
    )
