"""Golden files of the render targets: a change to a rendered file shows up in review.

``tests/golden/<target>/<case>/`` holds exactly the files the render target ``<target>`` writes
for one inventory, at the paths render gives them (``dns/<zone>.zone``,
``<host>/etc/systemd/system/...``). The case name says which inventory: ``example-<name>`` is
``examples/<name>``, any other name the valid fixture ``tests/fixtures/valid/<case>``. A
``README.md`` at the top of a case is never compared: it says what the case shows, and is all a
case holds when the target renders nothing for that inventory.

Rewrite the expected files after an intended change with ``ALLMENDE_UPDATE_GOLDEN=1`` (it also
removes expected files the target no longer renders), then read the diff.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from allmende.inventory.load import load
from allmende.render.targets import TARGETS, renderer

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "valid"
EXAMPLES = ROOT / "examples"
NOT_COMPARED = "README.md"
UPDATE = os.environ.get("ALLMENDE_UPDATE_GOLDEN") == "1"
CASES = sorted(
    (target, case.name)
    for target in TARGETS
    if (HERE / target).is_dir()
    for case in (HERE / target).iterdir()
    if case.is_dir()
)


def inventory_dir(case: str) -> Path:
    """Return the inventory a case renders: ``example-<name>`` or a valid fixture's name."""
    if case.startswith("example-"):
        return EXAMPLES / case.removeprefix("example-")
    return FIXTURES / case


def expected_files(case_dir: Path) -> dict[str, bytes]:
    """Return the expected files of a case by their path relative to it."""
    return {
        path.relative_to(case_dir).as_posix(): path.read_bytes()
        for path in sorted(case_dir.rglob("*"))
        if path.is_file() and path.relative_to(case_dir).as_posix() != NOT_COMPARED
    }


def write(case_dir: Path, files: dict[str, bytes]) -> None:
    """Replace the expected files of a case (keeping its README.md) with ``files``."""
    for child in case_dir.iterdir():
        if child.name == NOT_COMPARED:
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    for name, data in files.items():
        path = case_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.mark.parametrize(("target", "case"), CASES, ids=[f"{t}/{c}" for t, c in CASES])
def test_render_matches_golden(target: str, case: str) -> None:
    root = inventory_dir(case)
    assert root.is_dir(), f"golden case {target}/{case}: no inventory at {root}"
    produced = {path: f.content for path, f in renderer(target)(load(root, {})).items()}
    case_dir = HERE / target / case
    if UPDATE:
        write(case_dir, produced)
    expected = expected_files(case_dir)
    hint = "if the change is intended, run with ALLMENDE_UPDATE_GOLDEN=1 and read the diff"
    assert sorted(produced) == sorted(expected), f"{target}/{case}: other files rendered; {hint}"
    for path, content in produced.items():
        assert content.decode() == expected[path].decode(), f"{target}/{case}/{path}: {hint}"


def test_every_case_renders_something_or_says_why() -> None:
    for target, case in CASES:
        case_dir = HERE / target / case
        assert expected_files(case_dir) or (case_dir / NOT_COMPARED).is_file(), (
            f"{target}/{case} expects no files: say why in its {NOT_COMPARED}"
        )
