"""The `plan` verb: what apply would change on each host, read through the connectors."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from allmende.actions.render import select
from allmende.connectors import connect
from allmende.connectors.base import Connector
from allmende.inventory.load import load
from allmende.plan.changes import Plan
from allmende.plan.observe import observe, wanted_by_host
from allmende.render.targets import render_all


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
    inventory = load(root, env)
    files = select(inventory, render_all(inventory), host, service)
    hosts = [host] if host is not None else sorted(inventory.hosts)
    source = inventory.file("service", service) if service is not None else None

    def opener(name: str) -> Connector:
        return connect(inventory, name, env)

    return asyncio.run(observe(wanted_by_host(files, hosts), opener, source))
