"""`allmende up [-C DIR]`: the main job. Check, plan, apply (asking), then serve the docs."""

from __future__ import annotations

import os
from pathlib import Path

import click

from allmende.actions.certs import renew
from allmende.actions.serve import serve
from allmende.actions.up import up as up_action
from allmende.cli.apply import interactive, tell
from allmende.cli.check import print_report
from allmende.cli.docs import site_option, summary
from allmende.cli.options import inventory_option
from allmende.cli.terminal import echo
from allmende.errors import UnsafePlan, UserError
from allmende.inventory.typed import typed
from allmende.operations.certs.renew import Renewal


@click.command()
@inventory_option(positional=True)
@site_option
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port on 127.0.0.1 (0: any free one).",
)
@click.option("--yes", "-y", is_flag=True, help="Apply without asking.")
@click.option("--no-apply", is_flag=True, help="Check and build the docs only; change no host.")
@click.option("--no-serve", is_flag=True, help="Build the site, do not serve it.")
@click.option(
    "--diff", is_flag=True, help="Show each file's diff and each engine command in the plan."
)
def up(
    inventory: Path, out: Path, port: int, yes: bool, no_apply: bool, no_serve: bool, diff: bool
) -> int:
    """Check the inventory, apply it to the hosts, build its docs and serve them.

    1. check: findings are printed as `allmende check` prints them; any error finding means
       nothing is applied (the docs still show it);
    2. plan and apply, as `allmende apply` does: the plan is shown, then applied after you
       confirm (or with --yes; without a terminal to ask at and without --yes nothing is
       applied);
    3. the certificates that are due are renewed, as `allmende certs renew` does (with
       `acme:` in allmende.yaml);
    4. the docs site is built (with the findings) and served on 127.0.0.1 until Ctrl-C.

    Exit 2 when the inventory does not load; else, with --no-serve, 2 when a host was not
    applied, 0 otherwise; 0 on Ctrl-C.
    """
    done = up_action(
        inventory,
        os.environ,
        out,
        told=lambda report: print_report(inventory, report),
        apply=None if no_apply else lambda: _plan_and_apply(inventory, yes, diff),
        renew=None if no_apply else lambda: _renew(inventory),
    )
    if done.refused:
        echo(f"Not applied: {done.refused}.", err=True)
    for renewal in done.renewals:
        if renewal.outcome != "current":
            state = "FAILED" if renewal.outcome == "failed" else renewal.outcome
            echo(f"Certificate {renewal.certificate}: {state}: {renewal.message}", err=True)
    echo(summary(done.site, out))
    if no_serve:
        return 0 if done.applied else 2
    server = serve(out, port)
    actual = server.server_address[1]
    name = done.inventory.collective.name
    echo(f"Serving the docs of {name} at http://127.0.0.1:{actual}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        echo("Stopped.", err=True)
    finally:
        server.server_close()
    return 0


def _renew(directory: Path) -> list[Renewal]:
    """Renew the certificates that are due, saying each step; print a failure to reach the
    account instead of failing."""
    try:
        return renew(directory, os.environ, trigger="up", say=lambda line: echo(line, err=True))
    except UserError as exc:
        echo(f"Certificates not renewed: {exc}", err=True)
        return []


def _plan_and_apply(inventory: Path, yes: bool, diff: bool) -> bool:
    """Plan, ask, apply, as `allmende apply` does; print what happened instead of failing.
    Return whether every host is as planned."""
    try:
        outcome = interactive(inventory, yes, diff)
    except UnsafePlan as exc:
        echo(f"Not applied: {exc} (`{typed(inventory, 'apply', '--force')}`)", err=True)
        return False
    except UserError as exc:
        echo(f"Not applied: {exc}", err=True)
        return False
    return tell(outcome)
