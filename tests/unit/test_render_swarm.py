"""The swarm target (allmende.render.swarm): one stack file per service on swarm hosts."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.render import swarm
from tests.conftest import BASE, EXAMPLES, FIXTURES, carrying

ENGINES = FIXTURES / "valid" / "render-engines"
SOFTWERKE = EXAMPLES / "softwerke"
SCHEMA = Path(__file__).parents[1] / "schemas" / "compose-spec.json"
INVENTORIES = [
    p
    for p in sorted([*EXAMPLES.iterdir(), *(FIXTURES / "valid").iterdir()])
    if (p / "allmende.yaml").is_file()
]


@cache
def inventory(root: Path) -> Inventory:
    return load(root, {})


def stack(root: Path, host: str, service: str) -> dict[str, Any]:
    content = swarm.render(inventory(root))[f"{host}/srv/{service}/stack.yaml"].content
    parsed: dict[str, Any] = yaml.safe_load(content)
    return parsed


def test_one_stack_per_service_on_swarm_hosts_only() -> None:
    assert sorted(swarm.render(inventory(ENGINES))) == [
        "swarm/srv/accounts/stack.yaml",
        "swarm/srv/ledger/stack.yaml",
    ]
    assert swarm.render(inventory(BASE)) == {}
    files = swarm.render(inventory(SOFTWERKE))
    assert all(path.startswith("elbe/") for path in files)  # speicher runs compose
    assert "elbe/srv/chat/stack.yaml" in files


def test_a_stack_file_is_in_the_format_docker_stack_deploy_reads() -> None:
    accounts = stack(ENGINES, "swarm", "accounts")
    assert accounts["version"] == "3.8"
    assert "name" not in accounts
    for service in accounts["services"].values():
        assert "restart" not in service
        assert "depends_on" not in service


def test_deploy_places_on_the_hosts_node_and_rolls() -> None:
    deploy = stack(ENGINES, "swarm", "accounts")["services"]["api"]["deploy"]
    assert deploy["replicas"] == 3
    assert deploy["placement"] == {"constraints": ["node.labels.allmende.host == swarm"]}
    assert deploy["update_config"]["parallelism"] == 1
    assert deploy["update_config"]["order"] == "start-first"
    assert deploy["update_config"]["failure_action"] == "rollback"
    assert deploy["rollback_config"]["parallelism"] == 1
    assert deploy["restart_policy"]["condition"] == "any"
    assert deploy["labels"]["org.allmende.service"] == "accounts"


def test_a_single_task_holding_volumes_is_replaced_stop_first() -> None:
    db = stack(ENGINES, "swarm", "ledger")["services"]["db"]["deploy"]
    assert db["update_config"]["order"] == "stop-first"
    assert db["rollback_config"]["order"] == "stop-first"
    assert db["replicas"] == 1


def test_secrets_are_external_swarm_secrets_read_from_files() -> None:
    accounts = stack(ENGINES, "swarm", "accounts")
    assert accounts["secrets"] == {"accounts_accounts-db-password": {"external": True}}
    api = accounts["services"]["api"]
    # at the use's path, with its owner and mode (0440), natively
    assert api["secrets"] == [
        {
            "source": "accounts_accounts-db-password",
            "target": "/etc/accounts/db",
            "uid": "1000",
            "gid": "1000",
            "mode": 0o440,
        }
    ]
    assert api["environment"]["DB_PASSWORD_FILE"] == "/etc/accounts/db"
    assert "DB_PASSWORD" not in api["environment"]
    ledger = stack(ENGINES, "swarm", "ledger")["services"]["db"]
    assert ledger["secrets"] == [
        {"source": "ledger_ledger-root-password", "target": "ledger-root-password"}
    ]


def test_published_ports_go_through_the_routing_mesh() -> None:
    api = stack(ENGINES, "swarm", "accounts")["services"]["api"]
    assert api["ports"] == [
        {"target": 8080, "published": 18080, "protocol": "tcp", "mode": "ingress"}
    ]
    assert "ports" not in stack(ENGINES, "swarm", "ledger")["services"]["db"]


def test_shared_database_network_is_an_overlay() -> None:
    ledger = stack(ENGINES, "swarm", "ledger")
    network = {"name": "allmende-ledger", "driver": "overlay"}
    assert ledger["networks"] == {"default": {}, "allmende-ledger": network}
    assert ledger["services"]["db"]["networks"]["allmende-ledger"] == {"aliases": ["ledger"]}
    accounts = stack(ENGINES, "swarm", "accounts")
    assert accounts["networks"] == {"default": {}, "allmende-ledger": {"external": True}}
    assert accounts["services"]["files"]["networks"] == {"default": {}, "allmende-ledger": {}}


def test_built_from_the_compose_blocks() -> None:
    api = stack(ENGINES, "swarm", "accounts")["services"]["api"]
    assert api["environment"]["GREETING"] == "costs $$5"
    assert api["healthcheck"]["interval"] == "15s"
    assert api["labels"]["org.allmende.component"] == "api"
    files = stack(ENGINES, "swarm", "accounts")["services"]["files"]
    assert files["volumes"] == ["/mnt/big/accounts:/data"]


def test_x_compose_merges_into_deploy_without_losing_it() -> None:
    deploy = stack(ENGINES, "swarm", "accounts")["services"]["api"]["deploy"]
    assert deploy["resources"] == {"limits": {"cpus": "0.5"}}
    assert deploy["replicas"] == 3


def test_x_compose_of_the_service_reaches_the_top_level() -> None:
    accounts = stack(ENGINES, "swarm", "accounts")
    assert accounts["configs"] == {"accounts-settings": {"external": True}}
    assert accounts["services"]["api"]["configs"] == ["accounts-settings"]


def test_the_file_says_how_to_deploy_it() -> None:
    content = swarm.render(inventory(ENGINES))["swarm/srv/accounts/stack.yaml"].content.decode()
    assert "# Deploy with: docker stack deploy -c stack.yaml accounts" in content
    assert "# Tasks run on the node labelled allmende.host=swarm." in content


@pytest.mark.parametrize("root", INVENTORIES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_stack_file_validates_against_the_compose_schema(root: Path) -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    for path, file in swarm.render(inventory(root)).items():
        errors = sorted(e.message for e in validator.iter_errors(yaml.safe_load(file.content)))
        assert not errors, f"{root.name}: {path}: {errors}"


def test_carried_files_are_configs_named_by_what_they_hold(tmp_path: Path) -> None:
    after = "    volumes: {data: /var/lib/mysql}\n"
    files = "    files: {/etc/mysql/conf.d: {source: conf.d, read_only: true}}\n"
    root = carrying(ENGINES, tmp_path / "inventory", "ledger", after, files)
    (root / "files" / "ledger" / "conf.d").mkdir(parents=True)
    cnf = root / "files" / "ledger" / "conf.d" / "tuning.cnf"
    cnf.write_text("[mysqld]\nmax_connections = 50\n")

    def rendered() -> tuple[dict[str, Any], dict[str, Any]]:
        files = swarm.render(load(root, {}))
        assert files["swarm/srv/ledger/files/conf.d/tuning.cnf"].content == cnf.read_bytes()
        parsed = yaml.safe_load(files["swarm/srv/ledger/stack.yaml"].content)
        errors = [
            e.message
            for e in jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(parsed)
        ]
        assert not errors
        return parsed["configs"], parsed["services"]["db"]

    configs, db = rendered()
    [(name, config)] = configs.items()
    assert config == {"file": "./files/conf.d/tuning.cnf", "name": name}
    assert db["configs"] == [
        {"source": name, "target": "/etc/mysql/conf.d/tuning.cnf", "mode": 0o444}
    ]
    assert not any("/files/" in v for v in db.get("volumes", []))  # no bind mount in a swarm
    cnf.write_text("[mysqld]\nmax_connections = 80\n")
    [changed] = rendered()[0]
    assert changed != name  # a config cannot change: a new one, rolled out on deploy
    cnf.chmod(0o755)
    configs, db = rendered()
    assert db["configs"][0]["mode"] == 0o555, "an executable file stays executable"
    files = swarm.render(load(root, {}))
    assert files["swarm/srv/ledger/files/conf.d/tuning.cnf"].mode == 0o755
