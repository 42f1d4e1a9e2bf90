"""The `docs` verb: build the documentation site of an inventory into a directory.

The site is written whole or not at all: every file goes into a temporary directory next to
``out``, which is then swapped in for the previous site (renamed aside, the new one renamed in,
the old one deleted). A failed build leaves the previous site as it was. A directory that is
not a site allmende built (no ``MARKER`` file in it) is never replaced unless it is empty.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from allmende.checks.registry import Report, run
from allmende.errors import InternalError, ToolMissing, UserError
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.render import docs as render_docs

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
    return write(inventory, run(inventory), out)


def write(inventory: Inventory, report: Report, out: Path) -> list[Path]:
    """Given a loaded inventory and its report, build the site into ``out`` atomically.

    Return the paths of the files written, sorted. Raise UserError if ``out`` exists and is
    neither empty nor a site allmende built, or if it cannot be written.
    """
    out = _target(out)
    refuse_foreign(out)
    files = render_docs.site(inventory, report, picture(inventory))
    files[MARKER] = MARKER_TEXT.encode()
    publish(out, files)
    return sorted(out / name for name in files)


def _target(out: Path) -> Path:
    """Return ``out`` absolute, with symbolic links (to the directory they name) resolved."""
    return out.resolve()


def refuse_foreign(out: Path) -> None:
    """Raise UserError if ``out`` exists and is not an empty directory or an allmende site."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(
            f"{out} exists and is not a directory: refusing to replace it with the "
            "site; choose another --out"
        )
    if (out / MARKER).is_file():
        return
    try:
        empty = not any(out.iterdir())
    except OSError as exc:
        raise UserError(f"cannot read {out}: {exc.strerror}") from None
    if not empty:
        raise UserError(
            f"{out} exists and does not look like a site allmende built (no {MARKER} in it): "
            "refusing to replace what is there; choose another --out, or empty the directory"
        )


def _safe(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise InternalError(f"the renderer returned an unsafe path: {name!r}")
    return path


def publish(out: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` (relative path -> bytes) as the directory ``out``, all or nothing.

    Everything is written into a temporary directory next to ``out`` first; then the old
    ``out`` (if any) is renamed aside, the new one renamed in and the old one deleted. On any
    failure the temporary directory is removed and ``out`` is left as it was.
    """
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=parent))
    except OSError as exc:
        raise UserError(f"cannot write the site next to {out}: {exc.strerror}") from None
    aside: Path | None = None
    try:
        staging.chmod(0o755)
        for name, data in sorted(files.items()):
            path = staging.joinpath(*_safe(name).parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if out.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            out.rename(aside / out.name)
        try:
            staging.rename(out)
        except BaseException:
            if aside is not None:
                (aside / out.name).rename(out)
                aside.rmdir()
                aside = None
            raise
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"cannot write the site to {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
