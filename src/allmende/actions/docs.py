"""The `docs` verb: build the documentation site of an inventory into a directory.

The site is written whole or not at all: every file goes into a temporary directory next to
``out``, which is then swapped in for the previous site (renamed aside, the new one renamed in,
the old one deleted). A failed build leaves the previous site as it was. A directory that is
not a site allmende built (no ``MARKER`` file in it) is never replaced unless it is empty.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from allmende.actions import tree
from allmende.checks.registry import Report, run
from allmende.errors import ToolMissing, UserError
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.render import docs as render_docs
from allmende.render.docs.context import LastArchive

log = logging.getLogger(__name__)

#: The file that marks a directory as a site allmende built (and may replace).
MARKER = ".allmende-site"
MARKER_TEXT = (
    "This directory is the documentation site allmende generated from an inventory.\n"
    "`allmende docs` replaces it as a whole on every build: do not edit files here.\n"
)


def picture(inventory: Inventory) -> str | None:
    """Return the SVG picture of the whole, or None when Graphviz is not installed or the
    inventory is too large to draw on one page (the site then says why)."""
    from allmende.actions import graph
    from allmende.render.graph import DRAWN_AT_MOST

    if len(inventory.services) > DRAWN_AT_MOST:
        log.warning("building the site without the picture: too many services to draw")
        return None
    try:
        return graph.svg(inventory)
    except ToolMissing as exc:
        log.warning("building the site without the picture: %s", exc)
        return None


def build(root: Path, out: Path, env: Mapping[str, str]) -> list[Path]:
    """Given an inventory directory, build its site into ``out`` and return the files written.

    Load and check the inventory, draw the picture (left out with a note when Graphviz is
    missing), render every page and write the site atomically (see ``write``). Raise
    InventoryError if the inventory does not load, UserError if ``out`` cannot be replaced.
    """
    inventory = load(root, env)
    return write(inventory, run(inventory), out, last_archives(env))


def last_archives(env: Mapping[str, str]) -> dict[str, LastArchive]:
    """Return the newest archive of each service the state database records: made by a run,
    or seen in the repository by a status check or a drill. A state database that cannot be
    read leaves them out, with a warning: the site is still worth building."""
    from allmende.actions.backup import last_runs

    found: dict[str, LastArchive] = {}
    said = {"run": "made by backup run", "status": "seen by backup status", "verify": "drilled"}
    try:
        runs = last_runs(env)
    except UserError as exc:
        log.warning("building the site without the last archives: %s", exc)
        return found
    for service, kinds in runs.items():
        records = [r for r in kinds.values() if r.archive and r.kind in said]
        if records:
            newest = max(records, key=lambda r: (r.archive, r.finished or ""))
            when = (newest.finished or newest.started).replace("T", " ").replace("+00:00", " UTC")
            found[service] = LastArchive(newest.archive, when, said[newest.kind])
    return found


def write(
    inventory: Inventory,
    report: Report,
    out: Path,
    archives: Mapping[str, LastArchive] | None = None,
) -> list[Path]:
    """Given a loaded inventory and its report (and the newest archive of each service),
    build the site into ``out`` atomically.

    Return the paths of the files written, sorted. Raise UserError if ``out`` exists and is
    neither empty nor a site allmende built, or if it cannot be written.
    """
    out = tree.target(out)
    files = render_docs.site(inventory, report, picture(inventory), archives)
    files[MARKER] = MARKER_TEXT.encode()
    with tree.locked(out):
        tree.refuse_foreign(out, MARKER, "site")
        tree.publish(out, files)
    return sorted(out / name for name in files)
