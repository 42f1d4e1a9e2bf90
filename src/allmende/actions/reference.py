"""The generated reference: inventory keys, JSON Schemas and rules, from the code.

The command reference comes from the command line itself (``allmende.cli.reference``), which
adds it to these; `script/reference` writes them all under docs/reference/, and a test fails
when they drift.
"""

from __future__ import annotations

from allmende.checks import load_rules
from allmende.checks.registry import RULES
from allmende.inventory.reference import markdown as inventory_markdown
from allmende.inventory.schema import KINDS, dumps, kind_schema


def rules_markdown() -> str:
    """Return the rules page: every rule id with its severity, reason and fix, and whether
    `allow` and `--force` pass its findings."""
    load_rules()
    lines = [
        "# Rules",
        "",
        "Generated from allmende's checks; do not edit by hand. `allmende check` applies them;",
        "the file a finding is in (a service's, a host's or allmende.yaml) accepts it on purpose",
        "with `allow: [{rule: <id>, reason: ...}]`, except for the rules that keep paths safe",
        "(`allow` no). Exit code 1 when any finding of severity `error` remains.",
        "",
        "`plan` and `apply` refuse an inventory with a finding of severity `error`; `--force`",
        "goes on past those of the rules marked `--force` yes, and never past the others.",
        "",
        "| id | severity | why | fix | allow | --force |",
        "|---|---|---|---|---|---|",
    ]
    for rule in sorted(RULES.values(), key=lambda r: r.id):
        allow = "no" if rule.guards_paths else "yes"
        force = "yes" if rule.force else ("no" if rule.severity == "error" else "")
        lines.append(
            f"| `{rule.id}` | {rule.severity} | {rule.reason} | {rule.fix} | {allow} | {force} |"
        )
    return "\n".join(lines) + "\n"


def files() -> dict[str, str]:
    """Return the generated reference files but the commands': relative path -> text."""
    generated = {"inventory.md": inventory_markdown(), "rules.md": rules_markdown()}
    for kind in KINDS:
        generated[f"schema/{kind}.json"] = dumps(kind_schema(kind))
    return generated
