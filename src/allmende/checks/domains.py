"""Domains: a name written in other letters than a-z may pass for another one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from allmende.checks.registry import Context, Finding, rule
from allmende.inventory.dnsnames import lookalike
from allmende.inventory.inventory import Kind
from allmende.inventory.yamlpos import KeyPath


def _texts(data: Any, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    """Yield the text at ``path`` in a file's data, each item where it is a list (``*``)."""
    if not path:
        if isinstance(data, str):
            yield (), data
        return
    head, rest = path[0], path[1:]
    if head == "*":
        for i, item in enumerate(data if isinstance(data, list) else []):
            yield from (((i, *p), t) for p, t in _texts(item, rest))
    elif isinstance(data, dict) and head in data:
        yield from (((head, *p), t) for p, t in _texts(data[head], rest))


#: Where each kind of file names domains.
PLACES: dict[Kind, tuple[KeyPath, ...]] = {
    "collective": (("domains", "*"),),
    "host": (("address",),),
    "service": (("routes", "*", "domain"),),
    "zone": (("nameservers", "*"), ("records", "*", "name"), ("records", "*", "value")),
}


@rule(
    "dns.lookalike",
    "warning",
    "A domain in other letters than a-z can look exactly like another one (a Cyrillic `а` "
    "for a Latin `a`): a route or record for it goes somewhere nobody meant.",
    "check the name letter by letter; write it in a-z if that is what you mean",
)
def dns_lookalike(ctx: Context) -> Iterator[Finding]:
    inv = ctx.inventory
    owners: list[tuple[Kind, str]] = [("collective", "")]
    owners += [("host", n) for n in sorted(inv.hosts)]
    owners += [("service", n) for n in sorted(inv.services)]
    owners += [("zone", n) for n in sorted(inv.zones)]
    for kind, name in owners:
        document = inv.documents.get(inv.file(kind, name))
        if document is None:
            continue
        for place in PLACES[kind]:
            for path, text in _texts(document.data, place):
                for word in text.split():
                    why = lookalike(word)
                    if why is not None:
                        yield ctx.finding(kind, name, path, why)
