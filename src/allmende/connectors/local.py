"""The machine allmende runs on: files through ``onhost.files`` (no symbolic link followed),
programs through ``allmende.execute``.

``ALLMENDE_HOST_ROOT`` (for tests and staging) names a directory that stands in for ``/``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from allmende import execute
from allmende.connectors.base import (
    NOT_FOUND,
    Connector,
    FileStat,
    Ran,
    irregular_error,
    link_error,
    temp_beside,
    under,
    write_error,
)
from allmende.errors import CommandTimedOut, ToolMissing, UserError
from allmende.onhost import files

T = TypeVar("T")


class LocalConnector(Connector):
    """The local machine, optionally with another directory standing in for ``/``. Files go
    through ``onhost.files``: no symbolic link below the root is ever followed."""

    def __init__(self, host: str, root: str = "/") -> None:
        self.host = host
        self.root = root
        self.where = "local" if root in ("", "/") else f"local, root {root}"

    def _root(self) -> str:
        return self.root or "/"

    def _call(self, doing: str, path: str, operation: Callable[..., T], *args: Any) -> T:
        """Run ``operation(root, *args)`` of ``onhost.files``, translating its errors."""
        try:
            return operation(self.root or "/", *args)
        except files.Link as exc:
            raise link_error(self.host, self.where, exc.path) from None
        except files.Irregular as exc:
            raise irregular_error(self.host, self.where, exc.path) from None
        except OSError as exc:
            if doing == "reading":
                raise UserError(
                    f"{self.host} ({self.where}): cannot read {path}: {exc.strerror}"
                ) from None
            raise write_error(
                self.host, self.where, doing, path, exc.errno, exc.strerror or str(exc)
            ) from None

    async def read(self, path: str) -> bytes | None:
        under(self.root, path)
        return self._call("reading", path, files.read, path)

    async def stat(self, path: str) -> FileStat | None:
        under(self.root, path)
        found = self._call("reading", path, files.stat_file, path)
        return None if found is None else FileStat(**found)

    async def list_files(self, root: str) -> list[str]:
        return self._call("reading", root, files.list_files, root)

    async def _spawn(
        self,
        argv: Sequence[str],
        input: bytes | None,
        timeout: float | None,
        env: Mapping[str, str],
    ) -> Ran:
        extended = {**os.environ, **env} if env else None
        try:
            done = await asyncio.to_thread(
                execute.run, list(argv), input=input, env=extended, check=False, timeout=timeout
            )
        except ToolMissing as exc:
            return Ran(NOT_FOUND, b"", str(exc).encode())
        except CommandTimedOut:
            raise TimeoutError from None
        return Ran(done.returncode, done.stdout, done.stderr)

    async def write_temp(
        self, path: str, data: bytes, mode: int, owner: tuple[int, int] | None = None
    ) -> str:
        temp = temp_beside(path)
        under(self.root, temp)
        self._call("writing", path, files.write, temp, data, mode, owner)
        return temp

    async def rename(self, source: str, target: str) -> None:
        under(self.root, source)
        under(self.root, target)
        self._call("replacing", target, files.rename, source, target)

    async def remove(self, path: str) -> None:
        under(self.root, path)
        self._call("deleting", path, files.remove, path)

    async def make_dir(self, path: str) -> bool:
        under(self.root, path)
        return self._call("creating", path, files.make_dir, path)

    async def remove_dir(self, path: str) -> None:
        under(self.root, path)
        self._call("deleting", path, files.remove_dir, path)
