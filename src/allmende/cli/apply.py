"""`allmende apply DIR`."""

from __future__ import annotations

import os
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
    """Bring the hosts to the inventory in DIRECTORY: show the plan, ask, then write its files.

    Each host's files are written under a lock on that host (/var/lib/allmende/apply.lock):
    all new files go to temp files beside their targets first and are checked by the real tool
    where there is one (`haproxy -c` for haproxy.cfg); only when all of a host's files are
    written and accepted are they renamed into place, the previous version of each kept as
    `<file>.allmende-prev`. Files under a `secrets/` directory get mode 0600. Every apply is
    recorded in the state database (ALLMENDE_STATE).

    Refuses a plan that deletes more than 10 files, or more than half the files of a host,
    without --force. Exit 0 when applied or nothing to do, 2 when a host failed (the message
    says why; nothing of that host was replaced).
    """
    prepared = prepare(directory, os.environ, host, service)
    plan = prepared.plan
    if not plan.changes:
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
    results = apply_action(prepared, os.environ)
    code = FAILED if plan.failed else DONE
    for name, result in sorted(results.items()):
        if result == "ok":
            click.echo(f"Applied {name}.", err=True)
        else:
            click.echo(f"not applied: {result}", err=True)
            code = FAILED
    return code
