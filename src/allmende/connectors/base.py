"""What every connector offers: read, stat and list files of a host, and run a program on it.

A connector reaches one host (pyinfra's ``connectors/base.py`` is the model). Paths are the
absolute paths the files have on that host (``/srv/wiki/compose.yaml``); a connector may sit
them under another root for tests and staging (``ALLMENDE_HOST_ROOT`` for the local machine,
``ALLMENDE_REMOTE_ROOT`` over SSH). Programs run with argument lists only, never shell text,
and are not affected by that root. Every foreign exception is translated into
``allmende.errors`` here, so callers only ever see a ``UserError`` (or a bug).

Use a connector as an async context manager: ``async with connect(...) as host: ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import TracebackType

from allmende.errors import InternalError


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


def under(root: str, path: str) -> str:
    """Given a root standing in for ``/`` and an absolute host path, return where the path
    sits under that root. Raise InternalError for a relative path or one leaving the root."""
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts:
        raise InternalError(f"not an absolute, normalised host path: {path!r}")
    if root in ("", "/"):
        return str(pure)
    return str(PurePosixPath(root).joinpath(*pure.parts[1:]))


class Connector:
    """Base of the connectors: one host, reached one way. Subclasses override every method."""

    #: The host's name in the inventory.
    host: str
    #: How it is reached, for messages (``local``, ``root@203.0.113.5:22``).
    where: str = ""

    async def open(self) -> None:
        """Reach the host. Raise UserError if it cannot be reached or trusted."""

    async def close(self) -> None:
        """Let go of the host; safe to call twice."""

    async def read(self, path: str) -> bytes | None:
        """Return the content of a file on the host, or None if there is none."""
        raise NotImplementedError

    async def stat(self, path: str) -> FileStat | None:
        """Return the mode, owner and sha256 of a regular file on the host, or None if there is
        none. Raise UserError if the path is something else (a directory) or unreadable."""
        raise NotImplementedError

    async def list_files(self, root: str) -> list[str]:
        """Return the absolute host paths of the regular files under ``root`` (recursively),
        sorted; empty when ``root`` does not exist."""
        raise NotImplementedError

    async def run(self, argv: Sequence[str]) -> Ran:
        """Run a program on the host from an argument list and return what it did."""
        raise NotImplementedError

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
