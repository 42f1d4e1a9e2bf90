"""The watcher as a watch host's systemd unit runs it: ``allmende watch --plan FILE``.

On the host the inventory names in ``watch.host``, without the inventory: the plan apply wrote
there (``/etc/allmende/watch.json``), the backup job and passphrase files of the services on
that host (their freshness is read from their repositories as ``backup status`` reads it), and
the host's own state database (``ALLMENDE_STATE``, which the unit sets to
``/var/lib/allmende/state.sqlite``).

This module, and everything it imports, uses the standard library and the watcher's own
dependencies (aiohttp, prometheus_client, dnspython, cryptography: Debian packages on the host)
only: it is what allmende's copy on a host (``/usr/local/lib/allmende/allmende.pyz``) runs.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping
from pathlib import Path

from allmende.actions.backuphost import read_job
from allmende.connectors.base import under
from allmende.connectors.local import LocalConnector
from allmende.errors import UserError
from allmende.inventory.hostpaths import HOST_STATE
from allmende.inventory.watchspec import Plan, Probe, from_json
from allmende.operations import archives
from allmende.watch.runner import Options, Watcher


def read_plan(path: Path) -> Plan:
    """Return the watch plan in ``path``. Raise UserError if it is missing or not one."""
    try:
        return from_json(path.read_bytes())
    except FileNotFoundError:
        raise UserError(
            f"no watch plan at {path}: name this host in `watch.host` of allmende.yaml and "
            "apply the inventory"
        ) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the watch plan {path}: {exc}") from None


def fresh(state: str, status: archives.Status) -> tuple[str, str, float | None]:
    """Return a freshness as the backup probe reads it: state, words, age in hours."""
    age = status.age.total_seconds() / 3600 if status.age is not None else None
    return state, status.describe(), age


def local_backups(root: str) -> object:
    """Return the backup reader of a watch host: each service's job and passphrase files
    there, its repository read with Borg there."""

    async def read(probe: Probe) -> tuple[str, str, float | None]:
        try:
            job, passphrase = read_job(root, probe.service)
            status = await archives.status(LocalConnector(job.host, root), job, passphrase)
        except UserError as exc:
            return "unreadable", str(exc), None
        return fresh(status.state, status)

    return read


async def run_until_stopped(watcher: Watcher) -> None:
    """Run ``watcher`` until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await watcher.run(stop)


def watch(plan_file: Path, env: Mapping[str, str], options: Options | None = None) -> None:
    """Watch as the plan file says until stopped. Raise UserError if it cannot be read."""
    root = env.get("ALLMENDE_HOST_ROOT") or "/"
    plan = read_plan(plan_file)
    state = Path(env.get("ALLMENDE_STATE") or under(root, HOST_STATE))
    options = options or Options()
    options.backups = local_backups(root)  # type: ignore[assignment]
    asyncio.run(run_until_stopped(Watcher(plan, state, options)))
