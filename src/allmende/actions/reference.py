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
    """Return the rules page: every rule id with its severity, reason and fix."""
    load_rules()
    lines = [
        "# Rules",
        "",
        "Generated from allmende's checks; do not edit by hand. `allmende check` applies them;",
        "a service accepts a finding on purpose with `allow: [{rule: <id>, reason: ...}]`.",
        "Exit code 1 when any finding of severity `error` remains.",
        "",
        "| id | severity | why | fix |",
        "|---|---|---|---|",
    ]
    for rule in sorted(RULES.values(), key=lambda r: r.id):
        lines.append(f"| `{rule.id}` | {rule.severity} | {rule.reason} | {rule.fix} |")
    return "\n".join(lines) + "\n"


def files() -> dict[str, str]:
    """Return the generated reference files but the commands': relative path -> text."""
    generated = {"inventory.md": inventory_markdown(), "rules.md": rules_markdown()}
    for kind in KINDS:
        generated[f"schema/{kind}.json"] = dumps(kind_schema(kind))
    return generated
