"""What every page builder sees: the inventory, the check report, and links to things in it.

The renderer depends on the report's shape only (``ReportLike``), not on the checks package,
so that render imports nothing but the inventory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from allmende.errors import Location
from allmende.inventory import derive
from allmende.inventory.inventory import Inventory
from allmende.render.docs.blocks import Code, Inline, Line, Link, Table, Text, joined, line


class FindingLike(Protocol):
    """A finding as the check report holds it."""

    @property
    def location(self) -> Location: ...
    @property
    def rule(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def keypath(self) -> str: ...
    @property
    def fix(self) -> str: ...
    @property
    def service(self) -> str | None: ...


class ReportLike(Protocol):
    """The check report: findings to act on, and findings allowed on purpose."""

    @property
    def findings(self) -> Sequence[FindingLike]: ...
    @property
    def allowed(self) -> Sequence[FindingLike]: ...


@dataclass(frozen=True)
class LastArchive:
    """The newest archive of a service this machine has seen: made by ``allmende backup run``
    or found in the repository by ``backup status``/``verify`` (``seen`` says which, and
    when)."""

    archive: str
    seen: str
    by: str


@dataclass(frozen=True)
class Context:
    """The inventory and its check report, with what pages derive from them once, and the
    newest archive of each service the state database knows (``archives``)."""

    inventory: Inventory
    report: ReportLike
    svg: bool
    archives: Mapping[str, LastArchive] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.inventory.collective.name

    @cached_property
    def databases(self) -> dict[str, derive.Database]:
        return derive.databases(self.inventory)

    @cached_property
    def edges(self) -> tuple[str, ...]:
        return derive.edge_hosts(self.inventory)

    def services(self) -> list[str]:
        return sorted(self.inventory.services)

    def hosts(self) -> list[str]:
        return sorted(self.inventory.hosts)

    def people(self) -> list[str]:
        return sorted(self.inventory.collective.people)


# --------------------------------------------------------------------------- links


def service_link(name: str) -> Link:
    """Return a link to a service's page."""
    return Link(name, page=f"services/{name}")


def host_link(name: str) -> Link:
    """Return a link to a host's page."""
    return Link(name, page=f"hosts/{name}")


def person_link(context: Context, name: str) -> Link:
    """Return a link to a person on the people page, shown with their full name."""
    person = context.inventory.collective.people.get(name)
    return Link(person.name if person else name, page="people", anchor=f"person-{name}")


def database_anchor(ref: str) -> str:
    """Return the anchor of a database (``<service>/<name>``) on the databases page."""
    return "db-" + ref.replace("/", "-")


def database_link(ref: str) -> Link:
    """Return a link to a database (``<service>/<name>``) on the databases page."""
    return Link(ref, page="databases", anchor=database_anchor(ref), code=True)


def contact(value: str | None) -> Line:
    """Return an email address as a mailto link, a URL as a link, anything else as text."""
    if not value:
        return ()
    if value.startswith(("http://", "https://")):
        return (Link(value, url=value),)
    if "@" in value and " " not in value and ":" not in value:
        return (Link(value, url=f"mailto:{value}"),)
    return (Text(value),)


def maintainers(context: Context, service: str) -> Line:
    """Return who maintains a service, each with how to reach them, or a plain 'nobody'."""
    people = context.inventory.collective.people
    parts: list[Line] = []
    for name in context.inventory.services[service].maintainers:
        person = people.get(name)
        reach = contact(person.email or person.chat) if person else ()
        parts.append(
            line(person_link(context, name), " (", *reach, ")")
            if reach
            else line(person_link(context, name))
        )
    return joined(parts, empty="nobody yet")


def codes(values: Sequence[str], empty: str = "") -> Line:
    """Return values as code spans separated by commas."""
    return joined((Code(v) for v in values), empty=empty)


def findings_table(findings: Sequence[FindingLike], with_service: bool) -> Table:
    """Return findings as a table: severity, where, what, what to do."""
    rows: list[tuple[Line, ...]] = []
    for finding in findings:
        where: Inline = Code(str(finding.location))
        row: list[Line] = [line(Text(finding.severity, strong=finding.severity == "error"))]
        if with_service:
            row.append(line(service_link(finding.service)) if finding.service else ())
        key = line(" ", Code(finding.keypath)) if finding.keypath else ()
        row.append((where, *key))
        row.append(line(finding.message, " ", Code(finding.rule)))
        row.append(line(finding.fix))
        rows.append(tuple(row))
    head = (
        ("Severity", "Service", "Where", "What", "What to do")
        if with_service
        else ("Severity", "Where", "What", "What to do")
    )
    return Table(head, tuple(rows), empty="Nothing to do: every check passes.")
