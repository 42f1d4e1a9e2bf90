"""Shared fixtures: building inventories from the fixture directories."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
BASE = FIXTURES / "valid" / "nordlicht"
EXAMPLES = Path(__file__).parent.parent / "examples"


def overlay(case: Path, into: Path) -> Path:
    """Copy the base inventory to ``into`` and lay the files of ``case`` over it.

    A file ``DELETE`` in the case lists base files to remove, one per line.
    """
    shutil.copytree(BASE, into)
    for path in sorted(case.rglob("*")):
        relative = path.relative_to(case)
        if path.is_dir() or relative.name in ("expected.txt", "DELETE", "README"):
            continue
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    delete = case / "DELETE"
    if delete.exists():
        for line in delete.read_text().split():
            (into / line).unlink()
    return into


@pytest.fixture
def nordlicht(tmp_path: Path) -> Path:
    """A writable copy of the valid base inventory."""
    return overlay(FIXTURES / "empty-overlay", tmp_path / "inventory")
