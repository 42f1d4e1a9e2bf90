"""`allmende graph DIR [--format svg|dot|json|mermaid] [--out FILE]`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from allmende.actions.graph import FORMATS
from allmende.actions.graph import graph as graph_action
from allmende.errors import UserError


@click.command()
@click.argument("directory", type=click.Path(path_type=Path), default=".")
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
def graph(directory: Path, fmt: str, out: Path | None) -> int:
    """Draw the inventory in DIRECTORY: hosts, services, databases, sites and the edge.

    Exit 2 when it does not load or Graphviz is missing for svg.
    """
    text = graph_action(directory, os.environ, fmt)
    if out is None:
        click.echo(text, nl=False)
    else:
        write_atomically(out, text)
        click.echo(f"wrote {out}", err=True)
    return 0


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it, renamed over it.

    The file keeps the mode of the one it replaces (a new one gets 0666 less the umask).
    Raise UserError if the directory cannot be written.
    """
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror}") from exc
