"""`allmende schema`: the inventory's JSON Schema, for editors and other tools."""

from __future__ import annotations

from pathlib import Path

import click

from allmende.actions import schema as action
from allmende.cli.terminal import echo
from allmende.inventory.schema import KINDS


@click.command()
@click.option("--kind", type=click.Choice(KINDS), help="Print the schema of one kind of file.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one schema file per kind (collective.json, host.json, ...) into this directory.",
)
def schema(kind: str | None, out: Path | None) -> None:
    """Print the inventory's JSON Schema (generated from allmende's models).

    Point an editor at it with a first line such as
    `# yaml-language-server: $schema=../schema/service.json`.
    """
    if out is None:
        echo(action.text(kind), nl=False)
        return
    for target in action.write(out):
        echo(f"wrote {target}", err=True)
