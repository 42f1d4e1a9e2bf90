"""`allmende schema`: the inventory's JSON Schema, for editors and other tools."""

from __future__ import annotations

from pathlib import Path

import click

from allmende.inventory.schema import KINDS, dumps, inventory_schema, kind_schema


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
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for each in KINDS:
            target = out / f"{each}.json"
            temp = target.with_suffix(".json.tmp")
            temp.write_text(dumps(kind_schema(each)), encoding="utf-8")
            temp.replace(target)
            click.echo(f"wrote {target}", err=True)
        return
    click.echo(dumps(kind_schema(kind) if kind else inventory_schema()), nl=False)  # type: ignore[arg-type]
