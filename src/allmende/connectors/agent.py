"""The file helper on an SSH host: ``onhost.files`` run by the host's ``python3``.

SFTP cannot open a file without following symbolic links, so where the host has ``python3``
every file operation goes to one long-lived ``python3 -I -c <onhost/files.py> ROOT`` per
connection instead: requests are written as JSON lines without waiting for the answers (many
at once cost one round trip), and the answers come back in the same order. It is started by
the connector like its SFTP session, not through ``Connector.run``: it is file access, not a
program whose exit status means anything.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import shlex
from typing import Any

import asyncssh

from allmende import onhost
from allmende.connectors.base import NOT_FOUND
from allmende.onhost import files

log = logging.getLogger(__name__)


class AgentGone(Exception):
    """The helper ended before answering; ``said`` is the tail of what it wrote on stderr."""

    def __init__(self, status: int | None, said: str) -> None:
        super().__init__(f"exit {status}: {said}")
        self.status = status
        self.said = said


class Agent:
    """One running file helper: ``ask`` sends a request and waits for its answer."""

    def __init__(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        self._process = process
        self._waiting: collections.deque[asyncio.Future[dict[str, Any]]] = collections.deque()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(
        cls,
        connection: asyncssh.SSHClientConnection,
        root: str,
        python: tuple[str, ...] = ("python3",),
    ) -> Agent | None:
        """Start the helper for files under ``root`` and return it once it answers; None when
        the host has no ``python``. Raise AgentGone if it starts but does not answer."""
        argv = [*python, *onhost.command("files", root)[1:]]
        process = await connection.create_process(shlex.join(argv), encoding=None)
        agent = cls(process)
        try:
            hello = await agent.ask({"op": "hello"})
        except AgentGone as gone:
            if gone.status == NOT_FOUND:
                return None
            raise
        if hello.get("ok") != files.VERSION:
            await agent.close()
            raise AgentGone(None, f"unexpected answer {hello!r}")
        return agent

    async def _read(self) -> None:
        # Read chunks and cut lines here: asyncssh's readline waits for the newline without
        # consuming, so a line longer than the channel's window (2 MiB) would never come.
        pending = bytearray()
        try:
            while True:
                chunk = await self._process.stdout.read(1 << 20)
                if not chunk:
                    break
                start = len(pending)
                pending += chunk
                while (end := pending.find(b"\n", start)) >= 0:
                    future = self._waiting.popleft()
                    if not future.done():
                        future.set_result(json.loads(pending[:end]))
                    del pending[: end + 1]
                    start = 0
        except (asyncssh.Error, OSError, ValueError, IndexError) as exc:
            log.debug("the file helper's answers ended: %s", exc)
        await self._process.wait_closed()
        said = b""
        with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
            said = await asyncio.wait_for(self._process.stderr.read(), 1.0)
        gone = AgentGone(self._process.exit_status, said.decode(errors="replace")[-500:])
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(gone)

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request; return its answer. Raise AgentGone if the helper ended."""
        if self._reader.done():
            raise AgentGone(self._process.exit_status, "it ended before")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._process.stdin.write(json.dumps(request).encode() + b"\n")
        return await future

    async def close(self) -> None:
        """End the helper (its stdin closes) and wait for it."""
        with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
            if not self._reader.done():
                self._process.stdin.write_eof()
                await asyncio.wait_for(asyncio.shield(self._reader), 5.0)
        self._process.close()


def encode(data: bytes) -> str:
    """Return bytes as the text a request carries them in."""
    return base64.b64encode(data).decode()


def decode(text: str) -> bytes:
    """Return the bytes an answer carries as text."""
    return base64.b64decode(text)
