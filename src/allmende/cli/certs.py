"""`allmende certs [DIR]`: list every certificate; `certs renew`, `certs job`: renew them.

Only click is imported here at first: ``certs job`` runs on edge hosts from allmende's copy
there (``actions.certshost``); the other verbs load the inventory when they run.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from allmende.cli.backup import Progress
from allmende.cli.options import inventory_option

if TYPE_CHECKING:
    from allmende.actions.certs import Listed
    from allmende.operations.certs.facts import Held
    from allmende.operations.certs.renew import Renewal

#: Exit codes: everything worked; a certificate could not be renewed.
OK, FAILED = 0, 1


class _Listing(click.Group):
    """`certs DIR` (or `certs`) means `certs list DIR`: the group's first word is a
    directory unless it names one of its commands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_Listing)
def certs() -> None:
    """The certificates of every route: list them, renew them.

    Every route with `tls: terminate` gets a certificate from the ACME directory of
    allmende.yaml's `acme:` (Let's Encrypt by default), checked over http-01 through the edge
    or dns-01 through an RFC 2136 update (`update:` in the zone's file), kept on each edge host
    that serves it and renewed when fewer than `renew_before_days` remain: by a timer on each
    edge, by `allmende watch` every hour, by `allmende up`, and by `allmende certs renew`. The
    account key is the secret `acme/account-key`, made on first use.
    """


def _days(left: float | None) -> str:
    return "-" if left is None else f"{left:.0f}"


def _issuer(found: Held) -> str:
    if found.missing:
        return "no certificate"
    if found.unreadable:
        return found.unreadable
    if found.self_signed:
        return f"self-signed ({found.issuer})"
    return found.issuer


def _rows(listed: list[Listed]) -> list[tuple[str, ...]]:
    now = datetime.datetime.now(datetime.UTC)
    rows: list[tuple[str, ...]] = [
        ("CERTIFICATE", "CHALLENGE", "SERVED AT", "ISSUER", "DAYS LEFT", "NEXT RENEWAL")
    ]
    for item in listed:
        challenge = item.challenge or "passthrough"
        for i, found in enumerate(item.found or ()):
            rows.append(
                (
                    item.name if i == 0 else "",
                    challenge if i == 0 else "",
                    item.where[i],
                    _issuer(found),
                    _days(found.days_left(now)),
                    item.next_renewal if i == 0 else "",
                )
            )
        if not item.found:
            rows.append((item.name, challenge, "no edge", "", "", item.next_renewal))
    return rows


@certs.command("list")
@inventory_option(positional=True)
def list_(inventory: Path) -> int:
    """List every certificate: where it is served, its issuer, days left, next renewal.

    Those the edges terminate are read in the PEM files on each edge host; those passed through
    to a backend are fetched through the edge with their name (the backend keeps them; the
    watcher warns before they expire). A certificate whose last attempt failed says why.
    """
    from allmende.actions.certs import listing

    found = listing(inventory, os.environ)
    listed = found.certificates
    rows = _rows(listed)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    for item in listed:
        if item.last_failure:
            click.echo(f"{item.name}: the last attempt failed: {item.last_failure}")
    for edge, why in sorted(found.unreachable.items()):
        click.echo(f"{edge}: not reached: {why}")
    return FAILED if found.unreachable else OK


def _tell(renewals: list[Renewal]) -> int:
    for renewal in renewals:
        outcome = "FAILED" if renewal.outcome == "failed" else renewal.outcome
        click.echo(f"{renewal.certificate}: {outcome}: {renewal.message}")
    failed = [r.certificate for r in renewals if not r.ok]
    if failed:
        click.echo(f"certs: {len(failed)} of {len(renewals)} not renewed: {', '.join(failed)}")
        return FAILED
    return OK


@certs.command()
@inventory_option()
@click.option("--force", is_flag=True, help="Renew even those that are not due.")
@click.argument("names", nargs=-1)
def renew(inventory: Path, force: bool, names: tuple[str, ...]) -> int:
    """Renew the certificates that are due, or NAMES now (due or not).

    A certificate is due when an edge serving it has none, a self-signed stand-in, one that
    does not name it, or fewer than `renew_before_days` left. Each is obtained once and
    installed on every edge host that serves it, with one HAProxy reload per edge; one that
    cannot be obtained leaves the certificate in service as it is, is tried again later with
    growing pauses (10 minutes, doubling, at most a day; always after the CA's Retry-After)
    and is alerted to the `notify` channels once. Exit 1 if any could not be renewed.
    """
    from allmende.actions.certs import renew as renew_all

    renewals = renew_all(inventory, os.environ, names, force=force or bool(names), say=Progress())
    return _tell(renewals)


@certs.command()
def job() -> int:
    """Renew what is due on this edge host as apply described it (what the timer runs).

    Reads /etc/allmende/certs/job.json and the keys beside it; records each attempt in this
    host's state database (ALLMENDE_STATE) and alerts the job's channels when one fails.
    """
    from allmende.actions.certshost import job as run_job

    return _tell(run_job(os.environ, Progress()))
