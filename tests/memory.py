"""One in-memory host for the unit tests: files in a dict, programs answered by a script.

``MemoryHost`` is a real ``Connector`` (only ``_spawn`` and the file primitives are its own), so
``Connector.run`` reads exit statuses exactly as it does for the local machine and SSH. Files
are ``path -> (content, mode)``; a program is answered by the first entry of ``programs`` whose
key is a prefix of its argument list (a ``Ran``, or a function of the argument list and stdin
returning one); anything else exits 127, as a shell does for a program that is not there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePosixPath

from allmende.connectors.base import Connector, FileStat, Ran, temp_beside
from allmende.errors import Unreachable

Answer = Ran | Callable[[tuple[str, ...], bytes | None], Ran]


class MemoryHost(Connector):
    """A host held in memory; unreachable when ``down``."""

    def __init__(
        self,
        host: str,
        files: Mapping[str, tuple[bytes, int]] | None = None,
        programs: Mapping[tuple[str, ...], Answer] | None = None,
        *,
        down: bool = False,
    ) -> None:
        self.host = host
        self.where = "memory"
        self.files: dict[str, tuple[bytes, int]] = dict(files or {})
        self.owners: dict[str, tuple[int, int]] = {}
        self.dirs: set[str] = {"/"}
        for path in self.files:
            self._parents(path)
        self.programs: dict[tuple[str, ...], Answer] = dict(programs or {})
        self.down = down
        self.ran: list[tuple[str, ...]] = []
        #: The ``env`` of each run, in the order of ``ran``.
        self.envs: list[dict[str, str]] = []
        self.reads: list[str] = []
        self.opened = self.closed = False

    # ------------------------------------------------------------------ reaching it

    async def open(self) -> None:
        if self.down:
            raise Unreachable(self.host, f"{self.host} (memory): connection refused")
        self.opened = True

    async def close(self) -> None:
        self.closed = True

    # ------------------------------------------------------------------ programs

    def answer(self, prefix: Sequence[str], answer: Answer) -> None:
        """Answer every command starting with ``prefix`` with ``answer``."""
        self.programs[tuple(prefix)] = answer

    async def _spawn(
        self,
        argv: Sequence[str],
        input: bytes | None,
        timeout: float | None,
        env: Mapping[str, str],
    ) -> Ran:
        command = tuple(argv)
        self.ran.append(command)
        self.envs.append(dict(env))
        for prefix in sorted(self.programs, key=len, reverse=True):
            if command[: len(prefix)] == prefix:
                found = self.programs[prefix]
                return found(command, input) if callable(found) else found
        return Ran(127, b"", f"sh: {argv[0]}: not found".encode())

    # ------------------------------------------------------------------ files

    def text(self, path: str) -> str:
        """Return the content of a file on the host as text (KeyError if there is none)."""
        return self.files[path][0].decode()

    async def read(self, path: str) -> bytes | None:
        self.reads.append(path)
        found = self.files.get(path)
        return found[0] if found else None

    async def stat(self, path: str) -> FileStat | None:
        found = self.files.get(path)
        if found is None:
            return None
        uid, gid = self.owners.get(path, (0, 0))
        return FileStat(found[1], uid, gid, hashlib.sha256(found[0]).hexdigest())

    async def list_files(self, root: str) -> list[str]:
        return sorted(p for p in self.files if p.startswith(root.rstrip("/") + "/"))

    def _parents(self, path: str) -> None:
        for parent in PurePosixPath(path).parents:
            self.dirs.add(str(parent))

    async def write_temp(
        self, path: str, data: bytes, mode: int, owner: tuple[int, int] | None = None
    ) -> str:
        temp = temp_beside(path)
        self._parents(temp)
        self.files[temp] = (data, mode)
        self.owners[temp] = owner or (0, 0)
        return temp

    async def rename(self, source: str, target: str) -> None:
        self.files[target] = self.files.pop(source)
        self.owners[target] = self.owners.pop(source, (0, 0))

    async def remove(self, path: str) -> None:
        self.files.pop(path, None)

    async def make_dir(self, path: str) -> bool:
        if path in self.dirs:
            return False
        self._parents(path)
        self.dirs.add(path)
        return True

    async def remove_dir(self, path: str) -> None:
        self.dirs.discard(path)

    async def remove_tree(self, path: str) -> None:
        inside = path.rstrip("/") + "/"
        for name in [p for p in self.files if p.startswith(inside)]:
            del self.files[name]
        self.dirs = {d for d in self.dirs if d != path and not d.startswith(inside)}
