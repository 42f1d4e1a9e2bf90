"""Names: their form, and services named by what they offer rather than by their software."""

from __future__ import annotations

import re
from collections.abc import Iterator

from allmende.checks.registry import Context, Finding, rule
from allmende.inventory.models import NAME_PATTERN
from allmende.inventory.software import suggestion

_NAME = re.compile(NAME_PATTERN)


@rule(
    "names.format",
    "error",
    "Names end up in file paths, container names, DNS labels and URLs.",
    "use lowercase letters, digits and `-`, starting with a letter, at most 63 characters",
    guards_paths=True,
)
def names_format(ctx: Context) -> Iterator[Finding]:
    inv = ctx.inventory

    def bad(name: str) -> bool:
        return _NAME.match(name) is None

    for name in sorted(inv.hosts):
        if bad(name):
            yield ctx.finding("host", name, (), f"host name `{name}` is not a valid name")
    for person in sorted(inv.collective.people):
        if bad(person):
            yield ctx.finding(
                "collective", "", ("people", person), f"`{person}` is not a valid name", key=True
            )
    for name, service in sorted(inv.services.items()):
        if bad(name):
            yield ctx.finding("service", name, (), f"service name `{name}` is not a valid name")
        for cname, component in service.components.items():
            path = ("components", cname)
            if bad(cname):
                yield ctx.finding(
                    "service", name, path, f"component name `{cname}` is not valid", key=True
                )
            named = [("ports", p) for p in component.ports]
            named += [("volumes", v) for v in component.volumes]
            for group, item in named:
                if bad(item):
                    yield ctx.finding(
                        "service",
                        name,
                        (*path, group, item),
                        f"{group[:-1]} name `{item}` is not valid",
                        key=True,
                    )


@rule(
    "names.by_function",
    "warning",
    "A service is named by what it offers to people; the software behind it can change, "
    "the service stays.",
    "rename the service file after what it offers",
)
def names_by_function(ctx: Context) -> Iterator[Finding]:
    for name in sorted(ctx.inventory.services):
        better = suggestion(name)
        if better is not None and better != name:
            yield ctx.finding(
                "service",
                name,
                (),
                f"`{name}` is named after its software",
                f"name it by what it offers, e.g. `{better}`: rename services/{name}.yaml to "
                f"services/{better}.yaml",
            )
