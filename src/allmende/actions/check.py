"""The `check` verb: load an inventory and apply the convention rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from allmende.checks.registry import Report, run
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load


def check(
    root: Path, env: Mapping[str, str] | None = None, only: Iterable[str] | None = None
) -> tuple[Inventory, Report]:
    """Given an inventory directory, return it loaded and its Report.

    Raise InventoryError if it does not load.
    """
    inventory = load(root, env)
    return inventory, run(inventory, only)
