"""Volumes: data lives under /srv/<service>/, so backups and moves find all of it."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from allmende.checks.registry import Context, Finding, rule
from allmende.inventory import derive


@rule(
    "volumes.under_srv",
    "warning",
    "With every volume under /srv/<service>/ one can see, back up and move a service's data "
    "without reading its files.",
    "drop the `host:` path (default /srv/<service>/<volume>), or allow it with a reason",
)
def volumes_under_srv(ctx: Context) -> Iterator[Finding]:
    for name, service in sorted(ctx.inventory.services.items()):
        for cname, vname, _, host_path in derive.volumes(name, service):
            normal = posixpath.normpath(host_path)
            if normal != f"/srv/{name}" and not normal.startswith(f"/srv/{name}/"):
                yield ctx.finding(
                    "service",
                    name,
                    ("components", cname, "volumes", vname),
                    f"volume `{vname}` lives at {host_path}, outside /srv/{name}/",
                )
