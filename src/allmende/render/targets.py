"""Every render target, by name; ``render_all`` puts their files together."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from allmende.errors import InternalError
from allmende.inventory.inventory import Inventory
from allmende.render.output import Rendered

#: Target name -> module under allmende.render holding ``render(inventory)``.
TARGETS = ("compose", "swarm", "kubernetes", "haproxy", "dns", "systemd", "backups")

Renderer = Callable[[Inventory], dict[str, Rendered]]


def renderer(target: str) -> Renderer:
    """Return the render function of a target."""
    module = importlib.import_module(f"allmende.render.{target}")
    function: Renderer = module.render
    return function


def render_all(inventory: Inventory, targets: tuple[str, ...] = TARGETS) -> dict[str, Rendered]:
    """Return the files of every target, sorted by path. Raise InternalError on a clash."""
    files: dict[str, Rendered] = {}
    for target in targets:
        for path, rendered in renderer(target)(inventory).items():
            if path in files:
                raise InternalError(f"two render targets wrote {path}")
            files[path] = rendered
    return dict(sorted(files.items()))
