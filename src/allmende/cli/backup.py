"""`allmende backup ...`: create repositories, back up, list, check freshness, verify, restore.

Only click is imported here at first: ``backup job`` runs on hosts from allmende's copy there
(``actions.backuphost``), with the standard library alone; the other verbs load the inventory
and import the rest when they run.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from allmende.cli.options import inventory_option

if TYPE_CHECKING:
    from allmende.actions.backup import Context, Outcome

#: Exit codes: everything worked; something failed, is late or does not match.
OK, FAILED = 0, 1


class Progress:
    """Prints each step as it is done, with the seconds since the command started."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, line: str) -> None:
        click.echo(f"[{time.monotonic() - self.started:6.1f}s] {line}", err=True)


def _context(inventory: Path, services: tuple[str, ...]) -> Context:
    from allmende.actions.backup import prepare

    return prepare(inventory, os.environ, services)


def _summary(outcomes: list[Outcome], verb: str) -> int:
    failed = [o.service for o in outcomes if not o.ok]
    if failed:
        click.echo(f"{verb}: {len(failed)} of {len(outcomes)} failed: {', '.join(failed)}")
        return FAILED
    click.echo(f"{verb}: all {len(outcomes)} ok")
    return OK


@click.group()
def backup() -> None:
    """Back up services with Borg, and prove the backups restore.

    Every service that holds data is backed up to its repository (`backup:` in allmende.yaml
    and the service) on its own host, where its timer also runs it. Secrets come from the
    secret store: `backup/<service>/passphrase` (and `ssh-key` for ssh:// repositories).
    """


@backup.command()
@inventory_option()
@click.argument("services", nargs=-1)
def init(inventory: Path, services: tuple[str, ...]) -> int:
    """Create the repositories of SERVICES (all backed-up services if none).

    Makes each repository's passphrase (and SSH key for ssh:// repositories) in the secret
    store if missing, puts them on the service's host, runs `borg init` there and keeps a copy
    of the repository's key in the secret store. For ssh:// repositories it prints the line
    the repository server's authorized_keys needs first: the key may only run `borg serve
    --append-only --restrict-to-path <repository>`.
    """
    from allmende.actions.backupinit import init as initialise

    context = _context(inventory, services)
    done = initialise(context, Progress())
    for item in done:
        if item.authorized_key:
            click.echo(f"# {item.service}: for authorized_keys on the repository server")
            click.echo(item.authorized_key)
    failed = [d.service for d in done if d.error]
    return FAILED if failed else OK


@backup.command("authorized-keys")
@inventory_option()
@click.argument("services", nargs=-1)
def authorized_keys(inventory: Path, services: tuple[str, ...]) -> int:
    """Print the authorized_keys lines of the ssh:// repositories of SERVICES.

    One line per service: its host's key, allowed only `borg serve --restrict-to-path` of its
    repository (with `--append-only` when the backup says `append_only: true`). Makes the keys
    that are missing.
    """
    from allmende.actions.backupinit import authorized_keys as lines

    for service, line in lines(_context(inventory, services)).items():
        click.echo(f"# {service}")
        click.echo(line)
    return OK


@backup.command()
@inventory_option()
@click.argument("services", nargs=-1)
def run(inventory: Path, services: tuple[str, ...]) -> int:
    """Back up SERVICES now (all backed-up services if none), showing each step.

    On each service's host: `stop` services are stopped for the copy and started again, the
    databases of `dump` services are streamed into the archive, a manifest of every file's
    checksum and every table's row count goes with it, old archives are pruned. Recorded in
    the state database; a failure is alerted to the `notify` channels (once, until a run works
    again, which is alerted too). Exit 1 if any failed.
    """
    from allmende.actions.backup import run as run_all

    return _summary(run_all(_context(inventory, services), Progress()), "backup run")


@backup.command("list")
@inventory_option()
@click.argument("services", nargs=-1)
def list_(inventory: Path, services: tuple[str, ...]) -> int:
    """List the archives of SERVICES with their age and size, as the repositories have them."""
    from allmende.actions.backup import listing

    moment = datetime.now(UTC)
    for service, found in listing(_context(inventory, services)).items():
        click.echo(f"{service}: {len(found)} archive(s)")
        for archive in found:
            hours = (moment - archive.time).total_seconds() / 3600
            age = f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
            click.echo(
                f"  {archive.name}  {age:>10} ago  {archive.original / 2**20:10.1f} MiB,"
                f" {archive.deduplicated / 2**20:.1f} MiB new"
            )
    return OK


@backup.command()
@inventory_option()
@click.argument("services", nargs=-1)
def status(inventory: Path, services: tuple[str, ...]) -> int:
    """Say whether each backup is fresh, late or missing.

    The age of the last archive as the repository itself has it (not a local log), against the
    service's schedule (one period, plus 15 minutes of random delay and a quarter of the
    period for the run). A late or missing backup is alerted once, until it is fresh again.
    Exit 1 if any is late or missing.
    """
    from allmende.actions.backup import status as freshness

    outcomes = freshness(_context(inventory, services), lambda line: None)
    for outcome in outcomes:
        click.echo(f"{outcome.service}: {outcome.message}")
    return OK if all(o.ok for o in outcomes) else FAILED


@backup.command()
@inventory_option()
@click.option(
    "--data", is_flag=True, help="Also decrypt and check every chunk (borg check --verify-data)."
)
@click.argument("services", nargs=-1)
def verify(inventory: Path, data: bool, services: tuple[str, ...]) -> int:
    """Check each repository, then drill its latest archive.

    `borg check`, then the latest archive is extracted into a scratch directory on the
    service's host and compared with the manifest the backup wrote: every file's checksum and
    every table's row count. Exit 1 if anything does not match.
    """
    from allmende.actions.backup import verify as drill

    return _summary(drill(_context(inventory, services), Progress(), verify_data=data), "verify")


@backup.command()
@inventory_option()
@click.argument("service")
@click.option("--archive", help="The archive to restore (default: the latest).")
@click.option("--to", "into", help="Extract into this directory on the service's host.")
@click.option("--in-place", is_flag=True, help="Put the service's data back where it was.")
def restore(
    inventory: Path, service: str, archive: str | None, into: str | None, in_place: bool
) -> int:
    """Restore SERVICE from its repository, --to a directory or --in-place.

    --in-place stops the service, moves each volume aside (`<path>.before-restore-<time>`),
    puts the archive's back, loads each database dump into the running server, starts the
    service again and runs its monitors.
    """
    from allmende.actions.backup import restore_service

    context = _context(inventory, (service,))
    done = restore_service(
        context, service, Progress(), archive=archive, into=into, in_place=in_place
    )
    what = [*done.paths, *(f"database {d}" for d in done.databases)]
    click.echo(f"{service}: restored {done.archive}: {', '.join(what) or 'nothing'}")
    for aside in done.aside:
        click.echo(f"  the previous data is kept at {aside}")
    return OK


@backup.command()
def freshness() -> int:
    """Print how fresh each backup on this host is, as JSON (what the watch host asks).

    For every service whose job apply put on this host (/etc/allmende/backup/*.json): its
    state (fresh, late, missing, or unreadable with the error), in words, and the age and
    time of its last archive, read from its repository. The watch host's key may run this and
    nothing else (its authorized_keys line forces it).
    """
    import json

    from allmende.actions.backuphost import freshness as read

    click.echo(json.dumps(read(os.environ), indent=1, sort_keys=True))
    return OK


@backup.command()
@click.argument("service")
def job(service: str) -> int:
    """Back up SERVICE on this host as apply described it (what the backup timer runs).

    Reads /etc/allmende/backup/SERVICE.json and the passphrase beside it; records the run in
    this host's state database (ALLMENDE_STATE) and alerts the job's channels on failure.
    """
    from allmende.actions.backuphost import job as run_job

    result = run_job(service, os.environ, Progress())
    down = f", down {result.downtime:.1f} s" if result.downtime is not None else ""
    click.echo(f"{service}: {result.archive} in {result.seconds:.1f} s{down}")
    return OK
