"""The machine allmende runs on: files through Python, programs through ``allmende.execute``.

``ALLMENDE_HOST_ROOT`` (for tests and staging) names a directory that stands in for ``/``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from allmende import execute
from allmende.connectors.base import (
    NOT_FOUND,
    Connector,
    FileStat,
    Ran,
    temp_beside,
    under,
    write_error,
)
from allmende.errors import CommandTimedOut, ToolMissing, UserError


class LocalConnector(Connector):
    """The local machine, optionally with another directory standing in for ``/``."""

    def __init__(self, host: str, root: str = "/") -> None:
        self.host = host
        self.root = root
        self.where = "local" if root in ("", "/") else f"local, root {root}"

    def _path(self, path: str) -> Path:
        return Path(under(self.root, path))

    def _fail(self, path: str, exc: OSError) -> UserError:
        return UserError(f"{self.host} ({self.where}): cannot read {path}: {exc.strerror}")

    async def read(self, path: str) -> bytes | None:
        try:
            return self._path(path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._fail(path, exc) from None

    async def stat(self, path: str) -> FileStat | None:
        local = self._path(path)
        try:
            info = local.stat()
            if not stat.S_ISREG(info.st_mode):
                raise UserError(f"{self.host} ({self.where}): {path} is not a regular file")
            digest = hashlib.sha256(local.read_bytes()).hexdigest()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._fail(path, exc) from None
        return FileStat(stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, digest)

    async def list_files(self, root: str) -> list[str]:
        base = self._path(root)
        found: list[str] = []
        for directory, _, names in os.walk(base):
            for name in names:
                local = Path(directory) / name
                if local.is_file():
                    found.append("/" + str(local.relative_to(self._path("/"))))
        return sorted(found)

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

    def _write_fail(self, what: str, path: str, exc: OSError) -> UserError:
        return write_error(self.host, self.where, what, path, exc.errno, exc.strerror or str(exc))

    async def write_temp(self, path: str, data: bytes, mode: int) -> str:
        temp = temp_beside(path)
        local = self._path(temp)
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(descriptor, mode)
                view = memoryview(data)
                while view:
                    view = view[os.write(descriptor, view) :]
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        except OSError as exc:
            local.unlink(missing_ok=True)
            raise self._write_fail("writing", path, exc) from None
        return temp

    async def rename(self, source: str, target: str) -> None:
        try:
            self._path(source).replace(self._path(target))
            directory = os.open(self._path(target).parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise self._write_fail("replacing", target, exc) from None

    async def remove(self, path: str) -> None:
        try:
            self._path(path).unlink(missing_ok=True)
        except OSError as exc:
            raise self._write_fail("deleting", path, exc) from None

    async def make_dir(self, path: str) -> bool:
        local = self._path(path)
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            local.mkdir()
        except FileExistsError:
            return False
        except OSError as exc:
            raise self._write_fail("creating", path, exc) from None
        return True

    async def remove_dir(self, path: str) -> None:
        try:
            self._path(path).rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._write_fail("deleting", path, exc) from None
