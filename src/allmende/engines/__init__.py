"""The engines allmende drives, one module each, found by name.

A host's ``engine:`` names its engine. The engines that come with allmende are the modules of
this package that hold an ``ENGINE`` (an ``allmende.engines.base.Engine``); another package can
add one through the entry point group ``allmende.engines`` (``name = "package.module"``, the
module holding ``ENGINE``), so a new engine is one new module and nothing else changes: plan and
apply ask only the engine. A host whose engine has no module gets its files but nothing is run
for its services (``engine(name)`` is None; plan and apply say so).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from functools import cache
from importlib.metadata import entry_points

from allmende import connectors
from allmende.connectors.base import Connector
from allmende.engines.base import Driver, Engine
from allmende.errors import InternalError
from allmende.inventory.inventory import Inventory

#: The entry point group through which other packages add engines.
GROUP = "allmende.engines"
#: Modules of this package that are not engines.
_NOT_ENGINES = {"base", "containers"}


def _load(module_name: str) -> Engine:
    engine = getattr(importlib.import_module(module_name), "ENGINE", None)
    if not isinstance(engine, Engine):
        raise InternalError(f"{module_name} holds no ENGINE (an allmende Engine)")
    return engine


@cache
def engines() -> dict[str, Engine]:
    """Return every engine by name: this package's modules, then the entry points'."""
    found: dict[str, Engine] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name not in _NOT_ENGINES:
            engine = _load(f"{__name__}.{module.name}")
            found[engine.name] = engine
    for point in entry_points(group=GROUP):
        engine = _load(point.value)
        found.setdefault(engine.name, engine)
    return dict(sorted(found.items()))


def engine(name: str) -> Engine | None:
    """Return the engine called ``name``, or None where allmende has none (it cannot drive
    that engine's services yet)."""
    return engines().get(name)


async def find_driver(connector: Connector, engine_name: str, runtime: str) -> Driver | None:
    """Return the driver of the (opened) host's engine, as found there, or None where there is
    no engine module. Raise UserError if the runtime cannot drive the engine."""
    found = engine(engine_name)
    if found is None:
        return None
    return Driver(found, await found.find(connector, runtime))


def connect(inventory: Inventory, host_name: str, env: Mapping[str, str]) -> Connector:
    """Return the (not yet opened) connector of a host, as ``connectors.connect`` does, except
    for a container without ``ssh`` on a host whose engine reaches into its containers (Incus:
    ``incus exec`` on the parent, itself reached as its own host file says). Raise UserError
    as ``connectors.connect`` does."""
    host = inventory.hosts.get(host_name)
    if host is not None and host.ssh is None and host.kind == "container" and host.parent:
        parent = inventory.hosts.get(host.parent)
        outer = engine(parent.engine) if parent is not None else None
        if outer is not None:
            reached = outer.reach(connect(inventory, host.parent, env), host_name)
            if reached is not None:
                return reached
    return connectors.connect(inventory, host_name, env)
