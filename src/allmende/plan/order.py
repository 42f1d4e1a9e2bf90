"""The order of an apply across hosts: which host's change needs which other host's first.

Pure: no I/O. A host *depends on* another when its change only works once the other's is in
place:

- an edge host on the hosts of the services it serves (``derive.served_by``): the backends
  must answer before the edge sends to them;
- a host on the hosts of the databases its services use: providers first;
- a host that is a container on another (``parent``): the parent makes it.

``levels`` orders the hosts of an apply so that each comes after those it depends on;
``groups`` gathers the hosts joined by dependencies, directly or not, into groups that stand or
fall together: a failure on one host rolls back the whole group, and hosts outside it go on.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from allmende.inventory import derive
from allmende.inventory.inventory import Inventory


def dependencies(inventory: Inventory) -> dict[str, frozenset[str]]:
    """Return, for every host, the other hosts its changes depend on (see the module
    docstring)."""
    found: dict[str, set[str]] = {name: set() for name in inventory.hosts}
    for edge in derive.edge_hosts(inventory):
        for served in derive.served_by(inventory, edge):
            found[edge].add(inventory.services[served].host)
    for model in inventory.services.values():
        for use in model.uses:
            provider = inventory.services.get(use.database.split("/")[0])
            if provider is not None:
                found[model.host].add(provider.host)
    for name, host in inventory.hosts.items():
        if host.parent is not None:
            found[name].add(host.parent)
    return {name: frozenset(others - {name}) for name, others in found.items()}


def why(inventory: Inventory, host: str, other: str) -> str:
    """Return why ``host`` depends on ``other``, for people (empty if it does not)."""
    reasons = []
    if host in derive.edge_hosts(inventory):
        served = [
            s for s in derive.served_by(inventory, host) if inventory.services[s].host == other
        ]
        if served:
            reasons.append(f"its edge routes to {', '.join(served)} there")
    users = [
        f"{name} uses {use.database.split('/')[0]}"
        for name, service in sorted(inventory.services.items())
        if service.host == host
        for use in service.uses
        if (provider := inventory.services.get(use.database.split("/")[0])) is not None
        and provider.host == other
    ]
    reasons += users
    if inventory.hosts[host].parent == other:
        reasons.append(f"it is a container on {other}")
    return "; ".join(reasons)


def levels(hosts: Collection[str], depends: Mapping[str, Collection[str]]) -> list[list[str]]:
    """Return ``hosts`` in levels: each host after every host of ``hosts`` it depends on,
    those of one level (sorted) free to go at once. Hosts in a cycle of dependencies (two
    edges serving each other's services) share the level where the cycle is met."""
    remaining = set(hosts)
    result: list[list[str]] = []
    while remaining:
        ready = sorted(h for h in remaining if not (set(depends.get(h, ())) & remaining - {h}))
        if not ready:  # a cycle: take the hosts with the fewest open dependencies together
            fewest = min(len(set(depends.get(h, ())) & remaining) for h in remaining)
            ready = sorted(
                h for h in remaining if len(set(depends.get(h, ())) & remaining) == fewest
            )
        result.append(ready)
        remaining -= set(ready)
    return result


def groups(hosts: Collection[str], depends: Mapping[str, Collection[str]]) -> list[list[str]]:
    """Return ``hosts`` partitioned into groups joined by dependencies between them (either
    way), each sorted, the groups by their first host."""
    parent = {h: h for h in hosts}

    def root(h: str) -> str:
        while parent[h] != h:
            parent[h] = parent[parent[h]]
            h = parent[h]
        return h

    for host in hosts:
        for other in depends.get(host, ()):
            if other in parent:
                parent[root(host)] = root(other)
    joined: dict[str, list[str]] = {}
    for host in sorted(hosts):
        joined.setdefault(root(host), []).append(host)
    return sorted(joined.values())
