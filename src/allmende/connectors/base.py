"""What every connector offers: read, stat and list files of a host, and run a program on it.

A connector reaches one host (pyinfra's ``connectors/base.py`` is the model). Paths are the
absolute paths the files have on that host (``/srv/wiki/compose.yaml``); a connector may sit
them under another root for tests and staging (``ALLMENDE_HOST_ROOT`` for the local machine,
``ALLMENDE_REMOTE_ROOT`` over SSH). Programs run with argument lists only, never shell text,
and are not affected by that root. Every foreign exception is translated into
``allmende.errors`` here, so callers only ever see a ``UserError`` (or a bug).

``Connector.run`` is the one executor for programs on hosts: each subclass only starts the
program (``_spawn``); ``run`` logs the command (secrets masked), bounds it with a timeout and
reads its exit status in one place: a status outside ``ok`` raises ``CommandFailed`` naming the
host, the command and the tail of what it printed, exit 127 (the program is not there) raises
``ToolMissing`` on every connector alike, and a run past its timeout ``CommandTimedOut``.

Use a connector as an async context manager: ``async with connect(...) as host: ...``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import TracebackType

from allmende.errors import CommandFailed, CommandTimedOut, InternalError, ToolMissing, UserError
from allmende.execute import masked, tail

log = logging.getLogger(__name__)

#: How long a program on a host may run, in seconds, unless a caller says otherwise (bringing
#: a service up may pull images).
TIMEOUT = 900.0
#: The exit status of a shell (and of SSH) when the program does not exist.
NOT_FOUND = 127

#: The suffix of the copy ``keep_previous`` makes of a file before it is replaced.
PREVIOUS = ".allmende-prev"


@dataclass(frozen=True)
class FileStat:
    """What a host says about one regular file: permission bits, owner, and content hash."""

    mode: int
    uid: int
    gid: int
    sha256: str


@dataclass(frozen=True)
class Ran:
    """What a program run on a host returned."""

    exit: int
    stdout: bytes
    stderr: bytes


def env_prefix(env: Mapping[str, str]) -> list[str]:
    """Return the words that run a program with ``env`` added to its environment through
    env(1): over SSH and inside a container the variables cannot be passed on otherwise
    (sshd passes on only those its AcceptEnv names; ``incus exec --env`` would put them on the
    parent's command line)."""
    return ["env", *(f"{k}={v}" for k, v in sorted(env.items()))] if env else []


def under(root: str, path: str) -> str:
    """Given a root standing in for ``/`` and an absolute host path, return where the path
    sits under that root. Raise InternalError for a relative path or one leaving the root."""
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts:
        raise InternalError(f"not an absolute, normalised host path: {path!r}")
    if root in ("", "/"):
        return str(pure)
    return str(PurePosixPath(root).joinpath(*pure.parts[1:]))


def temp_beside(path: str) -> str:
    """Return the temp file a new ``path`` is written to before the rename:
    ``.<name>.allmende-tmp`` in the same directory."""
    pure = PurePosixPath(path)
    return str(pure.with_name(f".{pure.name}.allmende-tmp"))


def write_error(
    host: str, where: str, what: str, path: str, number: int | None, reason: str
) -> UserError:
    """Translate an OS error number from writing on a host into a UserError saying what it
    means for the apply."""
    place = f"{host} ({where})"
    if number == errno.ENOSPC:
        return UserError(f"disk full on {host} ({where}) while {what} {path}: nothing was replaced")
    if number == errno.EDQUOT:
        return UserError(f"{place}: disk quota exceeded while {what} {path}: nothing was replaced")
    if number in (errno.EACCES, errno.EPERM):
        return UserError(
            f"{place}: permission denied while {what} {path} (does the SSH user own it, or "
            "should it log in as root?)"
        )
    if number == errno.EROFS:
        return UserError(f"{place}: read-only file system while {what} {path}")
    return UserError(f"{place}: cannot finish {what} {path}: {reason}")


def link_error(host: str, where: str, path: str) -> UserError:
    """Return the UserError for a symbolic link met on a host at ``path``: allmende follows
    none there."""
    return UserError(
        f"{host} ({where}): {path} is a symbolic link: allmende follows no link on a host (a "
        "container that can write there may have planted it to read or overwrite another "
        "file); look at where it points, remove it, and apply again"
    )


def irregular_error(host: str, where: str, path: str) -> UserError:
    """Return the UserError for something other than a regular file (a directory, a FIFO, a
    device) met on a host where allmende reads or writes a file."""
    return UserError(f"{host} ({where}): {path} is not a regular file")


class Connector:
    """Base of the connectors: one host, reached one way. Subclasses override every method."""

    #: The host's name in the inventory.
    host: str
    #: How it is reached, for messages (``local``, ``root@203.0.113.5:22``).
    where: str = ""
    #: The directory standing in for ``/`` on the host (``/`` in production).
    root: str = "/"

    def real(self, path: str) -> str:
        """Return where the host path ``path`` really is on the host (under ``root``), for
        programs run there."""
        return under(self.root, path)

    async def open(self) -> None:
        """Reach the host. Raise UserError if it cannot be reached or trusted."""

    async def close(self) -> None:
        """Let go of the host; safe to call twice."""

    async def read(self, path: str) -> bytes | None:
        """Return the content of a file on the host, or None if there is none. Raise UserError
        if it or a directory on its way is a symbolic link (none is followed), or it is not a
        regular file."""
        raise NotImplementedError

    async def stat(self, path: str) -> FileStat | None:
        """Return the mode, owner and sha256 of a regular file on the host, or None if there is
        none. Raise UserError if the path is something else (a directory, a FIFO), a symbolic
        link or below one, or unreadable."""
        raise NotImplementedError

    async def stat_many(self, paths: Sequence[str]) -> list[FileStat | None]:
        """Return ``stat`` of each of ``paths``, in their order; a connector that can asks the
        host once for all of them. Raise the UserError ``stat`` raises for the first path
        (in order) that is not a regular file or is unreadable."""
        found = await asyncio.gather(*(self.stat(p) for p in paths), return_exceptions=True)
        for result in found:
            if isinstance(result, BaseException):
                raise result
        return [r for r in found if not isinstance(r, BaseException)]

    async def list_files(self, root: str) -> list[str]:
        """Return the absolute host paths of the regular files under ``root`` (recursively),
        sorted; empty when ``root`` does not exist. Symbolic links are neither listed nor
        followed."""
        raise NotImplementedError

    async def run(
        self,
        argv: Sequence[str],
        input: bytes | None = None,
        *,
        ok: Collection[int] | None = (0,),
        timeout: float | None = TIMEOUT,
        secrets: Sequence[str] = (),
        what: str = "",
        env: Mapping[str, str] | None = None,
    ) -> Ran:
        """Run a program on the host from an argument list, with ``input`` on its standard
        input (else none), and return what it did when its exit status is in ``ok`` (None:
        any status). ``secrets`` are masked wherever the command or its output is shown;
        ``what`` says what the command was for, in its failure (``up wiki``). ``env`` adds
        variables to the program's environment; their values are no secrets (over SSH they
        travel in the command line, as ``env NAME=VALUE program ...``): pass a secret on
        standard input instead (``BORG_PASSPHRASE_FD=0``).

        Raise ToolMissing if the program is not installed there, CommandTimedOut if it runs
        longer than ``timeout`` seconds, CommandFailed (naming host, command, exit status and
        the tail of its output) for any other status outside ``ok``, UserError if the host
        cannot run it at all.
        """
        if env:
            bad = [n for n in env if not n or "=" in n or not n.replace("_", "a").isalnum()]
            if bad:
                raise InternalError(f"not an environment variable name: {bad[0]!r}")
        shown = masked(argv, secrets)
        doing = f"{self.host}: {what}: " if what else f"{self.host}: "
        log.debug("%s: running %s", self.host, shown)
        started = time.monotonic()
        try:
            ran = await self._spawn(argv, input, timeout, dict(env or {}))
        except TimeoutError:
            raise CommandTimedOut(
                f"{doing}`{shown}` did not finish within {timeout or 0:.0f} s",
                host=self.host,
                argv=[masked(a, secrets) for a in argv],
            ) from None
        log.debug(
            "%s: %s exited %d after %.2f s",
            self.host,
            argv[0],
            ran.exit,
            time.monotonic() - started,
        )
        missing = ran.exit == NOT_FOUND
        if (ok is None and not missing) or (ok is not None and ran.exit in ok):
            return ran
        said = tail(ran.stdout, ran.stderr, secrets)
        kind, message = (
            (ToolMissing, f"{doing}`{argv[0]}` is not installed there (exit 127 from `{shown}`)")
            if missing
            else (CommandFailed, f"{doing}`{shown}` failed (exit {ran.exit}):\n{said}")
        )
        words = [masked(a, secrets) for a in argv]
        raise kind(message, host=self.host, argv=words, exit=ran.exit, output=said)

    async def succeeds(self, argv: Sequence[str], timeout: float | None = 60.0) -> bool:
        """Run a probe (``test -d ...``, ``docker compose version``) and return whether it
        exited 0; a program that is not installed is a no."""
        try:
            return (await self.run(argv, ok=None, timeout=timeout)).exit == 0
        except ToolMissing:
            return False

    async def _spawn(
        self,
        argv: Sequence[str],
        input: bytes | None,
        timeout: float | None,
        env: Mapping[str, str],
    ) -> Ran:
        """Start the program on the host, its environment extended by ``env``, and return
        what it did; exit 127 when the program does not exist there. Raise TimeoutError after
        ``timeout`` seconds, UserError when the host cannot run anything."""
        raise NotImplementedError

    async def write_temp(
        self, path: str, data: bytes, mode: int, owner: tuple[int, int] | None = None
    ) -> str:
        """Write ``data`` with ``mode`` (and ``owner``, (uid, gid), if given) to the temp file
        beside ``path`` (``temp_beside``), creating missing directories, flushed to disk;
        return the temp's host path. Nothing live changes, and nothing is written through a
        symbolic link (a link on the way is refused, one at the temp's place replaced). Raise
        UserError (a link, disk full,
        permission denied ...), leaving no temp."""
        raise NotImplementedError

    async def rename(self, source: str, target: str) -> None:
        """Atomically replace ``target`` by ``source`` (same directory). Raise UserError."""
        raise NotImplementedError

    async def write_atomic(self, path: str, data: bytes, mode: int) -> None:
        """Replace ``path`` by ``data`` with ``mode`` atomically: temp file beside it, fsync,
        rename. A reader sees the old file or the new one, never a part. Raise UserError."""
        temp = await self.write_temp(path, data, mode)
        try:
            await self.rename(temp, path)
        except UserError:
            await self.remove(temp)
            raise

    async def remove(self, path: str) -> None:
        """Delete the file ``path`` if it exists. Raise UserError if it cannot be deleted."""
        raise NotImplementedError

    async def keep_previous(self, path: str) -> None:
        """Copy the current ``path`` (if any) to ``path + PREVIOUS`` with its mode, atomically,
        so the file can be rolled back after it is replaced. Raise UserError."""
        data = await self.read(path)
        if data is None:
            return
        found = await self.stat(path)
        if found is None:
            return
        temp = await self.write_temp(path + PREVIOUS, data, found.mode, (found.uid, found.gid))
        try:
            await self.rename(temp, path + PREVIOUS)
        except UserError:
            await self.remove(temp)
            raise

    async def make_dir(self, path: str) -> bool:
        """Create the directory ``path`` (and missing parents) atomically: return True if this
        call created it, False if it already existed. Raise UserError otherwise, and for a
        symbolic link at ``path`` or on its way (nothing is created through one)."""
        raise NotImplementedError

    async def remove_dir(self, path: str) -> None:
        """Delete the empty directory ``path`` if it exists. Raise UserError."""
        raise NotImplementedError

    async def remove_tree(self, path: str) -> None:
        """Delete the directory ``path`` and all in it, if it exists (links in it are removed,
        never followed). Raise UserError if it cannot be deleted."""
        await self.run(["rm", "-r", "-f", "--", self.real(path)], timeout=300.0)

    async def __aenter__(self) -> Connector:
        await self.open()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
