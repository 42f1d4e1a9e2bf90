"""`allmende apply DIR`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import click

from allmende.actions.apply import apply as apply_action
from allmende.actions.apply import refuse_large_deletes
from allmende.actions.plan import prepare
from allmende.cli.plan import show
from allmende.errors import UserError

#: Exit codes of `allmende apply`.
DONE, FAILED = 0, 2


@click.command()
@click.argument("directory", type=click.Path(path_type=Path), default=".")
@click.option("--host", help="Only this host.")
@click.option("--service", help="Only the files rendered from this service.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Allow a plan that deletes many files.")
@click.option(
    "--plan-checksum",
    metavar="SUM",
    help="Apply only if the plan still has this checksum (as `plan` printed it; a prefix will do).",
)
def apply(
    directory: Path,
    host: str | None,
    service: str | None,
    yes: bool,
    force: bool,
    plan_checksum: str | None,
) -> int:
    """Bring the hosts to the inventory in DIRECTORY: show the plan, ask, then carry it out.

    Each host is applied under a lock on that host (/var/lib/allmende/apply.lock), as one
    transaction: all new files go to temp files beside their targets first and are checked by
    the real tool where there is one (`haproxy -c` for haproxy.cfg, with stand-in certificates
    written for names that have none yet); only when all of a host's files are written and
    accepted are they renamed into place, the previous version of each kept as
    `<file>.allmende-prev`. Secret values are decrypted now and written with mode 0600 under
    /srv/<service>/secrets/. Then HAProxy is started or gracefully reloaded through its master
    socket, changed services are brought up through the host's engine and waited for until
    healthy, and their monitors are run (ALLMENDE_VERIFY_TIMEOUT seconds, default 60). If any
    of that fails, the host's files and services are rolled back and the message says why.
    Every apply is recorded in the state database (ALLMENDE_STATE).

    Refuses a plan that deletes more than 10 files, or more than half the files of a host,
    without --force. Exit 0 when applied or nothing to do, 2 when a host failed.
    """
    prepared = prepare(directory, os.environ, host, service)
    plan = prepared.plan
    if plan.empty:
        show(plan)
        if plan.failed:
            return FAILED
        click.echo("Nothing to do.", err=True)
        return DONE
    show(plan)
    if plan_checksum is not None and not plan.checksum.startswith(plan_checksum.lower()):
        raise UserError(
            f"the plan changed since it was shown (checksum {plan.checksum[:16]}, not "
            f"{plan_checksum[:16]}); nothing was applied: look at the new plan and apply again"
        )
    if not force:
        refuse_large_deletes(prepared)
    if not yes and not click.confirm("Apply this plan?", err=True):
        click.echo("Nothing was applied.", err=True)
        return FAILED
    applied = report(apply_action(prepared, os.environ, progress))
    return DONE if applied and not plan.failed else FAILED


def progress(line: str) -> None:
    """Print one step of an apply as it is done."""
    click.echo(f"  {line}", err=True)


def report(results: Mapping[str, str]) -> bool:
    """Print each host's result of an apply; return whether every host was applied."""
    good = True
    for name, result in sorted(results.items()):
        if result == "ok":
            click.echo(f"Applied {name}.", err=True)
        else:
            click.echo(f"not applied: {result}", err=True)
            good = False
    return good
