"""`allmende watch` and `allmende status`: probe everything the inventory declares.

Only click is imported here at first: ``watch --plan`` runs on a watch host from allmende's
copy there (``actions.watchhost``), without the inventory's dependencies.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from allmende.cli.options import inventory_option
from allmende.cli.terminal import echo
from allmende.errors import visible

if TYPE_CHECKING:
    from allmende.inventory.watchspec import Plan
    from allmende.state.watchstore import Result

#: Exit codes of `status`: nothing is down; something is down.
OK, DOWN = 0, 1
COLOURS = {"up": "green", "degraded": "yellow", "down": "red"}


@click.command()
@inventory_option(positional=True)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Run the plan file apply wrote on a watch host (/etc/allmende/watch.json) instead "
    "of an inventory: what the systemd unit runs (it reads the backups of the services on "
    "that host, and asks every other host over SSH with a key that may only ask that).",
)
@click.option("--concurrency", default=100, show_default=True, help="Probes at once, at most.")
def watch(inventory: Path, plan_file: Path | None, concurrency: int) -> None:
    """Probe everything the inventory declares, until stopped.

    Derived from the inventory, nothing to type: every route (HTTP through the edge, with its
    name as Host and TLS server name), every exposed TCP port, every certificate (routes
    terminated at the edge, passthrough backends, mail ports: days left and a chain valid for
    the name), every route's name at its zone's nameservers, every backup's freshness read
    from its repository, and the `monitor:` entries of each service; `watch:` in
    allmende.yaml sets intervals, timeouts, retries, flap damping, maintenance windows and a
    Prometheus /metrics endpoint. Results go into the state database (ALLMENDE_STATE); a
    change of state is alerted once to the `notify` channels, and its recovery once. With
    `acme:`, it renews the certificates that are due every hour, as `allmende certs renew`
    does (not with --plan: there each edge's timer renews its own).
    """
    from allmende.watch.runner import Options

    options = Options(concurrency=concurrency)
    if plan_file is not None:
        from allmende.actions.watchhost import watch as watch_plan

        watch_plan(plan_file, os.environ, options)
        return
    from allmende.actions.watch import options_for, prepare
    from allmende.actions.watch import watch as watch_inventory

    found = options_for(inventory, os.environ, prepare(inventory, os.environ))
    found.concurrency = concurrency
    watch_inventory(inventory, os.environ, found)


@click.command()
@inventory_option(positional=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def status(inventory: Path, as_json: bool) -> int:
    """Probe everything the inventory declares once, and print a table.

    The same probes as `allmende watch`, each tried with its retries; nothing is recorded or
    alerted. Exits 1 when anything is down (usable from cron or CI), else 0.
    """
    from allmende.actions.watch import status as run_status

    plan, results = run_status(inventory, os.environ)
    if as_json:
        echo(json.dumps(_as_json(plan, results), indent=2))
    else:
        _table(plan, results)
    return DOWN if any(r.state == "down" for r in results.values()) else OK


def _as_json(plan: Plan, results: dict[str, Result]) -> dict[str, object]:
    return {
        "probes": [
            {
                "id": p.id,
                "service": p.service,
                "host": p.host,
                "kind": p.kind,
                "what": p.what,
                "state": results[p.id].state,
                "detail": results[p.id].detail,
                "latency": results[p.id].latency,
                "value": results[p.id].value,
            }
            for p in plan.probes
        ],
        "skipped": list(plan.skipped),
    }


def coloured() -> bool:
    """Whether to colour: at a terminal, unless NO_COLOR is set (https://no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _ms(latency: float | None) -> str:
    return f"{latency * 1000:.0f} ms" if latency else ""


def _table(plan: Plan, results: dict[str, Result]) -> None:
    rows = [
        (
            results[p.id].state,
            p.service,
            p.kind,
            p.what,
            _ms(results[p.id].latency),
            results[p.id].detail,
        )
        for p in plan.probes
    ]
    header = ("STATE", "SERVICE", "KIND", "WHAT", "TIME", "DETAIL")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    colour = coloured()
    for row in [header, *rows]:
        cells = [visible(str(c)).ljust(w) for c, w in zip(row, widths, strict=False)]
        if colour and row is not header and row[0] in COLOURS:
            cells[0] = click.style(cells[0], fg=COLOURS[row[0]], bold=row[0] == "down")
        click.echo("  ".join([*cells, visible(str(row[5]))]).rstrip())
    down = sum(1 for r in rows if r[0] == "down")
    degraded = sum(1 for r in rows if r[0] == "degraded")
    echo(
        f"\n{len(rows)} probes: {len(rows) - down - degraded} up, {degraded} degraded, {down} down"
    )
    for line in plan.skipped:
        echo(f"not probed: {line}")
