"""Every bundled example loads, shows only the findings it means to show, and documents itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import EXAMPLES

from allmende.actions.check import check

#: What each example means to show: (rule, service) of every finding `allmende check` reports.
MEANT = {
    "demo": [],
    "klankschool": [],
    "softwerke": [],
    "choppa": [],
    "golem": [("names.by_function", "wordpress")],
    "gathering": [],
}


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) == sorted(MEANT)


@pytest.mark.parametrize("name", sorted(MEANT))
def test_example_loads_and_shows_only_what_it_means_to(name: str) -> None:
    inventory, report = check(EXAMPLES / name, {})
    assert inventory.services
    assert [(f.rule, f.service) for f in report.findings] == MEANT[name]


@pytest.mark.parametrize("name", sorted(MEANT))
def test_example_has_a_readme(name: str) -> None:
    assert (EXAMPLES / name / "README.md").read_text().strip()


def test_the_demo_runs_on_this_machine() -> None:
    inventory, _ = check(EXAMPLES / "demo", {})
    assert all(host.ssh is None for host in inventory.hosts.values())


def test_examples_cover_every_engine_the_seeds_run() -> None:
    engines = set()
    for name in MEANT:
        inventory, _ = check(EXAMPLES / name, {})
        engines |= {h.engine for h in inventory.hosts.values()}
    assert {"compose", "swarm", "kubernetes", "incus"} <= engines


def _site(tmp_path: Path, name: str) -> Path:
    from allmende.actions.docs import build

    out = tmp_path / "site"
    build(EXAMPLES / name, out, {})
    return out


@pytest.mark.parametrize("name", sorted(MEANT))
def test_example_docs_and_graph_build(name: str, tmp_path: Path) -> None:
    site = _site(tmp_path, name)
    inventory, _ = check(EXAMPLES / name, {})
    index = (site / "index.html").read_text()
    assert inventory.collective.name in index
    for service in inventory.services:
        assert (site / "services" / f"{service}.html").exists()
    assert "<svg" in index or any(site.rglob("*.svg"))
