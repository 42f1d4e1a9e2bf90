"""Hosts reached over SSH, with asyncssh.

Key authentication only: the key named by ``ALLMENDE_SSH_KEY``, else the keys in ``~/.ssh`` and
the SSH agent. Host keys are verified against a known_hosts file (``ALLMENDE_KNOWN_HOSTS``,
else ``~/.ssh/known_hosts``); an unknown or changed host key is refused. ``~/.ssh/config`` is
not read: the inventory says how a host is reached. Files are read and written by one
``python3`` helper per connection on the host (``connectors.agent`` running ``onhost.files``),
which follows no symbolic link and answers many requests in one round trip; where the host has
no python3, over SFTP, checking with ``lstat`` just before each operation that no component of
the path is a link. ``ALLMENDE_REMOTE_ROOT`` (for tests and staging) names a
directory on the host that stands in for ``/``. ``ALLMENDE_SSH_TIMEOUT`` is the connect
timeout in seconds (default 10).

Every asyncssh and OS exception is translated into a UserError here, naming the host, where it
was reached, and what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import shlex
import socket
import stat
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import asyncssh

from allmende.connectors.agent import Agent, AgentGone, decode, encode
from allmende.connectors.base import (
    Connector,
    FileStat,
    Ran,
    env_prefix,
    irregular_error,
    link_error,
    temp_beside,
    under,
    write_error,
)
from allmende.connectors.hostkeys import host_key_problem, keyscan, known_hosts_path
from allmende.errors import HostError, Unreachable, UserError

log = logging.getLogger(__name__)


class SshConnector(Connector):
    """One host reached over SSH as ``user@address:port``."""

    #: The command that runs the file helper (``connectors.agent``) on the host.
    python: tuple[str, ...] = ("python3",)

    def __init__(
        self, host: str, address: str, user: str, port: int, env: Mapping[str, str]
    ) -> None:
        self.host = host
        self.address = address
        self.user = user
        self.port = port
        self.root = env.get("ALLMENDE_REMOTE_ROOT") or "/"
        self.key = env.get("ALLMENDE_SSH_KEY") or None
        self.known_hosts = known_hosts_path(env)
        self.timeout = float(env.get("ALLMENDE_SSH_TIMEOUT") or 10)
        self.where = f"{user}@{address}:{port}"
        self._connection: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._sftp_starting = asyncio.Lock()
        self._agent: Agent | None = None
        self._agent_tried = False
        self._agent_starting = asyncio.Lock()

    # ------------------------------------------------------------------ connecting

    def _error(self, what: str, hint: str = "") -> HostError:
        tail = f" ({hint})" if hint else ""
        return HostError(self.host, f"{self.host} ({self.where}): {what}{tail}")

    def _unreachable(self, what: str, hint: str = "") -> Unreachable:
        tail = f" ({hint})" if hint else ""
        return Unreachable(self.host, f"{self.host} ({self.where}): {what}{tail}")

    def _keyscan(self) -> str:
        return keyscan(self.address, self.port, self.known_hosts)

    async def open(self) -> None:
        if not self.known_hosts.is_file():
            raise self._unreachable(
                f"no known_hosts file at {self.known_hosts} to check the host key against",
                f"check the host's key fingerprint, then add it: {self._keyscan()}",
            )
        options: dict[str, object] = {}
        if self.key:
            options["client_keys"] = [self.key]
            options["agent_path"] = None
        try:
            self._connection = await asyncssh.connect(
                self.address,
                port=self.port,
                username=self.user,
                known_hosts=str(self.known_hosts),
                config=None,
                connect_timeout=self.timeout,
                **options,
            )
        except asyncssh.HostKeyNotVerifiable:
            raise await self._host_key_error() from None
        except asyncssh.PermissionDenied:
            raise self._unreachable(
                f"the login as `{self.user}` was refused: no key was accepted",
                f"check ssh.user in hosts/{self.host}.yaml and that the public key of "
                f"{self.key or 'your ~/.ssh key'} is in ~{self.user}/.ssh/authorized_keys "
                "on the host",
            ) from None
        except ConnectionRefusedError:
            raise self._unreachable(
                "connection refused", "is sshd running there, and is ssh.port right?"
            ) from None
        except TimeoutError:
            raise self._unreachable(
                f"no answer within {self.timeout:g} s",
                "is the host up, the address right, and the port open in its firewall?",
            ) from None
        except socket.gaierror as exc:
            raise self._unreachable(f"cannot resolve {self.address}: {exc.strerror}") from None
        except asyncssh.KeyImportError as exc:
            raise self._unreachable(f"cannot use the SSH key {self.key}: {exc}") from None
        except asyncssh.Error as exc:
            raise self._unreachable(f"SSH failed: {exc.reason}") from None
        except OSError as exc:
            raise self._unreachable(f"cannot connect: {exc.strerror or exc}") from None

    async def _host_key_error(self) -> Unreachable:
        """Say whether the key is unknown or changed, and how to add it once checked."""
        return self._unreachable(
            await host_key_problem(self.address, self.port, self.known_hosts, self.timeout)
        )

    async def close(self) -> None:
        if self._agent is not None:
            await self._agent.close()
            self._agent = None
        if self._sftp is not None:
            self._sftp.exit()
            self._sftp = None
        if self._connection is not None:
            self._connection.close()
            await self._connection.wait_closed()
            self._connection = None

    def _conn(self) -> asyncssh.SSHClientConnection:
        if self._connection is None:
            raise self._error("not connected")
        return self._connection

    async def _again(self) -> None:
        """Connect anew if the connection was lost since it was opened, so that what follows
        a loss (the rollback, the lock's release) still runs once the host answers again.
        Raise Unreachable if it does not."""
        if self._connection is None or not self._connection.is_closed():
            return
        log.warning("%s: the connection was lost; connecting again", self.host)
        self._connection = None
        self._sftp = None
        self._agent = None
        self._agent_tried = False
        await self.open()

    async def _files(self) -> asyncssh.SFTPClient:
        """Return the connection's one SFTP client, started by the first caller (concurrent
        callers wait for it: sshd allows only ``MaxSessions``, default 10, per connection)."""
        async with self._sftp_starting:
            await self._again()
            if self._sftp is None:
                try:
                    self._sftp = await self._conn().start_sftp_client()
                except (asyncssh.Error, OSError) as exc:
                    raise self._error(f"cannot start SFTP: {exc}") from None
            return self._sftp

    # ------------------------------------------------------------------ files

    async def _helper(self) -> Agent | None:
        """Return the connection's file helper (``connectors.agent``), started by the first
        caller; None when the host has no python3 (then files go over SFTP)."""
        async with self._agent_starting:
            await self._again()
            if not self._agent_tried:
                self._agent_tried = True
                try:
                    self._agent = await Agent.start(self._conn(), self.root, self.python)
                except (AgentGone, asyncssh.Error, OSError) as exc:
                    raise self._error(f"cannot start its file helper (python3): {exc}") from None
                if self._agent is None:
                    log.debug("%s: no python3 there: files go over SFTP", self.host)
            return self._agent

    async def _ask(self, doing: str, path: str, request: dict[str, Any]) -> Any:
        """Send ``request`` to the file helper; return its answer's value, its errors
        translated (``doing``: reading, writing, ...)."""
        agent = self._agent
        assert agent is not None
        try:
            answer = await agent.ask(request)
        except AgentGone as gone:
            raise self._error(f"its file helper (python3) ended: {gone}") from None
        if "ok" in answer:
            return answer["ok"]
        kind = answer.get("error")
        if kind == "link":
            raise link_error(self.host, self.where, str(answer.get("path")))
        if kind == "irregular":
            raise irregular_error(self.host, self.where, str(answer.get("path")))
        reason = str(answer.get("reason"))
        if kind == "os" and doing != "reading":
            number = answer.get("errno")
            raise write_error(
                self.host,
                self.where,
                doing,
                path,
                number if isinstance(number, int) else None,
                reason,
            )
        raise self._error(f"cannot read {path}: {reason}")

    async def _no_link(self, path: str, whole: bool = True) -> None:
        """Over SFTP (no python3 on the host): raise UserError if a component of ``path``
        below the root (its directories only, unless ``whole``) is a symbolic link. SFTP
        cannot refuse one while opening, so this is checked just before; the file helper is
        the one that leaves no moment in between."""
        sftp = await self._files()
        parts = PurePosixPath(path).parts[1:]
        for depth in range(len(parts) if whole else len(parts) - 1):
            here = "/" + "/".join(parts[: depth + 1])
            try:
                attrs = await sftp.lstat(under(self.root, here))
            except asyncssh.SFTPNoSuchFile:
                return
            except (asyncssh.Error, OSError) as exc:
                raise self._sftp_error(path, exc) from None
            if stat.S_ISLNK(attrs.permissions or 0):
                raise link_error(self.host, self.where, here)

    def _sftp_error(self, path: str, exc: Exception) -> UserError:
        reason = exc.reason if isinstance(exc, asyncssh.SFTPError) else str(exc)
        return self._error(f"cannot read {path}: {reason}")

    async def read(self, path: str) -> bytes | None:
        remote = under(self.root, path)
        if await self._helper() is not None:
            found = await self._ask("reading", path, {"op": "read", "path": path})
            return None if found is None else decode(found)
        await self._no_link(path)
        sftp = await self._files()
        try:
            attrs = await sftp.stat(remote)
            if not stat.S_ISREG(attrs.permissions or 0):
                raise irregular_error(self.host, self.where, path)
            async with sftp.open(remote, "rb") as handle:
                data: bytes = await handle.read()
                return data
        except asyncssh.SFTPNoSuchFile:
            return None
        except (asyncssh.Error, OSError) as exc:
            raise self._sftp_error(path, exc) from None

    async def stat(self, path: str) -> FileStat | None:
        remote = under(self.root, path)
        if await self._helper() is not None:
            found = await self._ask("reading", path, {"op": "stat", "path": path})
            return None if found is None else FileStat(**found)
        await self._no_link(path)
        sftp = await self._files()
        try:
            attrs = await sftp.stat(remote)
        except asyncssh.SFTPNoSuchFile:
            return None
        except (asyncssh.Error, OSError) as exc:
            raise self._sftp_error(path, exc) from None
        mode = attrs.permissions or 0
        if not stat.S_ISREG(mode):
            raise irregular_error(self.host, self.where, path)
        data = await self.read(path)
        if data is None:
            return None
        digest = hashlib.sha256(data).hexdigest()
        return FileStat(stat.S_IMODE(mode), attrs.uid or 0, attrs.gid or 0, digest)

    async def stat_many(self, paths: Sequence[str]) -> list[FileStat | None]:
        """Ask the file helper about every path at once (one round trip); where there is no
        python3, ``stat`` each file over SFTP."""
        for path in paths:
            under(self.root, path)
        if not paths or await self._helper() is None:
            return await super().stat_many(paths)
        return list(await asyncio.gather(*(self.stat(p) for p in paths)))

    async def list_files(self, root: str) -> list[str]:
        if await self._helper() is not None:
            found: list[str] = await self._ask("reading", root, {"op": "list", "path": root})
            return found
        await self._no_link(root)
        sftp = await self._files()
        base = under(self.root, root)
        prefix = "" if self.root in ("", "/") else self.root.rstrip("/")
        listed: list[str] = []
        pending = [base]
        try:
            while pending:
                directory = pending.pop()
                try:
                    entries = await sftp.readdir(directory)
                except asyncssh.SFTPNoSuchFile:
                    continue
                for entry in entries:
                    name = str(entry.filename)
                    if name in (".", ".."):
                        continue
                    full = f"{directory.rstrip('/')}/{name}"
                    mode = entry.attrs.permissions or 0
                    if stat.S_ISDIR(mode):
                        pending.append(full)
                    elif stat.S_ISREG(mode):
                        listed.append(full[len(prefix) :] if prefix else full)
        except (asyncssh.Error, OSError) as exc:
            raise self._sftp_error(root, exc) from None
        return sorted(listed)

    async def _spawn(
        self,
        argv: Sequence[str],
        input: bytes | None,
        timeout: float | None,
        env: Mapping[str, str],
    ) -> Ran:
        prefix = env_prefix(env)
        await self._again()
        try:
            # Without input, standard input is empty (as locally): a program that reads it
            # when it is not a terminal (`incus snapshot create`) must not wait for ever.
            stdin = {} if input is not None else {"stdin": asyncssh.DEVNULL}
            done = await self._conn().run(
                shlex.join([*prefix, *argv]),
                check=False,
                encoding=None,
                input=input,
                timeout=timeout,
                **stdin,
            )
        except asyncssh.TimeoutError:
            raise TimeoutError from None
        except (asyncssh.Error, OSError) as exc:
            raise self._unreachable(f"cannot run {argv[0]}: {exc}") from None
        stdout = done.stdout if isinstance(done.stdout, bytes) else b""
        stderr = done.stderr if isinstance(done.stderr, bytes) else b""
        if done.exit_status is None and done.exit_signal is None:
            raise self._unreachable(
                f"the connection was lost while {argv[0]} ran (it may have finished there or not)",
                "what follows connects again",
            )
        status = done.exit_status if done.exit_status is not None else 255
        return Ran(status, stdout, stderr)

    def _write_fail(self, what: str, path: str, exc: Exception) -> UserError:
        number: int | None = None
        if isinstance(exc, asyncssh.SFTPNoSpaceOnFilesystem):
            number = errno.ENOSPC
        elif isinstance(exc, asyncssh.SFTPQuotaExceeded):
            number = errno.EDQUOT
        elif isinstance(exc, asyncssh.SFTPPermissionDenied):
            number = errno.EACCES
        elif isinstance(exc, asyncssh.SFTPWriteProtect):
            number = errno.EROFS
        elif isinstance(exc, OSError):
            number = exc.errno
        reason = exc.reason if isinstance(exc, asyncssh.SFTPError) else str(exc)
        return write_error(self.host, self.where, what, path, number, reason)

    async def write_temp(
        self, path: str, data: bytes, mode: int, owner: tuple[int, int] | None = None
    ) -> str:
        temp = temp_beside(path)
        remote = under(self.root, temp)
        if await self._helper() is not None:
            request = {"op": "write", "path": temp, "data": encode(data), "mode": mode}
            if owner is not None:
                request["owner"] = list(owner)
            await self._ask("writing", path, request)
            return temp
        await self._no_link(temp, whole=False)  # a link at the temp is removed, "x" refuses one
        sftp = await self._files()
        parent = str(PurePosixPath(remote).parent)
        try:
            await sftp.makedirs(parent, exist_ok=True)
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                await sftp.remove(remote)
            attrs = asyncssh.SFTPAttrs(permissions=0o600)
            flags = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_EXCL
            async with sftp.open(remote, flags, attrs, encoding=None) as handle:
                if owner is not None:
                    await sftp.chown(remote, *owner)
                await sftp.chmod(remote, mode)
                await handle.write(data)
                await handle.fsync()
        except (asyncssh.Error, OSError) as exc:
            with contextlib.suppress(asyncssh.Error, OSError):
                await sftp.remove(remote)
            if isinstance(exc, asyncssh.SFTPFailure) and await self._full(remote, len(data)):
                raise write_error(
                    self.host, self.where, "writing", path, errno.ENOSPC, "disk full"
                ) from None
            raise self._write_fail("writing", path, exc) from None
        return temp

    async def _full(self, remote: str, size: int) -> bool:
        """Return whether the file system of ``remote`` has less than ``size`` bytes free (an
        SFTP v3 server reports a full disk only as "Failure")."""
        sftp = await self._files()
        try:
            info = await sftp.statvfs(str(PurePosixPath(remote).parent))
        except (asyncssh.Error, OSError):
            return False
        return bool(info.bavail * info.frsize < size + info.frsize)

    async def rename(self, source: str, target: str) -> None:
        if await self._helper() is not None:
            await self._ask("replacing", target, {"op": "rename", "source": source, "path": target})
            return
        await self._no_link(source, whole=False)
        await self._no_link(target, whole=False)
        sftp = await self._files()
        try:
            await sftp.posix_rename(under(self.root, source), under(self.root, target))
        except (asyncssh.Error, OSError) as exc:
            raise self._write_fail("replacing", target, exc) from None

    async def remove(self, path: str) -> None:
        remote = under(self.root, path)
        if await self._helper() is not None:
            await self._ask("deleting", path, {"op": "remove", "path": path})
            return
        await self._no_link(path, whole=False)
        sftp = await self._files()
        try:
            await sftp.remove(remote)
        except asyncssh.SFTPNoSuchFile:
            pass
        except (asyncssh.Error, OSError) as exc:
            raise self._write_fail("deleting", path, exc) from None

    async def make_dir(self, path: str) -> bool:
        remote = under(self.root, path)
        if await self._helper() is not None:
            made: bool = await self._ask("creating", path, {"op": "make_dir", "path": path})
            return made
        await self._no_link(path)
        sftp = await self._files()
        try:
            await sftp.makedirs(str(PurePosixPath(remote).parent), exist_ok=True)
            await sftp.mkdir(remote)
        except (asyncssh.Error, OSError) as exc:
            if await sftp.isdir(remote):
                await self._no_link(path)
                return False
            raise self._write_fail("creating", path, exc) from None
        return True

    async def remove_dir(self, path: str) -> None:
        remote = under(self.root, path)
        if await self._helper() is not None:
            await self._ask("deleting", path, {"op": "remove_dir", "path": path})
            return
        await self._no_link(path, whole=False)
        sftp = await self._files()
        try:
            await sftp.rmdir(remote)
        except asyncssh.SFTPNoSuchFile:
            pass
        except (asyncssh.Error, OSError) as exc:
            raise self._write_fail("deleting", path, exc) from None
