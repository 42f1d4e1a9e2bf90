"""A per-host lock so that two applies never interleave on one host.

The lock is the directory ``/var/lib/allmende/apply.lock``: creating a directory is atomic, so
exactly one apply gets it. Inside, ``holder.json`` says who holds it, since when, and from
where. A lock is taken over (and the log says whose it was) when it was left by an apply that
died: one started from this same machine whose process is gone (killed, power cut), or any
older than ``STALE``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import PurePosixPath

from allmende.connectors.base import Connector
from allmende.errors import LockHeld, UserError
from allmende.inventory.hostpaths import APPLY_LOCK

log = logging.getLogger(__name__)

HOLDER = f"{APPLY_LOCK}/holder.json"
#: After this many seconds a lock is considered left behind by an apply that died.
STALE = 3600.0


def alive(pid: int) -> bool:
    """Return whether a process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def dead_here(holder: bytes | None) -> bool:
    """Return whether the holder is an apply started from this machine that no longer runs."""
    try:
        data = json.loads(holder or b"")
        return bool(data.get("from") == socket.gethostname() and not alive(int(data["pid"])))
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def describe(holder: bytes | None) -> tuple[str, float | None]:
    """Return who holds the lock (for messages) and since when (epoch seconds, None if the
    holder file is missing or unreadable)."""
    try:
        data = json.loads(holder or b"")
        since = float(data["since"])
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since))
        return f"{data.get('who', '?')} (pid {data.get('pid', '?')}) since {when}", since
    except (ValueError, KeyError, TypeError):
        return "an unknown apply", None


@asynccontextmanager
async def host_lock(
    connector: Connector, who: str, pid: int, now: float | None = None
) -> AsyncIterator[None]:
    """Hold the apply lock of the (opened) host while the block runs. Raise LockHeld if another
    apply holds it (and it is not stale)."""
    started = time.time() if now is None else now
    made = []  # the lock's parents this apply made: taken away again with the lock if empty
    for parent in reversed(PurePosixPath(APPLY_LOCK).parents[:-1]):
        if await connector.make_dir(str(parent)):
            made.append(str(parent))
    if not await connector.make_dir(APPLY_LOCK):
        data = await connector.read(HOLDER)
        holder, since = describe(data)
        if not dead_here(data) and (since is None or started - since < STALE):
            raise LockHeld(
                connector.host,
                f"{connector.host}: another apply is running there, held by {holder} "
                f"({APPLY_LOCK}); wait for it to finish. If it died, the lock is taken over "
                f"after {STALE / 3600:g} h (at once from the machine it ran on), or remove "
                f"{APPLY_LOCK} on the host by hand",
            )
        log.warning("%s: taking over the stale apply lock of %s", connector.host, holder)
    info = {"who": who, "pid": pid, "since": started, "from": socket.gethostname()}
    await connector.write_atomic(HOLDER, json.dumps(info).encode(), 0o644)
    try:
        yield
    except BaseException:
        # The first error is the one to report: a connection that broke fails this too.
        try:
            await _release(connector, made)
        except UserError as exc:
            log.warning("%s: the apply lock could not be released: %s", connector.host, exc)
        raise
    await _release(connector, made)


async def _release(connector: Connector, made: list[str]) -> None:
    """Remove the lock, then the directories made for it that nothing else came into."""
    await connector.remove(HOLDER)
    await connector.remove_dir(APPLY_LOCK)
    for directory in reversed(made):
        with contextlib.suppress(UserError):  # not empty: the manifest is there
            await connector.remove_dir(directory)
