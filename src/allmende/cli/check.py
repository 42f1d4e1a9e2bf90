"""`allmende check [-C DIR]`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from allmende.actions.check import check as check_action
from allmende.checks.registry import SEVERITIES, Report
from allmende.cli.options import inventory_option
from allmende.cli.terminal import echo
from allmende.errors import InventoryError


@click.command()
@inventory_option(positional=True)
@click.option("--json", "as_json", is_flag=True, help="Print findings as a JSON list.")
@click.option("--rule", "rules", multiple=True, help="Apply only this rule (repeatable).")
@click.option("--show-allowed", is_flag=True, help="Also list findings allowed on purpose.")
def check(inventory: Path, as_json: bool, rules: tuple[str, ...], show_allowed: bool) -> int:
    """Load the inventory and check it against the conventions.

    Exit 0 when clean, 1 when any error-severity finding remains, 2 when it does not load.
    """
    try:
        _, report = check_action(inventory, os.environ, rules or None)
    except InventoryError as exc:
        if not as_json:
            raise
        problems = [
            {
                "rule": "load",
                "severity": "error",
                "file": p.location.file,
                "line": p.location.line,
                "column": p.location.column,
                "keypath": p.keypath,
                "message": p.message,
                "fix": p.hint,
                "service": None,
            }
            for p in exc.problems
        ]
        echo(json.dumps(problems, indent=2))
        return exc.exit_code
    if as_json:
        echo(json.dumps([f.as_json() for f in report.findings], indent=2))
        return 1 if report.errors else 0
    print_report(inventory, report, show_allowed)
    return 1 if report.errors else 0


def print_report(directory: Path, report: Report, show_allowed: bool = False) -> None:
    """Print each finding on a line, the allowed ones if asked, and a summary on stderr."""
    for finding in report.findings:
        echo(str(finding))
    if show_allowed:
        for finding in report.allowed:
            echo(f"{finding} (allowed)")
    counts = {s: sum(1 for f in report.findings if f.severity == s) for s in SEVERITIES}
    summary = ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items() if n)
    allowed = f" ({len(report.allowed)} allowed on purpose)" if report.allowed else ""
    echo(f"{directory}: {summary or 'no findings'}{allowed}", err=True)
