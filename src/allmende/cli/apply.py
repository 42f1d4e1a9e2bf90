"""`allmende apply [-C DIR]`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from allmende.actions.apply import HostResult, Outcome, plan_and_apply
from allmende.cli.options import inventory_option
from allmende.cli.output import progress, say
from allmende.cli.plan import seams, show
from allmende.cli.terminal import echo
from allmende.plan.changes import Plan

#: Exit codes of `allmende apply`.
DONE, FAILED = 0, 2


@click.command()
@inventory_option(positional=True)
@click.option("--host", help="Only this host.")
@click.option("--service", help="Only the files rendered from this service.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force",
    is_flag=True,
    help="Allow a plan that deletes many files or takes over files another inventory wrote, "
    "and go on past error findings of the rules that allow it.",
)
@click.option(
    "--diff", is_flag=True, help="Show each file's diff and each engine command in the plan."
)
@click.option(
    "--plan-checksum",
    metavar="SUM",
    help="Apply only if the plan still has this checksum (as `plan` printed it; at least its "
    "first 8 hex digits).",
)
def apply(
    inventory: Path,
    host: str | None,
    service: str | None,
    yes: bool,
    force: bool,
    diff: bool,
    plan_checksum: str | None,
) -> int:
    """Bring the hosts to the inventory: show the plan, ask, then carry it out.

    Each host is applied under a lock on that host (/var/lib/allmende/apply.lock), as one
    transaction: all new files go to temp files beside their targets first and are checked by
    the real tool where there is one (`haproxy -c` for haproxy.cfg, with stand-in certificates
    written for names that have none yet); only when all of a host's files are written and
    accepted are they renamed into place, the previous version of each kept as
    `<file>.allmende-prev`. Secret values are decrypted now and written with mode 0600 under
    /srv/<service>/secrets/. Then changed services are brought up through the host's engine
    and waited for until healthy, HAProxy is started or gracefully reloaded through its master
    socket, and the monitors are run (ALLMENDE_VERIFY_TIMEOUT seconds, default 60). If any of
    that fails, the host's files and services are rolled back and the message says why. Every
    apply is recorded in the state database (ALLMENDE_STATE).

    Asks before applying; without a terminal to ask at, applies only with --yes. Refuses an
    inventory whose check finds errors (with --force, only errors of a rule that --force cannot
    pass: never those of a rule that keeps paths safe), and a plan that deletes more than 10
    files, or more than half the files of a host, or overwrites a file another collective's
    inventory wrote (its header names that collective), without --force. Exit 0 when applied or
    nothing to do, 2 when a host failed or nothing was applied.
    """
    outcome = interactive(
        inventory, yes, diff, host=host, service=service, force=force, checksum=plan_checksum
    )
    return DONE if tell(outcome) else FAILED


def interactive(directory: Path, yes: bool, diff: bool = False, **options: Any) -> Outcome:
    """Plan, show (the changed files; their diffs with ``diff``), ask (unless ``yes``) and
    apply at the terminal, with the command line's seams; ``options`` are those of
    ``actions.apply.plan_and_apply``."""
    with progress("") as shown:
        return plan_and_apply(
            directory,
            os.environ,
            show=lambda plan: show(plan, diffs=diff),
            confirm=confirmer(yes),
            say=lambda line: shown.above(f"  {line}"),
            tally=shown.counter,
            seams=seams(),
            **options,
        )


def confirmer(yes: bool) -> Callable[[Plan], bool]:
    """Return how to ask whether to apply a shown plan: yes with --yes, else at a terminal;
    without a terminal, no (and say so)."""

    def confirm(plan: Plan) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            echo("No terminal to ask at: run again with --yes to apply.", err=True)
            return False
        return click.confirm("Apply this plan?", err=True)

    return confirm


def tell(outcome: Outcome) -> bool:
    """Print how ``plan_and_apply`` ended; return whether every host is as planned."""
    if outcome.status == "nothing to do":
        if not outcome.prepared.plan.failed:
            say("Nothing to do.", "ok", err=True)
    elif outcome.status == "declined":
        say("Nothing was applied.", err=True)
    else:
        report(outcome.results)
    return outcome.ok


def report(results: Mapping[str, HostResult]) -> bool:
    """Print each host's result of an apply, a failure once, in one sentence; return whether
    every host was applied."""
    for name, result in sorted(results.items()):
        if result.ok:
            say(f"Applied {name}.", "ok", err=True)
        else:
            message = unprefixed(name, str(result.error))
            ending = "" if message.endswith((".", "\n")) else "."
            say(f"Not applied to {name}: {message}{ending}", "error", err=True)
    return all(r.ok for r in results.values())


def unprefixed(host: str, message: str) -> str:
    """Return ``message`` without the host's name in front (``local: ...``): it is said once,
    by whoever says whose it is."""
    return message.removeprefix(f"{host}: ")
