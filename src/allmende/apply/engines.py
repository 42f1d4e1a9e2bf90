"""The engine part of apply: run a plan's actions on a host and wait until they took.

The commands are those the plan showed (built by the host's engine, ``allmende.engines``); each
runs through ``Connector.run``, which reads exit statuses for every host in one place. How long
a service may take to come up and how its health is judged is the engine's
(``Engine.wait_healthy``).
"""

from __future__ import annotations

from allmende.connectors.base import Connector
from allmende.engines.base import Driver
from allmende.inventory.inventory import Inventory
from allmende.plan.actions import components
from allmende.plan.changes import Action


async def run_action(connector: Connector, action: Action) -> None:
    """Run an action's commands in order. Raise CommandFailed (or ToolMissing) naming the
    action, the command and what the program said if one fails."""
    last = len(action.commands) - 1
    for index, command in enumerate(action.commands):
        given = action.input if index == last and action.input else None
        await connector.run(command, given, what=f"{action.verb} {action.subject}")


async def wait_up(connector: Connector, driver: Driver, inventory: Inventory, service: str) -> None:
    """Wait until ``service`` runs and is healthy on the (opened) host, as its engine judges.
    Raise UserError saying which component is not."""
    await driver.wait_healthy(connector, service, components(inventory, service))
