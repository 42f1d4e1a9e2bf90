"""`allmende rollback SERVICE`."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import click

from allmende.actions import rollback as action
from allmende.cli.options import inventory_option
from allmende.cli.plan import seams

#: Exit codes of `allmende rollback`.
DONE, DECLINED = 0, 1


@click.command()
@click.argument("service")
@inventory_option()
@click.option(
    "--to", "to", metavar="SNAPSHOT", help="Go back to this snapshot (default: the latest)."
)
@click.option("--list", "listing", is_flag=True, help="Only list the service's snapshots.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def rollback(service: str, inventory: Path, to: str | None, listing: bool, yes: bool) -> int:
    """Bring SERVICE back to one of its snapshots (on Incus hosts).

    Each component goes back to the snapshot named --to, else to its latest: its files and its
    configuration as they were then (data in volumes on the host is not part of a snapshot).
    Snapshots are taken before every apply that changes an instance
    (`before-apply-<date>-<time>`), on the schedule of `snapshots:` (`auto-<date>-<time>`), and
    before every rollback (`before-rollback-<date>-<time>`, so that a rollback can be undone).
    Runs under the host's apply lock and is recorded in the state database like an apply.

    Asks first; without a terminal to ask at, goes back only with --yes. Exit 0 when done (or
    listed), 1 when declined, 2 when it could not be done.
    """
    if listing:
        found = action.snapshots(inventory, os.environ, service, seams())
        for snapshot in found:
            expires = f", expires {snapshot.expires}" if snapshot.expires else ""
            click.echo(f"{snapshot.component}: {snapshot.name} (taken {snapshot.created}{expires})")
        if not found:
            click.echo(f"{service} has no snapshots yet.", err=True)
        return DONE

    def confirm(host: str, chosen: Mapping[str, str]) -> bool:
        for component, name in sorted(chosen.items()):
            click.echo(f"{host}: {service}: {component} goes back to {name}", err=True)
        if yes:
            return True
        if not sys.stdin.isatty():
            click.echo("No terminal to ask at: run again with --yes to go back.", err=True)
            return False
        return click.confirm("Go back?", err=True)

    rolled = action.rollback(inventory, os.environ, service, to, confirm, seams())
    if rolled is None:
        click.echo("Nothing was changed.", err=True)
        return DECLINED
    click.echo(
        f"Rolled {service} back on {rolled.host}; to undo it: "
        f"allmende rollback {service} --to {rolled.kept}",
        err=True,
    )
    return DONE
