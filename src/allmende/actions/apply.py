"""The `apply` verb: bring the hosts to the plan, one lock and one recorded apply per host.

``prepare`` (in actions.plan) computes the plan together with what it was computed from;
``refuse_large_deletes`` is the blast-radius guard; ``apply`` carries out the plan across the
hosts in the order their dependencies ask (``apply.across``) and records every host's apply in
the state database, an apply that found nothing to do too. ``plan_and_apply`` is the
one flow every surface uses: plan, show, check the checksum and the blast radius, ask, apply.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from allmende.actions.plan import Prepared, Seams, prepare
from allmende.apply.across import apply_across
from allmende.apply.host import Done, HostPlan
from allmende.apply.lock import host_lock
from allmende.apply.verify import TIMEOUT
from allmende.connectors.base import Connector
from allmende.errors import PlanChanged, UnsafePlan, UserError
from allmende.inventory import derive
from allmende.plan.changes import Plan
from allmende.plan.order import dependencies
from allmende.state.store import default_path, finish_apply, open_store, start_apply

#: More deletes than this in one apply need --force.
MAX_DELETES = 10
#: The fewest hex digits of a plan checksum that ``--plan-checksum`` accepts.
CHECKSUM_DIGITS = 8


@dataclass(frozen=True)
class HostResult:
    """How the apply went on one host: what was done, or the error that stopped it
    (``ApplyFailed`` says whether the host was rolled back; ``LockHeld``, ``Unreachable`` and
    ``PlanChanged`` mean nothing was changed there)."""

    host: str
    done: Done | None = None
    error: UserError | None = None

    @property
    def ok(self) -> bool:
        """Whether the host is now as planned."""
        return self.error is None


def refuse_large_deletes(prepared: Prepared) -> None:
    """Raise UnsafePlan if the plan deletes more than ``MAX_DELETES`` files, or more than half
    the files allmende manages on a host (``--force`` skips this check)."""
    plan = prepared.plan
    total = plan.count("delete")
    if total > MAX_DELETES:
        raise UnsafePlan(
            f"the plan deletes {total} files (more than {MAX_DELETES}); check it, then apply "
            "with --force"
        )
    deletes = Counter(c.host for c in plan.changes if c.kind == "delete")
    for host, count in sorted(deletes.items()):
        managed = len(prepared.wanted.get(host, {})) + count
        if count * 2 > managed:
            raise UnsafePlan(
                f"the plan deletes {count} of the {managed} files allmende manages on {host} "
                "(more than half); check it, then apply with --force"
            )


def refuse_foreign(plan: Plan) -> None:
    """Raise UnsafePlan if the plan would overwrite files another collective's inventory wrote
    there (``Change.foreign``; ``--force`` takes them over)."""
    taken = [c for c in plan.changes if c.foreign is not None]
    if taken:
        shown = ", ".join(f"{c.host}:{c.path} ({c.foreign})" for c in taken[:5])
        more = f" and {len(taken) - 5} more" if len(taken) > 5 else ""
        raise UnsafePlan(
            f"the plan overwrites files another inventory wrote: {shown}{more}; nothing was "
            "applied: check whose they are, then apply with --force to take them over"
        )


def valid_checksum(expected: str) -> str:
    """Return ``expected`` if it is ``CHECKSUM_DIGITS`` to 64 hex digits (a prefix of a plan's
    checksum). Raise UserError otherwise: a shorter prefix would match too many plans."""
    if not re.fullmatch(rf"[0-9a-fA-F]{{{CHECKSUM_DIGITS},64}}", expected):
        raise UserError(
            f"--plan-checksum {expected!r}: give at least {CHECKSUM_DIGITS} hex digits of the "
            "checksum `allmende plan` printed"
        )
    return expected.lower()


def check_checksum(plan: Plan, expected: str) -> None:
    """Raise PlanChanged if the plan's checksum does not start with ``expected`` (see
    ``valid_checksum``)."""
    if not plan.checksum.startswith(valid_checksum(expected)):
        raise PlanChanged(
            f"the plan changed since it was shown (checksum {plan.checksum[:16]}, not "
            f"{expected[:16]}); nothing was applied: look at the new plan and apply again"
        )


def who(env: Mapping[str, str]) -> str:
    """Return who applies, for the record: ``$USER`` (else ``uid <n>``)."""
    return env.get("USER") or env.get("LOGNAME") or f"uid {os.getuid()}"


def apply(
    prepared: Prepared,
    env: Mapping[str, str],
    say: Callable[[str], None] = lambda line: None,
    tally: Callable[[int, int], None] | None = None,
) -> dict[str, HostResult]:
    """Apply the plan on every host that has something to do, in the order its dependencies
    ask (``apply.across``), each under its lock, and record each in the state database; tell
    ``tally`` how many hosts of how many are done. Return each host's result."""
    plan = prepared.plan
    inventory = prepared.inventory
    hosts = sorted({c.host for c in plan.changes} | {a.host for a in plan.actions})
    user = who(env)
    db = open_store(default_path(env))
    inventory_name = str(prepared.root.resolve())
    timeout = float(env.get("ALLMENDE_VERIFY_TIMEOUT") or TIMEOUT)

    def part(host: str) -> HostPlan:
        return HostPlan(
            inventory,
            [c for c in plan.changes if c.host == host],
            [a for a in plan.actions if a.host == host],
            prepared.wanted[host],
            plan.keys[host],
            prepared.scoped,
            timeout,
            lambda line: say(f"{host}: {line}"),
            frozenset(plan.failed),
        )

    @asynccontextmanager
    async def opened(host: str) -> AsyncIterator[Connector]:
        async with (
            prepared.seams.connect(inventory, host, env) as connector,
            host_lock(connector, user, os.getpid()),
        ):
            yield connector

    edges = {
        edge
        for a in plan.actions
        if a.verb in ("replace", "up")
        for edge in derive.edges_of(inventory, a.subject)
        if edge not in plan.failed
    }
    records = {
        host: start_apply(
            db,
            who=user,
            inventory=inventory_name,
            host=host,
            checksum=plan.checksum,
            changes=[c.canonical() for c in plan.changes if c.host == host]
            + [a.canonical() for a in plan.actions if a.host == host],
        )
        for host in hosts
    }
    count = [0]

    def ended(host: str) -> None:
        count[0] += 1
        if tally is not None:
            tally(count[0], len(hosts))

    if tally is not None:
        tally(0, len(hosts))
    try:
        found = asyncio.run(
            apply_across({h: part(h) for h in hosts}, edges, dependencies(inventory), opened, ended)
        )
        results = {}
        for host in hosts:
            result = found[host]
            finish_apply(
                db, records[host], "ok" if result.error is None else f"failed: {result.error}"
            )
            results[host] = HostResult(host, result.done, result.error)
    finally:
        db.close()
    return results


def record_nothing(prepared: Prepared, env: Mapping[str, str]) -> None:
    """Record in the state database that an apply found nothing to do on each host it read."""
    db = open_store(default_path(env))
    try:
        for host in prepared.plan.hosts:
            record = start_apply(
                db,
                who=who(env),
                inventory=str(prepared.root.resolve()),
                host=host,
                checksum=prepared.plan.checksum,
                changes=[],
            )
            finish_apply(db, record, "nothing to do")
    finally:
        db.close()


Status = Literal["nothing to do", "declined", "applied"]


@dataclass(frozen=True)
class Outcome:
    """What ``plan_and_apply`` did: the plan, whether it was applied, and each host's result."""

    prepared: Prepared
    status: Status
    results: Mapping[str, HostResult] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every host is as planned: nothing failed to be read or applied, and the
        plan was not declined."""
        if self.status == "declined" or self.prepared.plan.failed:
            return False
        return all(r.ok for r in self.results.values())


def plan_and_apply(
    root: Path,
    env: Mapping[str, str],
    *,
    show: Callable[[Plan], None],
    confirm: Callable[[Plan], bool],
    say: Callable[[str], None] = lambda line: None,
    tally: Callable[[str], Callable[[int, int], None]] | None = None,
    host: str | None = None,
    service: str | None = None,
    force: bool = False,
    checksum: str | None = None,
    seams: Seams | None = None,
) -> Outcome:
    """Plan (only ``host``, only ``service`` if given), ``show`` the plan, and unless it is empty
    check ``checksum`` (if given) and the blast radius (unless ``force``), ``confirm``, and
    apply, telling each step to ``say``; ``tally(what)`` gives what is told how many hosts of
    how many are done, ``what`` being ``reading hosts``, then ``applying``. Raise PlanChanged,
    UnsafePlan, CheckFailed (error findings; with ``force`` only those of rules that cannot be
    forced), or the UserError of a plan that cannot be made (an inventory that does not load,
    a secret that cannot be read)."""
    if checksum is not None:
        valid_checksum(checksum)
    prepared = prepare(root, env, host, service, seams, force, tally and tally("reading hosts"))
    plan = prepared.plan
    show(plan)
    if plan.empty:
        record_nothing(prepared, env)
        return Outcome(prepared, "nothing to do")
    if checksum is not None:
        check_checksum(plan, checksum)
    if not force:
        refuse_large_deletes(prepared)
        refuse_foreign(plan)
    if not confirm(plan):
        return Outcome(prepared, "declined")
    return Outcome(prepared, "applied", apply(prepared, env, say, tally and tally("applying")))
