"""`allmende import compose|haproxy`: adopt what is already running. Thin: parse, call, print."""

from __future__ import annotations

import os
from pathlib import Path

import click

from allmende.actions.importing import Options, Report, import_compose, import_haproxy
from allmende.cli.options import inventory_option
from allmende.cli.output import progress
from allmende.cli.terminal import echo

#: The inventory imported into; ``--into DIR`` is the older spelling of ``-C DIR``.
into_option = inventory_option(old=("--into",))
dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Show what would be written (as a diff); write nothing."
)


def _print(report: Report, dry_run: bool) -> None:
    for out in report.services:
        echo(f"{out.source} -> service {out.name}")
        for note in sorted(out.notes):
            echo(f"  {note}")
        if out.kept:
            echo(f"  kept verbatim under x-compose: {', '.join(out.kept)}")
        if out.differences:
            echo("  will run otherwise than the original:")
        for difference in sorted(out.differences):
            echo(f"    {difference}")
    for line in report.lines:
        echo(line)
    for change in report.changes:
        if dry_run:
            echo(change.diff(), nl=False)
        else:
            verb = "created" if change.before is None else "updated"
            echo(f"{verb} {change.path}")
    if not report.changes and (report.lines or any(o.differences for o in report.services)):
        echo("nothing written: the lines above say what the inventory does not say", err=True)
    elif not report.changes:
        echo("nothing to write: the inventory already says all of it", err=True)
    elif dry_run:
        echo(f"dry run: {len(report.changes)} files would change; nothing written", err=True)


@click.group(name="import")
def import_() -> None:
    """Adopt what is already running: compose projects and HAProxy configs become inventory.

    Nothing the inventory cannot express is dropped: it is kept verbatim under `x-compose`
    and listed. Files that exist are merged (new keys added, your values kept, differences
    reported), never overwritten unless --force. Secret-looking values go into the secret store.
    """


@import_.command(name="compose")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="One more project made of these files, merged as `docker compose -f` merges them.",
)
@click.option("--host", required=True, help="The host these projects run on.")
@into_option
@click.option("--name", help="The service's name (one project only); default: by what it offers.")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read variables from this file instead of the project's .env.",
)
@click.option("--force", is_flag=True, help="Overwrite existing service files and secrets.")
@dry_run_option
def compose(
    paths: tuple[Path, ...],
    files: tuple[Path, ...],
    host: str,
    inventory: Path,
    name: str | None,
    env_file: Path | None,
    force: bool,
    dry_run: bool,
) -> int:
    """Import each compose project in PATHS (a compose file, or a directory holding
    compose.yaml or docker-compose.yml and its .env) as one service in services/.

    Variables are resolved as Compose does: the environment first, then the project's .env.
    A directory's compose.override.yaml is merged in, as Compose does; `-f a.yml -f b.yml`
    makes one project of several files. Exit 2, writing nothing, when any project cannot be
    imported.
    """
    with progress("importing") as shown:
        options = Options(
            into=inventory,
            environ=os.environ,
            host=host,
            files=files,
            name=name,
            env_file=env_file,
            force=force,
            dry_run=dry_run,
            tally=shown.counter("importing", "project"),
        )
        report = import_compose(list(paths), options)
    _print(report, dry_run)
    return 0


@import_.command(name="haproxy")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@into_option
@dry_run_option
def haproxy(config: Path, inventory: Path, dry_run: bool) -> int:
    """Attach the routes and exposed ports of an HAProxy CONFIG to the services of the inventory.

    A backend's servers are matched by host address and published port; what matches nothing
    is reported with its line. Existing files are merged, never overwritten.
    """
    options = Options(into=inventory, environ=os.environ, dry_run=dry_run)
    _print(import_haproxy(config, options), dry_run)
    return 0
