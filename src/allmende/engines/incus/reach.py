"""A container on an Incus host, reached through ``incus exec`` on that host.

The art school's HAProxy runs in a container on the Mac Pro that has no SSH server of its own:
allmende reaches it the way its admin does, ``incus exec gateway -- ...`` on the Mac Pro (which
is reached as its own host file says: here, or over SSH). Programs run with ``incus exec NAME
--`` in front; files are read and written by small fixed shell commands run there (``cat``,
``mv``, ``mkdir``...; every image has them), hashed with ``allmende.onhost.files`` where the
container has python3, else with ``stat`` and ``sha256sum``. The parent's exit statuses come
back as they are (``incus exec`` passes them on; 127 when the program is not there).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from allmende import onhost
from allmende.connectors.base import Connector, FileStat, Ran, env_prefix, temp_beside
from allmende.errors import CommandFailed, ToolMissing, Unreachable, UserError

#: Exit status of the small commands below for "there is nothing" (not an error).
NOTHING = 3

READ = '[ -e "$1" ] || exit 3; exec cat -- "$1"'
WRITE = (
    'set -e; umask 077; mkdir -p "$(dirname "$1")"; cat > "$1"; chmod "$2" "$1"; '
    'sync "$1" 2>/dev/null || sync'
)
MAKE_DIR = (
    'mkdir -p "$(dirname "$1")"; mkdir "$1" 2>/dev/null && exit 0; [ -d "$1" ] && exit 3; exit 1'
)
REMOVE_DIR = '[ -d "$1" ] || exit 0; exec rmdir -- "$1"'
STAT = (
    'for f; do if [ -f "$f" ]; then printf "%s %s\\n" "$(stat -c "%a %u %g" -- "$f")" '
    '"$(sha256sum < "$f" | cut -d" " -f1)"; elif [ -e "$f" ]; then echo irregular; '
    "else echo absent; fi; done"
)


class IncusExecConnector(Connector):
    """The container ``host`` on the Incus host ``parent`` (a connector, not yet opened)."""

    def __init__(self, parent: Connector, host: str) -> None:
        self.parent = parent
        self.host = host
        self.where = f"incus exec {host} on {parent.host}"

    async def open(self) -> None:
        await self.parent.open()
        found = await self.parent.run(
            ("incus", "query", f"/1.0/instances/{self.host}"), ok=None, timeout=60.0
        )
        state = json.loads(found.stdout or b"{}").get("status") if found.exit == 0 else None
        if state is None:
            await self.parent.close()
            raise Unreachable(
                self.host,
                f"{self.host} ({self.where}): there is no container {self.host} on "
                f"{self.parent.host} yet: apply {self.parent.host} first, which makes it",
            )
        if str(state).lower() != "running":
            await self.parent.close()
            raise Unreachable(
                self.host,
                f"{self.host} ({self.where}): the container is {str(state).lower()}; start it "
                f"(`incus start {self.host}` on {self.parent.host}) or apply {self.parent.host}",
            )

    async def close(self) -> None:
        await self.parent.close()

    async def _spawn(
        self,
        argv: Sequence[str],
        input: bytes | None,
        timeout: float | None,
        env: Mapping[str, str],
    ) -> Ran:
        prefix = env_prefix(env)
        return await self.parent._spawn(
            ("incus", "exec", self.host, "--", *prefix, *argv), input, timeout, {}
        )

    async def _sh(self, script: str, *args: str, input: bytes | None = None) -> Ran:
        return await self.run(("sh", "-c", script, "sh", *args), input, ok=(0, NOTHING))

    async def read(self, path: str) -> bytes | None:
        ran = await self._sh(READ, path)
        return None if ran.exit == NOTHING else ran.stdout

    async def stat(self, path: str) -> FileStat | None:
        return (await self.stat_many([path]))[0]

    async def stat_many(self, paths: Sequence[str]) -> list[FileStat | None]:
        if not paths:
            return []
        requests = "".join(json.dumps({"op": "stat", "path": p}) + "\n" for p in paths)
        try:
            ran = await self.run(onhost.command("files", "/"), input=requests.encode())
        except ToolMissing:
            return await self._stat_by_shell(paths)
        found: list[FileStat | None] = []
        for path, answer in zip(paths, ran.stdout.splitlines(), strict=True):
            reply = json.loads(answer)
            if "error" in reply:
                raise UserError(f"{self.host} ({self.where}): cannot read {path}: {reply}")
            item = reply["ok"]
            found.append(
                None
                if item is None
                else FileStat(item["mode"], item["uid"], item["gid"], item["sha256"])
            )
        return found

    async def _stat_by_shell(self, paths: Sequence[str]) -> list[FileStat | None]:
        ran = await self._sh(STAT, *paths)
        found: list[FileStat | None] = []
        for path, answer in zip(paths, ran.stdout.decode().splitlines(), strict=True):
            if answer == "absent":
                found.append(None)
            elif answer == "irregular":
                raise UserError(f"{self.host} ({self.where}): {path} is not a regular file")
            else:
                mode, uid, gid, digest = answer.split()
                found.append(FileStat(int(mode, 8), int(uid), int(gid), digest))
        return found

    async def list_files(self, root: str) -> list[str]:
        ran = await self._sh('[ -d "$1" ] || exit 0; exec find "$1" -type f', root)
        return sorted(line for line in ran.stdout.decode().splitlines() if line)

    async def write_temp(
        self, path: str, data: bytes, mode: int, owner: tuple[int, int] | None = None
    ) -> str:
        temp = temp_beside(path)
        try:
            await self._sh(WRITE, temp, f"{mode:o}", input=data)
            if owner is not None:
                await self.run(("chown", f"{owner[0]}:{owner[1]}", "--", temp))
        except CommandFailed as exc:
            await self.run(("rm", "-f", "--", temp), ok=None)
            raise UserError(
                f"{self.host} ({self.where}): cannot write {path}: {exc.output}"
            ) from None
        return temp

    async def rename(self, source: str, target: str) -> None:
        await self.run(("mv", "-f", "--", source, target))

    async def remove(self, path: str) -> None:
        await self.run(("rm", "-f", "--", path))

    async def make_dir(self, path: str) -> bool:
        return (await self._sh(MAKE_DIR, path)).exit == 0

    async def remove_dir(self, path: str) -> None:
        await self._sh(REMOVE_DIR, path)
