"""`allmende graph [-C DIR] [--format svg|dot|json|mermaid] [--out FILE]`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from allmende.actions.graph import FORMATS, write
from allmende.actions.graph import graph as graph_action
from allmende.cli.options import inventory_option
from allmende.cli.terminal import echo


@click.command()
@inventory_option(positional=True)
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(FORMATS),
    default=FORMATS[0],
    show_default=True,
    help="svg needs Graphviz; dot, json and mermaid are text for other tools.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (replaced atomically) instead of printing.",
)
def graph(inventory: Path, fmt: str, out: Path | None) -> int:
    """Draw the inventory: hosts, services, databases, sites and the edge.

    Exit 2 when it does not load or Graphviz is missing for svg.
    """
    text = graph_action(inventory, os.environ, fmt)
    if out is None:
        echo(text, nl=False)
    else:
        write(out, text)
        echo(f"wrote {out}", err=True)
    return 0
