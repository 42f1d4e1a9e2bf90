"""Monitors: something watches every service."""

from __future__ import annotations

from collections.abc import Iterator

from allmende.checks.registry import Context, Finding, rule
from allmende.inventory import derive


@rule(
    "monitor.present",
    "warning",
    "A service nobody watches fails silently; routes are watched by default, other services "
    "need a probe.",
    "add `monitor: [{tcp: host:port}]` (or an http/tls probe)",
)
def monitor_present(ctx: Context) -> Iterator[Finding]:
    for name, service in sorted(ctx.inventory.services.items()):
        if not derive.monitors(service):
            path = ("monitor",) if service.monitor is not None else ()
            yield ctx.finding("service", name, path, f"nothing watches `{name}`")
