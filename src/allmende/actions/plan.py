"""The `plan` verb: what apply would change on each host, read through the connectors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from allmende.actions.render import select
from allmende.checks.registry import refusal, run
from allmende.connectors.base import Connector
from allmende.engines import connect
from allmende.errors import CheckFailed
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.inventory.secrets import SecretStore
from allmende.plan.actions import plan_actions
from allmende.plan.backupfiles import backup_files
from allmende.plan.certfiles import cert_files, merged
from allmende.plan.changes import Action, Change, Plan
from allmende.plan.databases import passwords_needed
from allmende.plan.deliver import host_files, needs_secrets
from allmende.plan.hold import hold_back
from allmende.plan.observe import Recorded, observe, wanted_by_host
from allmende.plan.watchkeys import watch_files
from allmende.render.output import Rendered
from allmende.render.targets import render_all

#: Given an opened host, the inventory, its file changes, its wanted files, what it records of
#: the last apply, the service the plan is limited to and the passwords of the database roles
#: its providers serve: the actions besides the files.
Actor = Callable[
    [
        Connector,
        Inventory,
        list[Change],
        Mapping[str, Rendered],
        Recorded,
        str | None,
        Mapping[str, bytes],
    ],
    Awaitable[list[Action]],
]


@dataclass(frozen=True)
class Seams:
    """The outside world as plan and apply meet it: what renders the files, how a host is
    reached, and what finds the actions that follow the files on a host. Every surface uses
    the defaults; tests put their own in (an in-memory host, files without an engine)."""

    render: Callable[[Inventory], dict[str, Rendered]] = field(default=render_all)
    connect: Callable[[Inventory, str, Mapping[str, str]], Connector] = field(default=connect)
    actions: Actor = field(default=plan_actions)


@dataclass(frozen=True)
class Prepared:
    """A plan and what it was made from, for ``apply``."""

    root: Path
    inventory: Inventory
    wanted: Mapping[str, Mapping[str, Rendered]]
    plan: Plan
    scoped: bool
    seams: Seams = field(default_factory=Seams)


def checked(root: Path, env: Mapping[str, str], force: bool = False) -> Inventory:
    """Load the inventory in ``root`` and check it. Raise InventoryError if it does not load,
    CheckFailed if the check finds errors (with ``force``: errors of rules that cannot be
    forced)."""
    inventory = load(root, env)
    reason = refusal(run(inventory), force, inventory.command("check"))
    if reason is not None:
        raise CheckFailed(reason)
    return inventory


def prepare(
    root: Path,
    env: Mapping[str, str],
    host: str | None = None,
    service: str | None = None,
    seams: Seams | None = None,
    force: bool = False,
    tally: Callable[[int, int], None] | None = None,
) -> Prepared:
    """Load, check and render the inventory in ``root`` and read the hosts (only ``host``,
    only the files of ``service`` if given; ``tally`` is told how many of how many are read);
    return the plan with what it was made from. Raise InventoryError, CheckFailed or UserError
    as `plan` does."""
    seams = seams or Seams()
    inventory = checked(root, env, force)
    hosts = [host] if host is not None else sorted(inventory.hosts)
    roles = passwords_needed(inventory, hosts)
    needed = roles or needs_secrets(inventory, hosts, service)
    store = SecretStore(root, env) if needed else None
    rendered = host_files(inventory, seams.render(inventory), store, service)
    passwords = {s: store.get(s) for s in sorted(roles) if s in inventory.secrets} if store else {}
    rendered.update(backup_files(inventory, root, env, hosts, service))
    rendered = merged(rendered, cert_files(inventory, root, env, hosts) if service is None else {})
    rendered.update(watch_files(inventory, root, env, hosts) if service is None else {})
    files = select(inventory, rendered, host, service)
    source = inventory.file("service", service) if service is not None else None
    wanted = wanted_by_host(files, hosts)

    def opener(name: str) -> Connector:
        return seams.connect(inventory, name, env)

    async def act(
        connector: Connector,
        changes: list[Change],
        files: Mapping[str, Rendered],
        recorded: Recorded,
    ) -> list[Action]:
        return await seams.actions(
            connector, inventory, changes, files, recorded, service, passwords
        )

    async def observed() -> Plan:
        found = await observe(wanted, opener, source, act, tally)
        return await hold_back(inventory, found, wanted, opener)

    plan = asyncio.run(observed())
    return Prepared(root, inventory, wanted, plan, service is not None, seams)


def plan(
    root: Path,
    env: Mapping[str, str],
    host: str | None = None,
    service: str | None = None,
    seams: Seams | None = None,
    force: bool = False,
    tally: Callable[[int, int], None] | None = None,
) -> Plan:
    """Load the inventory in ``root``, render it, read every host (or only ``host``)
    concurrently and return the Plan of file changes (only those of ``service`` if given),
    telling ``tally`` how many hosts of how many are read as each is done.

    Hosts without ``ssh`` are this machine (under ``ALLMENDE_HOST_ROOT`` if set); the others are
    reached over SSH (see ``allmende.connectors.ssh`` for the environment it honours). A host
    that cannot be reached is in ``Plan.failed``. Raise InventoryError if the inventory does not
    load, CheckFailed if its check finds errors (``force``: see ``checked``) and UserError for
    an unknown host or service.
    """
    return prepare(root, env, host, service, seams, force, tally).plan
