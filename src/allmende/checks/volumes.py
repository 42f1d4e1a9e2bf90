"""Volumes: data lives under /srv/<service>/, so backups and moves find all of it."""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Iterator
from pathlib import PurePosixPath

from allmende.checks.registry import Context, Finding, rule
from allmende.inventory import derive
from allmende.inventory.hostpaths import (
    HAPROXY_DIR,
    PROJECT_FILES,
    SECRETS,
    STATE_DIR,
    SYSTEMD_DIR,
    service_dir,
    volume_dir,
)


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


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def exposed(host_path: str, services: Collection[str]) -> str | None:
    """Return what allmende writes that a volume at ``host_path`` would hand to a container
    (a service's whole directory, its secrets or project file, allmende's own directories),
    or None. ``services`` are the names of the inventory's services."""
    path = posixpath.normpath(host_path)
    if path.startswith("//"):
        path = path[1:]
    parts = PurePosixPath(path).parts
    top = service_dir("")  # "/srv/"
    if _within(top.rstrip("/"), path) and services:  # / or /srv itself
        first = min(services)
        home = service_dir(first)
        return f"the whole directory of `{first}` ({home}/: its project file and secrets)"
    if path.startswith(top) and parts[2] in services:
        service, home = parts[2], service_dir(parts[2])
        if len(parts) == 3:
            return f"the whole directory of `{service}` ({home}/: its project file and secrets)"
        if parts[3] == SECRETS:
            return f"the secrets of `{service}` ({home}/{SECRETS}/)"
        if len(parts) == 4 and parts[3] in PROJECT_FILES.values():
            return f"the project file of `{service}`"
    for directory in (HAPROXY_DIR, SYSTEMD_DIR, STATE_DIR):
        if _within(directory, path) or _within(path, directory):
            return f"{directory}/, which allmende writes"
    return None


@rule(
    "volumes.confined",
    "error",
    "A container can read and write whatever its volumes mount: a volume on a service's whole "
    "directory hands it the project file and every secret file there, and lets it plant links "
    "where allmende writes.",
    f"mount a directory of its own: drop the `host:` path (default "
    f"{volume_dir('<service>', '<volume>')}) and do not name a volume `{SECRETS}`",
    guards_paths=True,
)
def volumes_confined(ctx: Context) -> Iterator[Finding]:
    services = frozenset(ctx.inventory.services)
    for name, service in sorted(ctx.inventory.services.items()):
        for cname, vname, _, host_path in derive.volumes(name, service):
            what = exposed(host_path, services)
            if what is not None:
                yield ctx.finding(
                    "service",
                    name,
                    ("components", cname, "volumes", vname),
                    f"volume `{vname}` mounts {host_path}: that is {what}",
                )
