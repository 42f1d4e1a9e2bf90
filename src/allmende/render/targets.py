"""Every render target, by name; ``render_all`` puts their files together."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from allmende.errors import InternalError
from allmende.inventory.inventory import Inventory
from allmende.render.output import Rendered

#: Target name -> module under allmende.render holding ``render(inventory)``.
TARGETS = (
    "compose",
    "swarm",
    "kubernetes",
    "incus",
    "haproxy",
    "dns",
    "systemd",
    "backups",
    "watch",
)

Renderer = Callable[[Inventory], dict[str, Rendered]]


def renderer(target: str) -> Renderer:
    """Return the render function of a target."""
    module = importlib.import_module(f"allmende.render.{target}")
    function: Renderer = module.render
    return function


def engines_rendered(targets: tuple[str, ...] = TARGETS) -> set[str]:
    """Return the engines whose services some target renders (a target module's ``ENGINE``)."""
    found = {
        getattr(importlib.import_module(f"allmende.render.{t}"), "ENGINE", None) for t in targets
    }
    return {engine for engine in found if isinstance(engine, str)}


def left_out(inventory: Inventory, targets: tuple[str, ...] = TARGETS) -> dict[str, list[str]]:
    """Return, by host, the services on hosts whose engine no target renders, sorted."""
    covered = engines_rendered(targets)
    result: dict[str, list[str]] = {}
    for name, service in sorted(inventory.services.items()):
        host = inventory.hosts.get(service.host)
        if host is not None and host.engine not in covered:
            result.setdefault(service.host, []).append(name)
    return result


def render_all(inventory: Inventory, targets: tuple[str, ...] = TARGETS) -> dict[str, Rendered]:
    """Return the files of every target, sorted by path. Raise InternalError on a clash."""
    files: dict[str, Rendered] = {}
    for target in targets:
        for path, rendered in renderer(target)(inventory).items():
            if path in files:
                raise InternalError(f"two render targets wrote {path}")
            files[path] = rendered
    return dict(sorted(files.items()))
