"""Rules with stable ids, and the runner that applies them to an inventory.

A rule is a function from the Inventory to Findings, registered with its id, severity, the
reason it exists and how to fix what it finds. The file a finding is located in (a service's, a
host's or allmende.yaml) may accept it on purpose with ``allow: [{rule: <id>, reason: ...}]``;
such findings are kept aside as "allowed". A rule that keeps paths safe (``guards_paths``)
cannot be allowed: such an ``allow`` is itself an error (``allow.refused``).

Plan and apply refuse an inventory with error findings (``refusal``); ``--force`` lets through
those of the few rules registered with ``force=True``, never those of a rule that keeps paths
safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from allmende.errors import Location, UserError, visible
from allmende.inventory.inventory import Inventory, Kind
from allmende.inventory.models import Allow
from allmende.inventory.validate import did_you_mean
from allmende.inventory.yamlpos import KeyPath, dotted

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
#: The id of the findings on ``allow`` entries that name no rule; reported on every check.
ALLOW_UNKNOWN = "allow.unknown"
#: The id of the findings on ``allow`` entries that name a rule that keeps paths safe.
ALLOW_REFUSED = "allow.refused"


@dataclass(frozen=True, order=True)
class Finding:
    """One thing a rule found, located, with what to do about it.

    ``kind`` and ``name`` say whose file it is located in (the name is empty for the
    collective): that file's ``allow`` may accept it.
    """

    location: Location
    rule: str
    severity: Severity
    message: str
    keypath: str = ""
    fix: str = ""
    kind: Kind | None = field(default=None, compare=False)
    name: str = field(default="", compare=False)

    @property
    def service(self) -> str | None:
        """The service whose file the finding is located in, if any."""
        return self.name if self.kind == "service" else None

    def __str__(self) -> str:
        key = f" {visible(self.keypath)}:" if self.keypath else ""
        fix = f" ({visible(self.fix)})" if self.fix else ""
        message = visible(self.message)
        return f"{self.location}:{key} {self.severity}: {message}{fix} [{self.rule}]"

    def as_json(self) -> dict[str, object]:
        """Return the finding as the JSON object `allmende check --json` prints."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "keypath": self.keypath,
            "message": self.message,
            "fix": self.fix,
            "service": self.service,
        }


Check = Callable[["Context"], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    """A convention: id, severity, why it exists, how to fix it, and the check itself.

    ``force``: plan and apply go on past its error findings with ``--force``.
    ``guards_paths``: it keeps what allmende writes where it belongs; ``allow`` cannot accept
    its findings and ``--force`` does not pass them.
    """

    id: str
    severity: Severity
    reason: str
    fix: str
    check: Check
    force: bool = False
    guards_paths: bool = False


RULES: dict[str, Rule] = {}


def rule(
    id: str,
    severity: Severity,
    reason: str,
    fix: str,
    *,
    force: bool = False,
    guards_paths: bool = False,
) -> Callable[[Check], Check]:
    """Register a check function as the rule ``id`` (see ``Rule`` for ``force`` and
    ``guards_paths``)."""
    if force and guards_paths:
        raise ValueError(f"rule {id}: a rule that keeps paths safe cannot be forced")

    def register(check: Check) -> Check:
        if id in RULES:
            raise ValueError(f"rule {id} registered twice")
        RULES[id] = Rule(id, severity, reason, fix, check, force, guards_paths)
        return check

    return register


@dataclass(frozen=True)
class Context:
    """What a rule sees: the inventory, and a way to make findings located in it."""

    inventory: Inventory
    rule: Rule

    def finding(
        self,
        kind: Kind,
        name: str,
        path: KeyPath,
        message: str,
        fix: str | None = None,
        *,
        key: bool = False,
    ) -> Finding:
        """Return a finding of this rule at ``path`` in the file of the named object."""
        return Finding(
            location=self.inventory.where(kind, name, path, key=key),
            rule=self.rule.id,
            severity=self.rule.severity,
            message=message,
            keypath=dotted(path),
            fix=self.rule.fix if fix is None else fix,
            kind=kind,
            name=name,
        )


@dataclass(frozen=True)
class Report:
    """The result of checking an inventory: findings to act on, and findings allowed on purpose."""

    findings: tuple[Finding, ...]
    allowed: tuple[Finding, ...]

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error")

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)


def allows(inventory: Inventory, kind: Kind | None, name: str) -> tuple[Allow, ...]:
    """Return the ``allow`` entries of the named service, host or collective (none for a zone,
    or an object the inventory does not have)."""
    if kind == "collective":
        return inventory.collective.allow
    if kind == "host" and name in inventory.hosts:
        return inventory.hosts[name].allow
    if kind == "service" and name in inventory.services:
        return inventory.services[name].allow
    return ()


def _bad_allows(inventory: Inventory) -> Iterator[Finding]:
    owners: list[tuple[Kind, str]] = [("collective", "")]
    owners += [("host", name) for name in sorted(inventory.hosts)]
    owners += [("service", name) for name in sorted(inventory.services)]
    for kind, name in owners:
        for i, allow in enumerate(allows(inventory, kind, name)):
            path: KeyPath = ("allow", i, "rule")
            if allow.rule not in RULES:
                rule_id, message = ALLOW_UNKNOWN, f"unknown rule `{allow.rule}`"
                fix = did_you_mean(allow.rule, RULES, "rule")
            elif RULES[allow.rule].guards_paths:
                rule_id = ALLOW_REFUSED
                message = f"`{allow.rule}` keeps paths safe: it cannot be allowed"
                fix = f"fix what it finds ({RULES[allow.rule].fix}) and remove this entry"
            else:
                continue
            yield Finding(
                inventory.where(kind, name, path),
                rule_id,
                "error",
                message,
                dotted(path),
                fix,
                kind=kind,
                name=name,
            )


def selected(only: Iterable[str] | None) -> set[str]:
    """Return the ids of the rules to apply: every rule, or those in ``only``.

    Raise UserError naming every id in ``only`` that no rule has, with the closest one.
    """
    if only is None:
        return set(RULES)
    wanted = set(only)
    unknown = sorted(wanted - set(RULES) - {ALLOW_UNKNOWN, ALLOW_REFUSED})
    if unknown:
        raise UserError(
            "\n".join(f"unknown rule `{u}` ({did_you_mean(u, RULES, 'rule')})" for u in unknown)
        )
    return wanted & set(RULES)


def run(inventory: Inventory, only: Iterable[str] | None = None) -> Report:
    """Given an inventory, apply every rule (or those in ``only``) and return the Report.

    Unknown rule ids in ``allow`` entries, and those of rules that keep paths safe, are
    reported on every run (``allow.unknown``, ``allow.refused``). Raise UserError if ``only``
    names a rule that does not exist.
    """
    from allmende.checks import load_rules

    load_rules()
    wanted = selected(only)
    findings: list[Finding] = list(_bad_allows(inventory))
    allowed: list[Finding] = []
    for rule_id in sorted(wanted):
        current = RULES[rule_id]
        for finding in current.check(Context(inventory, current)):
            accepted = allows(inventory, finding.kind, finding.name)
            if not current.guards_paths and any(a.rule == rule_id for a in accepted):
                allowed.append(finding)
            else:
                findings.append(finding)
    return Report(tuple(sorted(set(findings))), tuple(sorted(set(allowed))))


def forceable() -> list[str]:
    """Return the ids of the rules whose error findings ``--force`` lets through, sorted."""
    from allmende.checks import load_rules

    load_rules()
    return sorted(r.id for r in RULES.values() if r.force)


def refusal(report: Report, force: bool = False, check: str = "allmende check") -> str | None:
    """Return why plan and apply refuse an inventory with this report: its error findings
    (with ``force``, those of rules that cannot be forced), one a line; None when they go on.
    ``check`` is the command that lists every finding, as the user types it."""
    blocking = [
        f
        for f in report.findings
        if f.severity == "error" and not (force and f.rule in RULES and RULES[f.rule].force)
    ]
    if not blocking:
        return None
    lines = [str(f) for f in blocking]
    forced = [f for f in blocking if f.rule in RULES and RULES[f.rule].force]
    hint = f"fix them (`{check}` lists every finding)"
    if forced and len(forced) == len(blocking):
        hint += "; --force goes on past them"
    elif not force:
        hint += f"; --force goes on past findings of {', '.join(forceable())} only"
    noun = "error finding" if len(blocking) == 1 else "error findings"
    lines.append(f"{len(blocking)} {noun}: nothing was planned or applied; {hint}.")
    return "\n".join(lines)
