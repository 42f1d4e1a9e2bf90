"""`allmende plan [-C DIR]`."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import click

from allmende.actions.plan import Seams
from allmende.actions.plan import plan as plan_action
from allmende.cli.options import inventory_option
from allmende.cli.output import paint, plural, progress, say
from allmende.cli.terminal import echo
from allmende.plan.changes import Plan

#: Exit codes of `allmende plan`.
NOTHING, FAILED, CHANGES = 0, 2, 3

HEADINGS = {"create": "Create", "update": "Update", "delete": "Delete"}


@click.command()
@inventory_option(positional=True)
@click.option("--host", help="Only this host.")
@click.option("--service", help="Only the files rendered from this service.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option(
    "--force",
    is_flag=True,
    help="Plan despite error findings of the rules that allow it (see the rules reference).",
)
def plan(inventory: Path, host: str | None, service: str | None, as_json: bool, force: bool) -> int:
    """Show what `apply` would change on each host to match the inventory.

    Reads every host concurrently (hosts without `ssh` are this machine, the others are
    reached over SSH with host keys checked against known_hosts) and prints each file to
    Create, Update or Delete with a unified diff (never for files that carry secrets), then
    what the engines will do (bring a service up because its files change or it does not run,
    bring a removed one down, start or reload HAProxy, reload systemd) with the exact commands,
    and the plan's checksum. A file another collective's inventory wrote (its header names
    that collective) is marked: apply takes it over only with --force.

    The inventory is checked first: an error finding stops the plan (with --force, only one
    of a rule that --force cannot pass: the rules reference says which can).

    Exit 0 when nothing would change, 3 when something would, 2 when the inventory does not
    load, the check finds errors or a host could not be read (the hosts that could are still
    shown).

    For tests and staging, ALLMENDE_HOST_ROOT names a directory standing in for `/` on this
    machine and ALLMENDE_REMOTE_ROOT one on SSH hosts.
    """
    with progress("reading hosts") as shown:
        tally = shown.counter("reading hosts")
        result = plan_action(inventory, os.environ, host, service, seams(), force, tally)
    if as_json:
        echo(json.dumps(result.as_json(), indent=2))
    else:
        show(result)
    if result.failed:
        return FAILED
    return NOTHING if result.empty else CHANGES


def seams() -> Seams | None:
    """Return the seams the command line was started with (``main(..., seams=...)``), if any."""
    context = click.get_current_context(silent=True)
    found = context.find_object(Seams) if context is not None else None
    return found


def show(result: Plan, diffs: bool = True) -> None:
    """Print each change (with its diff when ``diffs``), what the engines will do (with the
    exact commands when ``diffs``), each host that failed on stderr, and a summary."""
    for change in result.changes:
        taken = ""
        if change.foreign is not None:
            taken = paint(
                f" (written by the inventory of {change.foreign}: apply takes it over only "
                "with --force)",
                "warning",
            )
        echo(f"{HEADINGS[change.kind]} {change.host}:{change.path}{taken}")
        if diffs:
            for line in change.shown_diff().splitlines():
                echo(f"    {paint_diff(line)}")
    for action in result.actions:
        echo(f"Then on {action.host}: {action.shown()}")
        if diffs:
            for command in action.commands:
                echo(f"    $ {shlex.join(command)}")
    for _, reason in sorted(result.failed.items()):
        say(f"not planned: {reason}", "error", err=True)
    for held in result.held:
        say(held.shown(), "warning", err=True)
    counts = ", ".join(f"{result.count(k)} to {k}" for k in ("create", "update", "delete"))
    if result.actions:
        counts += f", {plural(len(result.actions), 'engine action')}"
    hosts = plural(len(result.hosts), "host")
    missing = f"; {plural(len(result.failed), 'host')} not planned" if result.failed else ""
    if not result.empty:
        more = "" if diffs else "; --diff shows the diffs and commands"
        say(
            f"Plan: {counts} on {hosts}{missing} (checksum {result.checksum[:16]}{more}).", err=True
        )
    else:
        echo(f"No changes on {hosts}{missing}.", err=True)


def paint_diff(line: str) -> str:
    """Colour a line of a unified diff at a terminal: added green, removed red."""
    if line.startswith("+") and not line.startswith("+++"):
        return paint(line, "ok")
    if line.startswith("-") and not line.startswith("---"):
        return paint(line, "error")
    return line
