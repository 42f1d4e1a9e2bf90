"""What follows from the inventory: effective backups, derived monitors, which edge serves what."""

from __future__ import annotations

from allmende.inventory import derive
from allmende.inventory.load import load
from tests.conftest import BASE, EXAMPLES


def test_a_service_on_an_edge_host_is_served_by_that_edge_only() -> None:
    inventory = load(EXAMPLES / "softwerke", {})
    assert set(derive.edge_hosts(inventory)) == {"elbe", "speicher"}
    assert derive.edges_of(inventory, "cloud") == ("speicher",)
    assert derive.edges_of(inventory, "pad") == ("elbe",)
    assert derive.domain_edges(inventory)["cloud.softwerke.md"] == ("speicher",)
    assert "cloud" not in derive.served_by(inventory, "elbe")


def test_a_service_elsewhere_is_served_by_every_edge() -> None:
    inventory = load(BASE, {})
    assert derive.edges_of(inventory, "wiki") == ("gateway",)
    assert derive.served_by(inventory, "gateway") == ["database", "git", "pages", "wiki"]


def test_backup_takes_the_collective_defaults_and_names_the_repository() -> None:
    inventory = load(BASE, {})
    backup = derive.backup(inventory.collective, "wiki", inventory.services["wiki"])
    assert backup.consistency == "stop"
    assert backup.repository == "ssh://borg@vault.nordlicht.example/srv/borg/wiki"
    assert backup.append_only and backup.schedule == "daily"
    assert backup.keep is not None and backup.keep.daily == 7


def test_monitors_are_derived_from_routes_when_omitted() -> None:
    inventory = load(BASE, {})
    probes = derive.monitors(inventory.services["git"])
    assert [p.http for p in probes] == [
        "https://git.nordlicht.example/",
        "https://nordlicht.example/git",
    ]
    assert [p.tls for p in derive.monitors(inventory.services["pages"])] == [
        "pages.nordlicht.example:443"
    ]


def test_databases_collect_declared_and_used_ones() -> None:
    inventory = load(BASE, {})
    dbs = derive.databases(inventory)
    assert sorted(dbs) == ["database/git", "database/wiki"]
    assert dbs["database/wiki"].users == ("wiki",)
    assert dbs["database/git"].engine == "postgres"


def test_a_providers_databases_are_those_the_whole_list_gives_it() -> None:
    for example in (BASE, *sorted(p for p in EXAMPLES.iterdir() if p.is_dir())):
        inventory = load(example, {})
        every = derive.databases(inventory).values()
        for name in inventory.services:
            expected = sorted(d.name for d in every if d.provider == name)
            assert derive.databases_of(inventory, name) == expected, (example.name, name)
    assert derive.databases_of(load(BASE, {}), "database") == ["git", "wiki"]
    assert derive.databases_of(load(BASE, {}), "wiki") == []
