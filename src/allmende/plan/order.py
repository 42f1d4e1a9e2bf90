"""The order of an apply across hosts: which host's change needs which other host's first.

Pure: no I/O. A host *depends on* another when its change only works once the other's is in
place:

- an edge host on the hosts of the services it routes to (``derive.served_by``, those with
  routes or exposed ports): the backends must answer before the edge sends to them;
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
        for served in routed_by(inventory, edge):
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


def routed_by(inventory: Inventory, edge: str) -> list[str]:
    """Return the services the edge host sends requests to: those it serves that have routes
    or exposed ports."""
    return [
        name
        for name in derive.served_by(inventory, edge)
        if inventory.services[name].routes or inventory.services[name].expose
    ]


def levels(hosts: Collection[str], depends: Mapping[str, Collection[str]]) -> list[list[str]]:
    """Return ``hosts`` in levels: each host after every host of ``hosts`` it depends on,
    those of one level (sorted) free to go at once. Hosts that depend on each other in a
    cycle (two edges serving each other's services) share a level."""
    among = set(hosts)
    edges = {h: set(depends.get(h, ())) & among - {h} for h in among}
    cycle = _cycles(edges)
    remaining = set(among)
    result: list[list[str]] = []
    while remaining:
        ready = {
            h
            for h in remaining
            if all(d not in remaining or cycle[d] == cycle[h] for d in edges[h])
            and all(
                d not in remaining or cycle[d] == cycle[h]
                for m in remaining
                if cycle[m] == cycle[h]
                for d in edges[m]
            )
        }
        result.append(sorted(ready))
        remaining -= ready
    return result


def _cycles(edges: Mapping[str, set[str]]) -> dict[str, int]:
    """Return, for each node, the number of its strongly connected component (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    component: dict[str, int] = {}

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other not in component:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            number = len(set(component.values()))
            while True:
                member = stack.pop()
                component[member] = number
                if member == node:
                    break

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return component


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
