"""Golden files of the graph: each tests/golden/graph/<case>/ holds the expected DOT, JSON and
Mermaid of the valid fixture tests/fixtures/valid/<case>.

Run with ALLMENDE_UPDATE_GOLDEN=1 to write the expected files from the current output (then
read the diff before committing it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from allmende.inventory.load import load
from allmende.render.graph import Graph, build, to_json
from allmende.render.graph_dot import to_dot
from allmende.render.graph_mermaid import to_mermaid

HERE = Path(__file__).parent / "graph"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "valid"
CASES = sorted(p.name for p in HERE.iterdir() if p.is_dir())
WRITERS: dict[str, Callable[[Graph], str]] = {"dot": to_dot, "json": to_json, "mmd": to_mermaid}
UPDATE = os.environ.get("ALLMENDE_UPDATE_GOLDEN") == "1"


def test_there_are_cases() -> None:
    assert "nordlicht" in CASES


@pytest.mark.parametrize("suffix", sorted(WRITERS))
@pytest.mark.parametrize("case", CASES)
def test_graph_matches_golden(case: str, suffix: str) -> None:
    graph = build(load(FIXTURES / case, {}))
    actual = WRITERS[suffix](graph)
    expected = HERE / case / f"expected.{suffix}"
    if UPDATE:
        expected.write_text(actual, encoding="utf-8")
    assert expected.exists(), f"{expected} is missing: run with ALLMENDE_UPDATE_GOLDEN=1"
    assert actual == expected.read_text(encoding="utf-8"), (
        f"{expected.relative_to(HERE.parent)} differs: if the change is intended, "
        "run with ALLMENDE_UPDATE_GOLDEN=1 and read the diff"
    )
