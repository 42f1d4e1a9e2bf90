"""`allmende docs [-C DIR] --out SITE`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from allmende.actions.docs import build
from allmende.cli.options import inventory_option
from allmende.cli.terminal import echo

#: The `--out` option of every command that writes the site.
site_option = click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("site"),
    show_default=True,
    help="Where to write the site; replaced as a whole.",
)


@click.command()
@inventory_option(positional=True)
@site_option
def docs(inventory: Path, out: Path) -> int:
    """Build the documentation site of the inventory into --out.

    HTML pages with their Markdown copies under markdown/ (for wikis). Error findings do not
    stop the build: they are listed on the site.
    """
    paths = build(inventory, out, os.environ)
    echo(summary(paths, out))
    return 0


def summary(paths: list[Path], out: Path) -> str:
    """Return the line saying how many pages were written and where."""
    pages = sum(1 for p in paths if p.suffix == ".html")
    noun = "page" if pages == 1 else "pages"
    return (
        f"Wrote {pages} {noun} to {out}/ (open {out / 'index.html'}; Markdown copies in "
        f"{out / 'markdown'}/)"
    )
