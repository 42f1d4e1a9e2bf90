"""The machine allmende runs on: files through Python, programs through ``allmende.execute``.

``ALLMENDE_HOST_ROOT`` (for tests and staging) names a directory that stands in for ``/``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from allmende import execute
from allmende.connectors.base import Connector, FileStat, Ran, under
from allmende.errors import UserError


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

    async def run(self, argv: Sequence[str]) -> Ran:
        done = await asyncio.to_thread(execute.run, list(argv), check=False)
        return Ran(done.returncode, done.stdout, done.stderr)
