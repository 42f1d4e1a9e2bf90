"""`allmende render [-C DIR] --out OUT`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from allmende.actions.render import render as render_action
from allmende.cli.options import inventory_option
from allmende.cli.terminal import echo
from allmende.render.targets import TARGETS


@click.command()
@inventory_option(positional=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("rendered"),
    show_default=True,
    help="Where to write the files; replaced as a whole.",
)
@click.option("--host", help="Only the files of this host.")
@click.option("--service", help="Only the files rendered from this service.")
@click.option(
    "--target",
    "targets",
    multiple=True,
    type=click.Choice(TARGETS),
    help="Only these targets (repeatable; default all).",
)
def render(
    inventory: Path, out: Path, host: str | None, service: str | None, targets: tuple[str, ...]
) -> int:
    """Render the files each host needs from the inventory into --out.

    Laid out as they will sit on each host: OUT/<host>/srv/<service>/compose.yaml,
    OUT/<edge>/etc/haproxy/haproxy.cfg, OUT/dns/<zone>.zone, OUT/kubernetes/<service>.yaml, ...
    The same inventory always gives byte-identical files.
    """
    written = render_action(inventory, out, os.environ, host, service, targets or TARGETS)
    for path in written:
        echo(f"{out}/{path}")
    echo(f"Rendered {len(written)} files into {out}/", err=True)
    return 0
