"""The `watch` and `status` verbs, from the inventory.

``watch`` runs every probe the inventory implies (``render.watch_plan``) until stopped,
recording results in the state database (``ALLMENDE_STATE``) and alerting the collective's
``notify`` channels on every change of state; ``status`` runs one round and returns it. Both
read each backed-up service's freshness from its repository as ``allmende backup status``
does: through the service's host, with the passphrase from the secret store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from allmende.actions.plan import Seams
from allmende.actions.watchhost import fresh, run_until_stopped
from allmende.errors import UserError
from allmende.inventory import backups
from allmende.inventory.backups import passphrase_secret
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.inventory.secrets import SecretStore
from allmende.inventory.watchspec import Plan, Probe
from allmende.operations import archives
from allmende.render.watch_plan import plan as plan_of
from allmende.state import store
from allmende.state.watchstore import Result
from allmende.watch.probes import BackupReader
from allmende.watch.runner import Housekeeping, Options, Watcher


def backup_reader(
    root: Path, env: Mapping[str, str], inventory: Inventory, seams: Seams
) -> BackupReader:
    """Return how the watcher reads a service's backup freshness from the inventory."""

    async def read(probe: Probe) -> tuple[str, str, float | None]:
        job = backups.job(inventory, probe.service)
        if job is None:
            return "unreadable", "the service is not backed up any more", None
        try:
            name = passphrase_secret(probe.service)
            secrets = SecretStore(root, env)
            if not secrets.exists(name):
                raise UserError(f"no repository passphrase in the secret store ({name})")
            passphrase = secrets.get(name)
            async with seams.connect(inventory, job.host, env) as host:
                status = await archives.status(host, job, passphrase)
        except UserError as exc:
            return "unreadable", str(exc), None
        return fresh(status.state, status)

    return read


def housekeeping(inventory: Inventory, env: Mapping[str, str]) -> list[Housekeeping]:
    """Return the periodic maintenance the watcher runs beside its probes (results are
    compacted by the watcher itself). Certificate renewal belongs here: a task that renews
    what is due every few hours."""
    return []


@dataclass(frozen=True)
class Watching:
    """What ``watch`` and ``status`` run: the inventory and its plan."""

    inventory: Inventory
    plan: Plan


def prepare(root: Path, env: Mapping[str, str]) -> Watching:
    """Load the inventory and derive what to probe. Raise InventoryError."""
    inventory = load(root, env)
    return Watching(inventory, plan_of(inventory))


def options_for(
    root: Path, env: Mapping[str, str], watching: Watching, seams: Seams | None = None
) -> Options:
    """Return the watcher's options from the inventory (its backup reader, its housekeeping)."""
    return Options(
        backups=backup_reader(root, env, watching.inventory, seams or Seams()),
        housekeeping=housekeeping(watching.inventory, env),
    )


def watch(root: Path, env: Mapping[str, str], options: Options | None = None) -> None:
    """Watch until SIGTERM or SIGINT. Raise InventoryError, UserError."""
    watching = prepare(root, env)
    options = options or options_for(root, env, watching)
    state = store.default_path(env)
    asyncio.run(run_until_stopped(Watcher(watching.plan, state, options)))


def status(
    root: Path, env: Mapping[str, str], seams: Seams | None = None
) -> tuple[Plan, dict[str, Result]]:
    """Run every probe once; return the plan and each probe's result."""
    watching = prepare(root, env)
    watcher = Watcher(watching.plan, None, options_for(root, env, watching, seams))
    return watching.plan, asyncio.run(watcher.round())
