"""The `graph` verb: draw an inventory as SVG, Graphviz DOT, JSON or Mermaid.

The picture itself is decided in ``allmende.render.graph`` (pure); this module only loads,
chooses the writer, runs Graphviz's ``dot`` (through ``allmende.execute``) for SVG, and writes
the file ``--out`` names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from allmende import execute
from allmende.errors import CommandFailed
from allmende.inventory.atomic import kept_mode, save
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.render import graph as render_graph
from allmende.render.graph_dot import to_dot
from allmende.render.graph_mermaid import to_mermaid

#: The formats `render` accepts, the default first.
FORMATS = ("svg", "dot", "json", "mermaid")

_TEXT: dict[str, Callable[[render_graph.Graph], str]] = {
    "dot": to_dot,
    "json": render_graph.to_json,
    "mermaid": to_mermaid,
}


def render(inventory: Inventory, fmt: str) -> str:
    """Given a loaded inventory and one of FORMATS, return the picture as text.

    Raise ValueError for any other format; for ``svg``, what ``svg`` raises.
    """
    if fmt == "svg":
        return svg(inventory)
    if fmt not in _TEXT:
        raise ValueError(f"unknown graph format {fmt!r}: use one of {', '.join(FORMATS)}")
    return _TEXT[fmt](render_graph.build(inventory))


def svg(inventory: Inventory) -> str:
    """Given a loaded inventory, return its picture as an SVG document (for files and pages).

    Graphviz's XML prolog, doctype and version comment are left out, so the text starts at
    ``<svg`` (an SVG file needs none of them, and an HTML page can embed it as it is) and
    is the same for the same inventory and Graphviz. Raise ToolMissing if ``dot`` is not
    installed, CommandFailed if it fails or does not print an SVG.
    """
    dot = to_dot(render_graph.build(inventory))
    result = execute.run(["dot", "-Tsvg"], input=dot.encode())
    text = result.stdout.decode("utf-8", errors="replace")
    start = text.find("<svg")
    if start < 0:
        raise CommandFailed("`dot -Tsvg` printed no SVG")
    return text[start:].rstrip() + "\n"


def graph(root: Path, env: Mapping[str, str] | None, fmt: str) -> str:
    """Given an inventory directory, return its picture in ``fmt`` (see ``render``).

    Raise InventoryError if the inventory does not load.
    """
    return render(load(root, env), fmt)


def write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; the file keeps the mode of the one it replaces
    (a new one gets 0666 less the umask). Raise UserError if it cannot be written; then
    ``path`` is as it was."""
    save(path, text.encode("utf-8"), kept_mode(path))
