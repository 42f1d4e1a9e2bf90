"""Apply a plan across hosts: the hosts that depend on each other in step, phase by phase.

The hosts of an apply fall into groups (``plan.order.groups``): hosts joined by dependencies
(an edge and the hosts of the services it serves, a service and its database's host) stand
or fall together, and separate groups go on concurrently without waiting for each other.
Within a group, every host is opened and locked first (one that cannot be leaves the whole
group unapplied), then ``HostApply``'s phases run on every host in step:

1. ``begin`` on all at once: pulled, staged, checked; nothing live has changed;
2. ``services`` level by level (``plan.order.levels``): providers and backends before the hosts
   that depend on them, so that every service is up and healthy before an edge sends to it;
3. ``proxy`` level by level: the edges start or reload HAProxy;
4. ``finish`` on all at once: what left goes down now that no edge sends to it, then the
   monitors, which pass through edges that are by now in place, and the manifests.

If any phase fails on any host, every host of the group is put back (the later levels
first): the failing host's error is the first error, with what its clean-up could not do
after it; the others say they were rolled back because of it. Hosts that are only opened so
that a replacement can move or pause their servers (``edges``) have no phases of their own,
and one of them that cannot be opened only means its servers are not moved.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from allmende.apply.host import Done, HostApply, HostPlan
from allmende.connectors.base import Connector
from allmende.errors import UserError
from allmende.plan.order import groups, levels

log = logging.getLogger(__name__)

#: Opens and locks one host by name, for the time of the block.
Opener = Callable[[str], AbstractAsyncContextManager[Connector]]


@dataclass(frozen=True)
class Result:
    """How the apply went on one host: what was done, or the error that stopped it."""

    host: str
    done: Done | None = None
    error: UserError | None = None


async def apply_across(
    plans: Mapping[str, HostPlan],
    edges: Collection[str],
    depends: Mapping[str, Collection[str]],
    open_host: Opener,
    ended: Callable[[str], None] = lambda host: None,
) -> dict[str, Result]:
    """Apply each host's part (``plans``), opening also the ``edges`` that start-first
    replacements switch over; tell ``ended`` each planned host as its apply ends; return each
    planned host's result."""
    everyone = set(plans) | set(edges)

    def told(host: str) -> None:
        if host in plans:
            ended(host)

    results = await asyncio.gather(
        *(_group(g, plans, depends, open_host, told) for g in groups(everyone, depends))
    )
    return {host: r for found in results for host, r in found.items() if host in plans}


async def _group(
    hosts: Sequence[str],
    plans: Mapping[str, HostPlan],
    depends: Mapping[str, Collection[str]],
    open_host: Opener,
    ended: Callable[[str], None],
) -> dict[str, Result]:
    holders = {h: open_host(h) for h in hosts}
    entered = await asyncio.gather(
        *(c.__aenter__() for c in holders.values()), return_exceptions=True
    )
    connectors: dict[str, Connector] = {}
    failed: dict[str, UserError] = {}
    for host, outcome in zip(holders, entered, strict=True):
        if isinstance(outcome, UserError):
            failed[host] = outcome
        elif isinstance(outcome, BaseException):
            await _close({h: holders[h] for h in connectors}, outcome)
            raise outcome
        else:
            connectors[host] = outcome
    for host in [h for h in failed if h not in plans]:
        # only opened to move its servers at run time: without it, the switch is skipped
        log.warning("%s: its servers are not moved at run time: %s", host, failed.pop(host))
    try:
        if failed:
            for host in hosts:
                ended(host)
            return _unapplied(hosts, plans, failed)
        runs = {h: HostApply(connectors[h], plans[h], connectors) for h in hosts if h in plans}
        return await _phases(runs, levels(list(runs), depends), ended)
    finally:
        await _close({h: holders[h] for h in connectors}, None)


def _unapplied(
    hosts: Sequence[str], plans: Mapping[str, HostPlan], failed: Mapping[str, UserError]
) -> dict[str, Result]:
    """Results for a group of which ``failed`` could not be opened: nothing applied."""
    first = next(iter(failed))
    results = {}
    for host in hosts:
        error = failed.get(host) or UserError(
            f"{host}: not applied: it goes together with {first}, which could not be opened "
            f"({failed[first]})"
        )
        results[host] = Result(host, error=error)
    return results


async def _phases(
    runs: Mapping[str, HostApply], order: list[list[str]], ended: Callable[[str], None]
) -> dict[str, Result]:
    """Run the phases on the group's hosts (see the module docstring)."""

    async def each(hosts: Sequence[str], step: Callable[[HostApply], Awaitable[None]]) -> None:
        found = await asyncio.gather(*(step(runs[h]) for h in hosts), return_exceptions=True)
        errors = {h: e for h, e in zip(hosts, found, strict=True) if isinstance(e, BaseException)}
        for error in errors.values():
            if not isinstance(error, UserError):
                raise error
        if errors:
            raise _Failed({h: e for h, e in errors.items() if isinstance(e, UserError)})

    async def finished(run: HostApply) -> None:
        await run.finish()
        ended(run.host)

    every = [h for level in order for h in level]
    try:
        await each(every, HostApply.begin)
        for level in order:
            await each(level, HostApply.services)
        for level in order:
            await each(level, HostApply.proxy)
        await each(every, finished)
    except _Failed as failure:
        return await _put_back(runs, order, failure.errors, ended)
    return {h: Result(h, done=run.done) for h, run in runs.items()}


class _Failed(Exception):
    """Hosts of a group failed in one phase."""

    def __init__(self, errors: Mapping[str, UserError]) -> None:
        super().__init__(", ".join(errors))
        self.errors = dict(errors)


async def _put_back(
    runs: Mapping[str, HostApply],
    order: list[list[str]],
    errors: Mapping[str, UserError],
    ended: Callable[[str], None],
) -> dict[str, Result]:
    """Put every host of the group back, the later levels first; return the results."""
    first = next(iter(errors))
    results: dict[str, Result] = {}
    for level in reversed(order):

        async def one(host: str) -> None:
            run = runs[host]
            cause = errors.get(host) or UserError(
                f"{host}: {'put back' if run.live else 'not applied'}: it goes together with "
                f"{first}, whose apply failed"
            )
            results[host] = Result(host, error=await run.fail(cause))
            ended(host)

        await asyncio.gather(*(one(h) for h in level))
    return results


async def _close(
    holders: Mapping[str, AbstractAsyncContextManager[Connector]], error: BaseException | None
) -> None:
    """Release every opened host; what cannot be released is logged, never raised over the
    result (the next apply takes a lock left by a process gone over at once)."""
    for host, holder in holders.items():
        try:
            await holder.__aexit__(type(error) if error else None, error, None)
        except UserError as exc:
            log.warning("%s: %s", host, exc)
