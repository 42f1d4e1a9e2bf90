"""Volumes: data lives under /srv/<service>/, so backups and moves find all of it."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from allmende.checks.registry import Context, Finding, rule
from allmende.inventory import derive
from allmende.inventory.hostpaths import service_dir, volume_dir


@rule(
    "volumes.under_srv",
    "warning",
    f"With every volume under {service_dir('<service>')}/ one can see, back up and move a "
    "service's data without reading its files.",
    f"drop the `host:` path (default {volume_dir('<service>', '<volume>')}), or allow it with a "
    "reason",
)
def volumes_under_srv(ctx: Context) -> Iterator[Finding]:
    for name, service in sorted(ctx.inventory.services.items()):
        for cname, vname, _, host_path in derive.volumes(name, service):
            normal = posixpath.normpath(host_path)
            home = service_dir(name)
            if normal != home and not normal.startswith(f"{home}/"):
                yield ctx.finding(
                    "service",
                    name,
                    ("components", cname, "volumes", vname),
                    f"volume `{vname}` lives at {host_path}, outside {home}/",
                )
