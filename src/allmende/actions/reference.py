"""The generated reference: inventory keys, JSON Schemas, rules and commands, from the code.

`script/reference` writes these files under docs/reference/; a test fails when they drift.
"""

from __future__ import annotations

import click

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


def _command_markdown(command: click.Command, path: list[str], out: list[str]) -> None:
    context = click.Context(
        command, info_name=" ".join(path), terminal_width=88, max_content_width=88
    )
    out += [f"## `{' '.join(path)}`", "", "```", command.get_help(context).rstrip(), "```", ""]
    if isinstance(command, click.Group):
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is not None and not sub.hidden:
                _command_markdown(sub, [*path, name], out)


def cli_markdown() -> str:
    """Return the command reference: the help of every command and subcommand."""
    from allmende.cli.main import cli

    out = ["# Commands", "", "Generated from `allmende --help`; do not edit by hand.", ""]
    _command_markdown(cli, ["allmende"], out)
    return "\n".join(out).rstrip() + "\n"


def files() -> dict[str, str]:
    """Return every generated reference file: relative path -> text."""
    generated = {
        "inventory.md": inventory_markdown(),
        "rules.md": rules_markdown(),
        "cli.md": cli_markdown(),
    }
    for kind in KINDS:
        generated[f"schema/{kind}.json"] = dumps(kind_schema(kind))
    return generated
