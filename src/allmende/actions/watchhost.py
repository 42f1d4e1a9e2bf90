"""The watcher as a watch host's systemd unit runs it: ``allmende watch --plan FILE``.

On the host the inventory names in ``watch.host``, without the inventory: the plan apply wrote
there (``/etc/allmende/watch.json``), the backup job and passphrase files of the services on
that host (their freshness is read from their repositories as ``backup status`` reads it, but
without Borg's lock: the unit's file system is read-only, its repositories too), the
keys with which it asks every other host that backs something up how fresh its backups are
(``ssh`` to the host's forced ``allmende backup freshness``: the passphrases stay there; a host
that cannot be asked makes its services' backup probes down, saying why), and the host's own
state database (``ALLMENDE_STATE``, which the unit sets to
``/var/lib/allmende/state.sqlite``).

This module, and everything it imports, uses the standard library and the watcher's own
dependencies (aiohttp, prometheus_client, dnspython, cryptography: Debian packages on the host)
only: it is what allmende's copy on a host (``/usr/local/lib/allmende/allmende.pyz``) runs.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from allmende.actions import backuphost
from allmende.connectors.base import under
from allmende.connectors.local import LocalConnector
from allmende.errors import CommandTimedOut, UserError
from allmende.inventory.hostpaths import HOST_STATE
from allmende.inventory.watchspec import Plan, Probe, Remote, from_json
from allmende.operations import archives
from allmende.watch.probes import BackupReader
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


def answered(found: Mapping[str, object]) -> tuple[str, str, float | None]:
    """Return a freshness as ``backuphost.fresh`` says it, as the backup probe reads it."""
    age = found.get("age")
    return (
        str(found.get("state")),
        str(found.get("detail")),
        float(age) if isinstance(age, int | float) else None,
    )


def ask_argv(remote: Remote, root: str, timeout: float) -> list[str]:
    """Return the ssh command that asks ``remote`` how fresh its backups are: with its key
    only, no agent, the host key checked against the watch host's known_hosts (an unknown or
    changed one refused, as the SSH connector refuses it), nothing read from ssh_config."""
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        under(root, remote.key),
        "-p",
        str(remote.port),
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        f"UserKnownHostsFile={under(root, remote.known_hosts)}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "UpdateHostKeys=no",
        "-o",
        f"ConnectTimeout={max(1, round(timeout))}",
        "-o",
        "LogLevel=ERROR",
        "-T",
        f"{remote.user}@{remote.address}",
        "backup-freshness",
    ]


#: Seconds an answer of a host serves the probes of its other services too.
REUSE = 10.0


class Asker:
    """Asks the hosts of a watch plan's ``remotes`` how fresh their backups are, once for all
    their services' probes (an answer is reused for ``REUSE`` seconds; probes that ask while
    a question is under way wait for its answer)."""

    def __init__(self, root: str, reuse: float = REUSE) -> None:
        self.root = root
        self.reuse = reuse
        self._asked: dict[str, tuple[float, asyncio.Future[dict[str, Any] | str]]] = {}

    async def answer(self, remote: Remote, timeout: float) -> dict[str, Any] | str:
        """Return each service's freshness on ``remote``, or why it could not be asked."""
        held = self._asked.get(remote.host)
        now = time.monotonic()
        if held is None or (held[1].done() and now - held[0] > self.reuse):
            held = (now, asyncio.ensure_future(self._ask(remote, timeout)))
            self._asked[remote.host] = held
        return await asyncio.shield(held[1])

    async def _ask(self, remote: Remote, timeout: float) -> dict[str, Any] | str:
        if remote.missing:
            return remote.missing
        argv = ask_argv(remote, self.root, timeout)
        try:
            ran = await LocalConnector(remote.host, self.root).run(
                argv, ok=None, timeout=max(1.0, timeout - 0.5), what="ask"
            )
        except CommandTimedOut:
            return f"no answer within {max(1.0, timeout - 0.5):g} s"
        except UserError as exc:
            return str(exc)
        if ran.exit != 0:
            said = ran.stderr.decode("utf-8", "replace").strip().splitlines()
            return said[-1] if said else f"ssh exited {ran.exit}"
        try:
            found = json.loads(ran.stdout)
            if not isinstance(found, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            return f"it did not answer with the freshness of its backups ({exc})"
        return found


def backup_reader(root: str, plan: Plan, asker: Asker | None = None) -> BackupReader:
    """Return the backup reader of a watch host: each service on it from its job and
    passphrase files there, its repository read with Borg there; each service on another
    host by asking that host (``plan.remotes``) over SSH with the watch host's key, whose
    only use there is that answer."""
    remotes = {r.host: r for r in plan.remotes}
    asker = asker or Asker(root)

    async def read(probe: Probe) -> tuple[str, str, float | None]:
        remote = remotes.get(probe.host)
        if remote is None:  # read-only to the watch unit: no lock (``archives.archives``)
            return answered(await backuphost.fresh(root, probe.service, lock=False))
        answer = await asker.answer(remote, probe.timeout)
        if isinstance(answer, str):
            return "unreadable", f"could not ask {probe.host}: {answer}", None
        found = answer.get(probe.service)
        if not isinstance(found, dict):
            said = f"{probe.host} has no backup job of {probe.service}: was the inventory applied?"
            return "unreadable", said, None
        return answered(found)

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
    options.backups = backup_reader(root, plan)
    asyncio.run(run_until_stopped(Watcher(plan, state, options)))
