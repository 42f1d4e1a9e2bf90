"""Golden pages of the documentation site: a change to what people read shows up in review.

Rewrite the expected files after an intended change with ``ALLMENDE_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from allmende.checks.registry import run
from allmende.inventory.load import load
from allmende.render.docs import site

HERE = Path(__file__).parent
FIXTURES = HERE.parent / "fixtures" / "valid"
#: A stand-in for Graphviz's picture, so the pages do not depend on the Graphviz version.
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>\n'
PAGES = ("index.html", "services/wiki.html", "ports.html", "markdown/services/wiki.md")
CASES = [(case, page) for case in ("nordlicht",) for page in PAGES]


@pytest.mark.parametrize(("case", "page"), CASES, ids=[f"{c}/{p}" for c, p in CASES])
def test_page_matches_golden(case: str, page: str) -> None:
    inventory = load(FIXTURES / case, {})
    produced = site(inventory, run(inventory), SVG)[page]
    expected = HERE / "docs" / case / page
    if os.environ.get("ALLMENDE_UPDATE_GOLDEN") == "1":
        expected.parent.mkdir(parents=True, exist_ok=True)
        expected.write_bytes(produced)
    assert expected.is_file(), f"no golden file {expected}: run with ALLMENDE_UPDATE_GOLDEN=1"
    assert produced.decode() == expected.read_text()
