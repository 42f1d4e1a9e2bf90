"""Certificates: every name can be checked by the CA the way allmende.yaml says."""

from __future__ import annotations

from collections.abc import Iterator

from allmende.checks.registry import Context, Finding, rule
from allmende.inventory import certificates
from allmende.inventory.domains import managed_zone
from allmende.inventory.yamlpos import KeyPath


@rule(
    "certs.dns",
    "error",
    "A name checked over dns-01 (a wildcard, or a name `acme.challenges` sends there) needs a "
    "zone that takes RFC 2136 updates: without one its certificate can never be obtained, "
    "and the edge serves a self-signed stand-in.",
    "list the name's zone in `domains:` and give zones/<zone>.yaml an `update:` (server, TSIG "
    "key), or check the name over http-01",
)
def certs_dns(ctx: Context) -> Iterator[Finding]:
    inv = ctx.inventory
    acme = inv.collective.acme
    if acme is None:
        return
    names: list[tuple[str, KeyPath]] = [
        (w, ("acme", "wildcards", i)) for i, w in enumerate(acme.wildcards)
    ]
    names += [
        (name, ("acme", "challenges", name))
        for name, challenge in acme.challenges.items()
        if challenge == "dns-01"
    ]
    if acme.challenge == "dns-01":
        names += [
            (c.name, ("acme", "challenge"))
            for c in certificates.certificates(inv)
            if c.name not in acme.challenges and not c.wildcard
        ]
    for name, path in names:
        zone = managed_zone(inv, name.removeprefix("*."))
        if zone is None:
            yield ctx.finding(
                "collective",
                "",
                path,
                f"{name} is checked over dns-01, but it is in none of the collective's `domains`",
            )
        elif zone not in inv.zones or inv.zones[zone].update is None:
            yield ctx.finding(
                "collective",
                "",
                path,
                f"{name} is checked over dns-01, but zones/{zone}.yaml says nowhere where its "
                "updates go",
                f"give zones/{zone}.yaml an `update:` with the server and TSIG key that may "
                "change it",
            )


@rule(
    "certs.unused",
    "warning",
    "A wildcard or a challenge for a name that no route terminates is never used: a typo, or "
    "a route that left.",
    "name a domain a route with `tls: terminate` has, or remove the entry",
)
def certs_unused(ctx: Context) -> Iterator[Finding]:
    acme = ctx.inventory.collective.acme
    if acme is None:
        return
    wanted = certificates.certificates(ctx.inventory)
    used = {c.name for c in wanted}
    for i, wildcard in enumerate(acme.wildcards):
        if wildcard not in used:
            yield ctx.finding(
                "collective",
                "",
                ("acme", "wildcards", i),
                f"{wildcard} covers no route with `tls: terminate` (it covers names one label "
                f"below {wildcard[2:]})",
            )
    for name in acme.challenges:
        if name not in used:
            yield ctx.finding(
                "collective",
                "",
                ("acme", "challenges", name),
                f"{name} is no certificate of a route with `tls: terminate`"
                + (" (a wildcard covers it)" if any(name in c.covers for c in wanted) else ""),
            )
