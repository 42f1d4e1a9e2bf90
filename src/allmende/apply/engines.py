"""The engine part of apply: run a plan's engine actions on a host and wait until they took.

A compose service counts as up when every component has a running container and none with a
health check is still ``starting`` or ``unhealthy``. Docker runs health checks itself; podman
runs them from systemd timers, which a host without systemd does not have, so for podman each
``starting`` check is run once a second with ``podman healthcheck run`` until it settles. Other
engines count as up when their command succeeded; the monitors then tell.
"""

from __future__ import annotations

import asyncio
import time

from allmende.connectors.base import Connector
from allmende.errors import UserError
from allmende.inventory.inventory import Inventory
from allmende.plan.changes import Action
from allmende.plan.engines import Driver, Running, observe_engine

#: How long a service may take to run and be healthy after ``up``, in seconds.
HEALTH_TIMEOUT = 120.0


async def run_action(connector: Connector, action: Action) -> None:
    """Run an action's commands in order. Raise UserError with what the program said if one
    fails."""
    for command in action.commands:
        ran = await connector.run(command)
        if ran.exit != 0:
            said = (ran.stderr + ran.stdout).decode(errors="replace").strip()
            hint = f" ({command[0]} is not installed there)" if ran.exit == 127 else ""
            raise UserError(
                f"{connector.host}: {action.verb} {action.subject}: `{' '.join(command)}` "
                f"failed (exit {ran.exit}){hint}:\n{said[-1500:]}"
            )


def _components(inventory: Inventory, service: str) -> list[str]:
    return [n for n, c in inventory.services[service].components.items() if c.image is not None]


async def wait_up(
    connector: Connector,
    driver: Driver,
    inventory: Inventory,
    service: str,
    timeout: float = HEALTH_TIMEOUT,
) -> None:
    """Wait until ``service`` runs and is healthy on the (opened) host. Raise UserError saying
    which component is not, when one turns unhealthy or ``timeout`` seconds pass."""
    if driver.engine != "compose":
        return
    components = _components(inventory, service)
    deadline = time.monotonic() + timeout
    while True:
        seen = await observe_engine(connector, driver) or {}
        running = seen.get(service, Running())
        missing = running.missing(components)
        sick = [c for c in components if running.health.get(c) == "unhealthy"]
        if sick:
            raise UserError(
                f"{connector.host}: {service}: the health check of {', '.join(sick)} fails"
            )
        starting = [c for c in components if running.health.get(c) == "starting"]
        if not missing and not starting:
            return
        if time.monotonic() > deadline:
            what = ", ".join(missing) or ", ".join(f"{c} still starting" for c in starting)
            raise UserError(
                f"{connector.host}: {service} is not up and healthy {timeout:.0f} s after "
                f"starting it: {what}"
            )
        if driver.runtime == "podman" and not missing:
            for component in starting:
                name = running.containers.get(component)
                if name:
                    await connector.run(["podman", "healthcheck", "run", name])
        await asyncio.sleep(1.0)
