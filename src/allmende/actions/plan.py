"""The `plan` verb: what apply would change on each host, read through the connectors."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from allmende.actions.render import select
from allmende.connectors import connect
from allmende.connectors.base import Connector
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.inventory.secrets import SecretStore
from allmende.plan.changes import Action, Change, Plan
from allmende.plan.deliver import host_files, needs_secrets
from allmende.plan.engines import plan_actions
from allmende.plan.observe import observe, wanted_by_host
from allmende.render.output import Rendered
from allmende.render.targets import render_all


@dataclass(frozen=True)
class Prepared:
    """A plan and what it was made from, for ``apply``."""

    root: Path
    inventory: Inventory
    wanted: Mapping[str, Mapping[str, Rendered]]
    plan: Plan
    scoped: bool


def prepare(
    root: Path, env: Mapping[str, str], host: str | None = None, service: str | None = None
) -> Prepared:
    """Load and render the inventory in ``root`` and read the hosts (only ``host``, only the
    files of ``service`` if given); return the plan with what it was made from. Raise
    InventoryError or UserError as `plan` does."""
    inventory = load(root, env)
    hosts = [host] if host is not None else sorted(inventory.hosts)
    store = SecretStore(root, env) if needs_secrets(inventory, hosts, service) else None
    rendered = host_files(inventory, render_all(inventory), store, service)
    files = select(inventory, rendered, host, service)
    source = inventory.file("service", service) if service is not None else None
    wanted = wanted_by_host(files, hosts)

    def opener(name: str) -> Connector:
        return connect(inventory, name, env)

    async def act(
        connector: Connector,
        changes: list[Change],
        files: Mapping[str, Rendered],
        manifest: bytes | None,
    ) -> list[Action]:
        return await plan_actions(connector, inventory, changes, files, manifest, service)

    plan = asyncio.run(observe(wanted, opener, source, act))
    return Prepared(root, inventory, wanted, plan, service is not None)


def plan(
    root: Path,
    env: Mapping[str, str],
    host: str | None = None,
    service: str | None = None,
) -> Plan:
    """Load the inventory in ``root``, render it, read every host (or only ``host``)
    concurrently and return the Plan of file changes (only those of ``service`` if given).

    Hosts without ``ssh`` are this machine (under ``ALLMENDE_HOST_ROOT`` if set); the others are
    reached over SSH (see ``allmende.connectors.ssh`` for the environment it honours). A host
    that cannot be reached is in ``Plan.failed``. Raise InventoryError if the inventory does not
    load and UserError for an unknown host or service.
    """
    return prepare(root, env, host, service).plan
