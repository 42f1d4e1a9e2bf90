"""Backups: every service that holds data is backed up somewhere."""

from __future__ import annotations

from collections.abc import Iterator

from allmende.checks.registry import Context, Finding, rule
from allmende.inventory import derive


@rule(
    "backups.required",
    "error",
    "A service with volumes or a database loses its data with its disk unless it is backed up.",
    "set `backup.repository` in allmende.yaml (every service that holds data is then backed "
    "up), or opt out with `backup: {consistency: none}` and an `allow` saying why",
    force=True,
)
def backups_required(ctx: Context) -> Iterator[Finding]:
    """A service that holds data is flagged when no repository applies to it (neither its own
    ``backup.repository`` nor the collective's) or when it opted out (``consistency: none``);
    an opt-out with a reason is an ``allow`` of this rule in the service's file."""
    inv = ctx.inventory
    for name, service in sorted(inv.services.items()):
        if not derive.has_data(service):
            continue
        effective = derive.backup(inv.collective, name, service)
        path = ("backup",) if service.backup is not None else ()
        what = "a database" if service.provides is not None else "volumes"
        if effective.consistency == "none":
            yield ctx.finding(
                "service",
                name,
                path,
                f"`{name}` holds {what} but opted out of backups (`consistency: none`)",
                "if that is on purpose, say why: `allow: [{rule: backups.required, reason: ...}]`",
            )
        elif effective.repository is None:
            yield ctx.finding(
                "service",
                name,
                path,
                f"`{name}` holds {what} but no backup repository applies to it",
                "set `backup.repository` in allmende.yaml (for every service) or here",
            )
