"""The `up` verb, the main job: check, then plan and apply unless the check found errors, then
build the docs (with the findings) for serving."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from allmende.actions.check import check
from allmende.actions.docs import write
from allmende.checks.registry import Report
from allmende.inventory.inventory import Inventory

#: Why nothing was applied when the check found errors.
CHECK_FAILED = "the check found errors; fix them first"


@dataclass(frozen=True)
class Upped:
    """What ``up`` did: the inventory and its findings, whether every host is as planned
    (``applied``; True when applying was not asked for), why nothing was applied if the check
    stopped it, and the docs site's files."""

    inventory: Inventory
    report: Report
    applied: bool
    refused: str | None
    site: list[Path]


def up(
    root: Path,
    env: Mapping[str, str],
    out: Path,
    *,
    told: Callable[[Report], None],
    apply: Callable[[], bool] | None,
) -> Upped:
    """Check the inventory in ``root`` and tell the findings to ``told``; unless they hold an
    error, run ``apply`` (None: apply nothing), which plans, asks and applies and returns
    whether every host is as planned; then write the docs site to ``out``. Raise
    InventoryError if the inventory does not load, UserError if the site cannot be written."""
    inventory, report = check(root, env)
    told(report)
    refused = None
    applied = True
    if apply is not None:
        if report.errors:
            refused, applied = CHECK_FAILED, False
        else:
            applied = apply()
    return Upped(inventory, report, applied, refused, write(inventory, report, out))
