"""What the command line prints: text from inventories and hosts, made harmless for a terminal."""

from __future__ import annotations

import click

from allmende.errors import visible


def echo(message: object = "", *, err: bool = False, nl: bool = True) -> None:
    """Print ``message`` as ``click.echo`` does, with every control character but line breaks
    and tabs escaped (``errors.visible``): an ESC sequence in a value or a host's file cannot
    repaint the terminal or fake a line such as "no findings"."""
    click.echo(visible(str(message), keep="\n\t"), err=err, nl=nl)
