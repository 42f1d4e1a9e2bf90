"""`allmende up DIR`: check, build the docs and the picture, and serve them on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import click

from allmende.actions.check import check as check_action
from allmende.actions.docs import write
from allmende.actions.serve import serve
from allmende.cli.check import print_report
from allmende.cli.docs import site_option, summary


@click.command()
@click.argument("directory", type=click.Path(path_type=Path), default=".")
@site_option
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port on 127.0.0.1 (0: any free one).",
)
@click.option("--no-serve", is_flag=True, help="Build the site, do not serve it.")
def up(directory: Path, out: Path, port: int, no_serve: bool) -> int:
    """Check the inventory in DIRECTORY, build its docs and serve them on 127.0.0.1.

    Findings are printed as `allmende check` prints them; error findings do not stop `up`
    (they are shown on the site). Exit 2 when the inventory does not load, 0 on Ctrl-C.
    """
    inventory, report = check_action(directory, os.environ)
    print_report(directory, report)
    paths = write(inventory, report, out)
    click.echo(summary(paths, out))
    if no_serve:
        return 0
    server = serve(out, port)
    actual = server.server_address[1]
    name = inventory.collective.name
    click.echo(f"Serving the docs of {name} at http://127.0.0.1:{actual}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.", err=True)
    finally:
        server.server_close()
    return 0
