"""Files: what the loader found in the inventory's directories but did not read."""

from __future__ import annotations

from collections.abc import Iterator

from allmende.checks.registry import Context, Finding, rule
from allmende.errors import Location


@rule(
    "inventory.skipped",
    "warning",
    "A file the loader passes over says nothing, and nobody notices that it says nothing; a "
    "FIFO or a device is never read, since reading one can hang or do harm.",
    "make it a regular file, or remove it",
)
def inventory_skipped(ctx: Context) -> Iterator[Finding]:
    for relative, what in sorted(ctx.inventory.skipped.items()):
        yield Finding(
            Location(relative),
            ctx.rule.id,
            ctx.rule.severity,
            f"not read: it is {what}",
            fix=ctx.rule.fix,
            kind="collective",
        )
