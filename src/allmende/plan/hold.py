"""What a plan holds back because a host it depends on could not be read.

An apply must not change a reachable host in a way that only works together with a change on
a host it cannot see (``plan.order.dependencies``): an edge must not be pointed at a port the
unreachable host may not serve yet, a service must not be started against a database whose
host is out of reach. So, for every host the plan could not read:

- an edge's HAProxy files (and its reload) are held back when they change how the edge
  reaches a service on that host: a backend of such a service differs from the one the edge
  runs (read from the edge again; only then);
- a service's files and actions are held back when it uses a database on that host;
- a start-first replacement whose edge could not be read, or is not part of the plan, is
  made stop-first: its edge's servers cannot be moved.

Everything else goes ahead. Each hold says what and why (``Held``); the next plan, once the
host can be read, shows the held changes again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace

from allmende.connectors.base import Connector
from allmende.errors import UserError
from allmende.inventory import derive
from allmende.inventory.hostpaths import HAPROXY_CONFIG, PROXY_FILES, service_of
from allmende.inventory.inventory import Inventory
from allmende.plan.changes import Action, Change, Held, Plan
from allmende.plan.order import dependencies
from allmende.render.haproxy_plan import plan as edge_plan
from allmende.render.output import Rendered

_HEADER = re.compile(r"^(backend|frontend|listen|defaults|global|cache|resolvers)\b.*$")


def sections(text: str) -> dict[str, list[str]]:
    """Return the sections of a HAProxy configuration by their header line (``backend x from
    http``), each its lines without comments and blank lines."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if _HEADER.match(line):
            current = found.setdefault(line.strip(), [])
        elif current is not None:
            current.append(line.strip())
    return found


def backends_differ(current: str, wanted: str, names: set[str]) -> bool:
    """Return whether any backend in ``names`` differs between the two configurations (is in
    one and not the other, or has other lines)."""

    def mine(text: str) -> dict[str, list[str]]:
        return {
            h.split()[1]: lines
            for h, lines in sections(text).items()
            if h.startswith("backend ") and h.split()[1] in names
        }

    return mine(current) != mine(wanted)


async def hold_back(
    inventory: Inventory,
    plan: Plan,
    wanted: Mapping[str, Mapping[str, Rendered]],
    open_connector: Callable[[str], Connector],
) -> Plan:
    """Return ``plan`` without what must wait for the hosts it could not read (see the module
    docstring), each hold in ``Plan.held``, and with start-first replacements made stop-first
    where their edge cannot be switched."""
    depends = dependencies(inventory)
    unread = {h: r for h, r in plan.failed.items() if h in inventory.hosts}
    held: list[Held] = []
    changes = list(plan.changes)
    actions = list(plan.actions)
    for host in sorted({c.host for c in changes} | {a.host for a in actions}):
        for other in sorted(depends.get(host, frozenset()) & set(unread)):
            first = unread[other].splitlines()[0] if unread[other] else "it could not be read"
            if await _edge_depends(inventory, host, other, wanted, changes, open_connector):
                paths = [c.path for c in changes if c.host == host and c.path in PROXY_FILES]
                why = (
                    f"it changes how the edge reaches services on {other}, which could not be "
                    f"read ({first}); apply again once it can"
                )
                held.append(Held(host, "HAProxy: " + ", ".join(paths or ["reload"]), why))
                changes = [c for c in changes if not (c.host == host and c.path in PROXY_FILES)]
                actions = [
                    a
                    for a in actions
                    if not (a.host == host and a.verb in ("reload-proxy", "start-proxy"))
                ]
            for service in _users_of(inventory, host, other):
                mine = [c for c in changes if c.host == host and service_of(c.path) == service]
                theirs = [a for a in actions if a.host == host and a.subject == service]
                if not mine and not theirs:
                    continue
                why = f"it uses a database on {other}, which could not be read ({first})"
                held.append(Held(host, service, why))
                changes = [c for c in changes if c not in mine]
                actions = [a for a in actions if a not in theirs]
    actions = [_switchable(inventory, a, plan) for a in actions]
    return replace(plan, changes=tuple(changes), actions=tuple(actions), held=tuple(held))


def _users_of(inventory: Inventory, host: str, other: str) -> list[str]:
    """Return the services on ``host`` that use a database provided on ``other``."""
    return sorted(
        name
        for name, service in inventory.services.items()
        if service.host == host
        and any(
            (provider := inventory.services.get(u.database.split("/")[0])) is not None
            and provider.host == other
            for u in service.uses
        )
    )


async def _edge_depends(
    inventory: Inventory,
    edge: str,
    other: str,
    wanted: Mapping[str, Mapping[str, Rendered]],
    changes: list[Change],
    open_connector: Callable[[str], Connector],
) -> bool:
    """Return whether the edge's planned HAProxy change touches a backend of a service on
    ``other`` (reading the edge's configuration to compare)."""
    if edge not in derive.edge_hosts(inventory):
        return False
    if not any(c.host == edge and c.path in PROXY_FILES for c in changes):
        return False
    names = {b.name for b in edge_plan(inventory, edge).backends if b.host == other}
    new = wanted.get(edge, {}).get(HAPROXY_CONFIG)
    if not names or new is None:
        return bool(names)
    try:
        async with open_connector(edge) as connector:
            current = await connector.read(HAPROXY_CONFIG)
    except UserError:
        return True
    if current is None:
        return True
    return backends_differ(
        current.decode(errors="replace"), new.content.decode(errors="replace"), names
    )


def _switchable(inventory: Inventory, action: Action, plan: Plan) -> Action:
    """Return a ``replace`` as a stop-first ``up`` when one of its edges is not planned."""
    if action.verb != "replace":
        return action
    edges = derive.edges_of(inventory, action.subject)
    missing = [e for e in edges if e not in plan.hosts or e in plan.failed]
    if not missing:
        return action
    reason = action.reason.split("; start-first", 1)[0]
    return replace(
        action,
        verb="up",
        reason=f"{reason}; stop-first: its edge {', '.join(missing)} is not part of this plan, "
        "so its servers cannot be moved to a new version beside the old",
    )
