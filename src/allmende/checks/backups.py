"""Backups: every service that holds data is backed up somewhere."""

from __future__ import annotations

from collections.abc import Iterator

from allmende.checks.registry import Context, Finding, rule
from allmende.inventory import derive


@rule(
    "backups.required",
    "error",
    "A service with volumes or a database loses its data with its disk unless it is backed up.",
    "add `backup: {consistency: dump|stop|snapshot}` (and a repository, here or in allmende.yaml)",
    force=True,
)
def backups_required(ctx: Context) -> Iterator[Finding]:
    inv = ctx.inventory
    for name, service in sorted(inv.services.items()):
        if not derive.has_data(service):
            continue
        effective = derive.backup(inv.collective, name, service)
        path = ("backup",) if service.backup is not None else ()
        if effective.consistency == "none":
            what = "a database" if service.provides is not None else "volumes"
            yield ctx.finding("service", name, path, f"`{name}` holds {what} but is not backed up")
        elif effective.repository is None:
            yield ctx.finding(
                "service",
                name,
                path,
                f"the backup of `{name}` has no repository",
                "set `backup.repository` here or in allmende.yaml",
            )
        elif effective.schedule is None:
            yield ctx.finding(
                "service",
                name,
                path,
                f"the backup of `{name}` has no schedule",
                "set `backup.schedule` (daily, weekly, ...) here or in allmende.yaml",
            )
