"""The `apply` verb: bring the hosts to the plan, one lock and one recorded apply per host.

``prepare`` (in actions.plan) computes the plan together with what it was computed from;
``refuse_large_deletes`` is the blast-radius guard; ``apply`` writes the plan's files on each
host concurrently and records every host's apply in the state database.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable, Mapping

from allmende.actions.plan import Prepared
from allmende.apply.host import HostPlan, apply_host
from allmende.apply.lock import host_lock
from allmende.apply.verify import TIMEOUT
from allmende.connectors import connect
from allmende.errors import UserError
from allmende.state.store import default_path, finish_apply, open_store, start_apply

#: More deletes than this in one apply need --force.
MAX_DELETES = 10


def refuse_large_deletes(prepared: Prepared) -> None:
    """Raise UserError if the plan deletes more than ``MAX_DELETES`` files, or more than half
    the files allmende manages on a host (``--force`` skips this check)."""
    plan = prepared.plan
    total = plan.count("delete")
    if total > MAX_DELETES:
        raise UserError(
            f"the plan deletes {total} files (more than {MAX_DELETES}); check it, then apply "
            "with --force"
        )
    deletes = Counter(c.host for c in plan.changes if c.kind == "delete")
    for host, count in sorted(deletes.items()):
        managed = len(prepared.wanted.get(host, {})) + count
        if count * 2 > managed:
            raise UserError(
                f"the plan deletes {count} of the {managed} files allmende manages on {host} "
                "(more than half); check it, then apply with --force"
            )


def who(env: Mapping[str, str]) -> str:
    """Return who applies, for the record: ``$USER`` (else ``uid <n>``)."""
    return env.get("USER") or env.get("LOGNAME") or f"uid {os.getuid()}"


def apply(
    prepared: Prepared, env: Mapping[str, str], say: Callable[[str], None] = lambda line: None
) -> dict[str, str]:
    """Apply the plan's changes on every host that has some, concurrently, each under its lock,
    and record each in the state database. Return each host's result: ``ok`` or why it failed
    (nothing of that host was replaced unless said otherwise)."""
    plan = prepared.plan
    hosts = sorted({c.host for c in plan.changes} | {a.host for a in plan.actions})
    user = who(env)
    db = open_store(default_path(env))
    inventory_name = str(prepared.root.resolve())

    async def one(host: str) -> str:
        changes = [c for c in plan.changes if c.host == host]
        actions = [a for a in plan.actions if a.host == host]
        record = start_apply(
            db,
            who=user,
            inventory=inventory_name,
            host=host,
            checksum=plan.checksum,
            changes=[c.canonical() for c in changes] + [a.canonical() for a in actions],
        )
        part = HostPlan(
            prepared.inventory,
            changes,
            actions,
            prepared.wanted[host],
            prepared.scoped,
            float(env.get("ALLMENDE_VERIFY_TIMEOUT") or TIMEOUT),
            lambda line: say(f"{host}: {line}"),
        )
        try:
            async with (
                connect(prepared.inventory, host, env) as connector,
                host_lock(connector, user, os.getpid()),
            ):
                await apply_host(connector, part)
        except UserError as exc:
            finish_apply(db, record, f"failed: {exc}")
            return str(exc)
        finish_apply(db, record, "ok")
        return "ok"

    async def every() -> list[str]:
        return await asyncio.gather(*(one(h) for h in hosts))

    try:
        results = asyncio.run(every())
    finally:
        db.close()
    return dict(zip(hosts, results, strict=True))
