"""The engine part of apply: run a plan's actions on a host and wait until they took.

The commands are those the plan showed (built by the host's engine, ``allmende.engines``); each
runs through ``Connector.run``, which reads exit statuses for every host in one place. How long
a service may take to come up and how its health is judged is the engine's
(``Engine.wait_healthy``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from allmende.connectors.base import Connector
from allmende.engines.base import Driver
from allmende.errors import UserError
from allmende.inventory.inventory import Inventory
from allmende.plan.actions import components
from allmende.plan.changes import Action

if TYPE_CHECKING:
    from allmende.apply.host import Done, HostPlan


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


def began(action: Action, done: Done) -> None:
    """Note the undo of an action about to run (a rollback runs it even if the action stops
    half-way: undo commands find nothing to undo where nothing was done)."""
    if action.undo:
        done.undo.append(Action(action.host, action.verb, action.subject, "rollback", action.undo))


async def prepare(connector: Connector, plan: HostPlan, driver: Driver | None, done: Done) -> None:
    """Run the engine's ``prepare`` actions (what the host needs before its services: Incus's
    pool, bridge and profile, its containers that are hosts), in order."""
    for action in plan.actions:
        if action.verb == "prepare" and driver is not None:
            began(action, done)
            plan.say(f"{action.subject}: {action.reason}")
            await run_action(connector, action)


async def undo(connector: Connector, done: Done) -> list[str]:
    """Run the undo of every action begun, the last first; return what could not be undone."""
    problems: list[str] = []
    for action in reversed(done.undo):
        try:
            await run_action(connector, action)
        except UserError as exc:
            problems.append(str(exc))
    return problems
