"""Put new certificates on an edge host and have HAProxy serve them, without dropping a request.

Each PEM (full chain and key, mode 0600) replaces the old file atomically: written beside it,
flushed, renamed over it, the old one kept as ``<file>.allmende-prev``. Then HAProxy is
reloaded through its master socket, as apply does (``apply.proxy.reload``): the configuration
is checked with ``haproxy -c`` first, the master starts a new worker with the new
certificates and the old worker finishes its connections. If HAProxy rejects the new files,
the old ones are put back and nothing was reloaded. Where no HAProxy runs yet, the files are
only checked: the next start uses them.

A reload is preferred over ``set ssl cert`` on the admin socket: the runtime API changes only
the running worker's memory, so a reload that apply makes between the update and a restart
comes back with whatever file is on disk, and a crt-list's new line still needs a reload;
the reload path is the one every apply already proves drops no request.

The host's apply lock is held meanwhile, so that an apply and a renewal never reload in turn
on half of each other's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence

from allmende.apply.lock import host_lock
from allmende.apply.proxy import reload, validate
from allmende.connectors.base import PREVIOUS, Connector
from allmende.errors import CertificateFailed, LockHeld, UserError
from allmende.plan.proxy import proxy_paths, show_proc

#: How long to wait for an apply that holds the host's lock, in seconds.
LOCK_WAIT = 600.0


async def _put_back(connector: Connector, paths: Sequence[str], had: dict[str, bool]) -> None:
    for path in paths:
        with contextlib.suppress(UserError):
            if had[path]:
                previous = await connector.read(path + PREVIOUS)
                if previous is not None:
                    await connector.write_atomic(path, previous, 0o600)
            else:
                await connector.remove(path)


@contextlib.asynccontextmanager
async def _locked(connector: Connector, say: Callable[[str], None]) -> AsyncIterator[None]:
    """Hold the host's apply lock while the block runs, waiting (up to ``LOCK_WAIT``) while
    an apply holds it. Raise CertificateFailed if it is not free by then."""
    deadline = time.monotonic() + LOCK_WAIT
    told = entered = False
    while True:
        try:
            async with host_lock(connector, "allmende certs", os.getpid()):
                entered = True
                yield
                return
        except LockHeld as exc:
            if entered:
                raise
            if time.monotonic() > deadline:
                raise CertificateFailed(f"{exc}; the new certificates were not installed") from None
            if not told:
                say(f"{connector.host}: waiting for the apply that holds the lock")
                told = True
            await asyncio.sleep(2.0)


async def install(
    connector: Connector,
    files: Sequence[tuple[str, bytes]],
    say: Callable[[str], None] = lambda line: None,
) -> bool:
    """Install ``files`` (PEM path, content) on the (opened) edge host and reload HAProxy;
    return whether a running HAProxy was reloaded. Raise CertificateFailed (``install``) if
    HAProxy rejects them (the previous files are back) or cannot be reloaded."""
    async with _locked(connector, say):
        paths = [path for path, _ in files]
        had = {path: await connector.stat(path) is not None for path in paths}
        try:
            for path, content in files:
                await connector.keep_previous(path)
                await connector.write_atomic(path, content, 0o600)
            running = await show_proc(connector, proxy_paths(connector))
            if running is None:
                await validate(connector, proxy_paths(connector))
                return False
            await reload(connector)
        except UserError as exc:
            await _put_back(connector, paths, had)
            raise CertificateFailed(
                f"{connector.host}: the new certificate was not taken, the previous one "
                f"stays: {exc}",
                "install",
            ) from None
        return True
