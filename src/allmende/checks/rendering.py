"""What render would leave out: every warning of `allmende render` is a finding here too, so
that "no findings" means render has nothing to say either. The decisions are render's own
(``render.dns.skipped``, ``render.targets.left_out``), asked, never repeated."""

from __future__ import annotations

from collections.abc import Iterator

from allmende.checks.registry import Context, Finding, rule
from allmende.render import dns
from allmende.render.targets import left_out


@rule(
    "dns.zonefile",
    "warning",
    "A domain the collective manages is rendered as a zone file for its nameservers; a zone "
    "without nameservers, or whose nameserver inside it has no address, cannot be served, so "
    "render writes none and its records reach nobody.",
    "list the zone's `nameservers` in zones/<domain>.yaml, with an A or AAAA record for each "
    "one inside the zone",
)
def dns_zonefile(ctx: Context) -> Iterator[Finding]:
    inv = ctx.inventory
    for zone, reason in sorted(dns.skipped(inv).items()):
        why, _, fix = reason.partition(": ")
        if zone not in inv.zones:
            fix = f"write zones/{zone}.yaml with its `nameservers`"
        yield ctx.finding(
            "collective",
            "",
            ("domains", inv.collective.domains.index(zone)),
            f"no zone file for {zone}: {why}",
            f"{fix}; or, when another party serves the zone, accept this with "
            "`allow: [{rule: dns.zonefile, reason: ...}]` in allmende.yaml",
        )


@rule(
    "engines.rendered",
    "warning",
    "allmende renders and applies the services of hosts whose engine it knows how to drive "
    "(compose, swarm, kubernetes, incus); the services of any other host are documented and "
    "drawn, but render writes nothing for them and apply leaves them as they are.",
    "run them on a host with one of the engines allmende renders, or keep them by hand",
)
def engines_rendered(ctx: Context) -> Iterator[Finding]:
    inv = ctx.inventory
    for host, services in sorted(left_out(inv).items()):
        engine = inv.hosts[host].engine
        for service in services:
            yield ctx.finding(
                "service",
                service,
                ("host",),
                f"not rendered: {host}'s engine `{engine}` is one allmende cannot render yet",
            )
