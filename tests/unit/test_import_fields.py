"""The compose importer's mapping decisions for healthchecks, dependencies, replicas and what
stays verbatim: one small compose file each (see test_import_compose for the helpers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_import_compose import run

# --------------------------------------------------------------------------- healthchecks


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ('["CMD", "pg_isready", "-U", "app"]', {"command": ["pg_isready", "-U", "app"]}),
        (
            '["CMD-SHELL", "redis-cli ping | grep PONG"]',
            {"command": ["/bin/sh", "-c", "redis-cli ping | grep PONG"]},
        ),
        ('"curl -fsS http://localhost:8080/health || exit 1"', {"http": "/health", "port": "http"}),
        (
            '["CMD", "wget", "-q", "--spider", "http://127.0.0.1/"]',
            {"http": "/", "port": "http-80"},
        ),
        (
            '"curl http://localhost:8080/"',
            {"command": ["/bin/sh", "-c", "curl http://localhost:8080/"]},
        ),
    ],
)
def test_healthchecks(tmp_path: Path, test: str, expected: dict[str, Any]) -> None:
    result = run(
        tmp_path,
        f"""
        services:
          app:
            image: example/app:1.0
            ports: ["8080:8080"]
            healthcheck:
              test: {test}
              interval: 1m30s
              retries: 5
        """,
    )
    assert result.component()["healthcheck"] == {
        **expected,
        "interval": "90s",
        "timeout": "30s",
        "start_period": "0s",  # Compose's default, said because the inventory's is 60s
        "retries": 5,
    }


def test_a_start_period_is_mapped_and_a_start_interval_alone_is_kept_verbatim(
    tmp_path: Path,
) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            healthcheck: {test: [CMD, ok], start_period: 10s, timeout: 5s}
          web:
            image: example/web:1.0
            healthcheck: {test: [CMD, ok], start_interval: 1s}
        """,
    )
    app = result.component("app")
    assert app["healthcheck"] == {"command": ["ok"], "start_period": "10s"}
    assert "x-compose" not in app
    web = result.component("web")
    assert web["healthcheck"]["command"] == ["ok"]
    # only what the typed check cannot say: editing the typed command changes the check
    assert web["x-compose"]["healthcheck"] == {"start_interval": "1s"}


# --------------------------------------------------------------------------- dependencies, deploy


def test_depends_on_in_list_and_map_form(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            depends_on: [cache]
          worker:
            image: example/app:1.0
            depends_on:
              cache: {condition: service_started}
              db: {condition: service_healthy}
          cache: {image: "redis:7.2"}
          db: {image: "postgres:16.4"}
        """,
    )
    assert result.component()["depends_on"] == ["cache"]
    assert "x-compose" not in result.component()
    worker = result.component("worker")
    assert worker["depends_on"] == {"cache": "started", "db": "healthy"}
    assert "x-compose" not in worker  # the conditions are the inventory's own now


def test_depends_on_keeps_started_where_the_dependency_has_a_health_check(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            depends_on: [db]
          db:
            image: postgres:16.4
            healthcheck: {test: ["CMD", "pg_isready"]}
        """,
    )
    # a list in the inventory waits for a health check; Compose's list did not
    assert result.component()["depends_on"] == {"db": "started"}


def test_replicas_and_deploy_hints(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            deploy: {replicas: 3}
          worker:
            image: example/app:1.0
            scale: 2
            deploy:
              resources: {limits: {memory: 512M}}
        """,
    )
    assert result.component()["replicas"] == 3
    assert "x-compose" not in result.component()
    worker = result.component("worker")
    assert worker["replicas"] == 2
    assert worker["x-compose"]["deploy"] == {"resources": {"limits": {"memory": "512M"}}}


def test_what_the_inventory_cannot_say_is_kept_and_listed(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            restart: unless-stopped
            cap_add: [NET_ADMIN]
            logging: {driver: json-file, options: {max-size: 10m}}
            networks: [front]
            labels: {com.example.team: web}
            x-custom: {keep: me}
        networks:
          front: {}
        x-shared: &shared {a: 1}
        version: "3.8"
        """,
    )
    assert "restart" not in result.component()  # unless-stopped: the inventory's default
    assert result.component()["x-compose"] == {
        "cap_add": ["NET_ADMIN"],
        "logging": {"driver": "json-file", "options": {"max-size": "10m"}},
        "networks": {"front": {}},
        "labels": {"com.example.team": "web"},
        "x-custom": {"keep": "me"},
    }
    assert result.data["x-compose"] == {"networks": {"front": {}}}
    assert sorted(result.kept) == sorted(
        [
            "app.cap_add",
            "app.logging",
            "app.networks",
            "app.labels",
            "app.x-custom",
            "(networks)",
        ]
    )
    assert any("ignored `version`" in ln for ln in result.lines)
    assert any("ignored `x-shared`" in ln for ln in result.lines)


def test_dollars_kept_verbatim_are_written_as_compose_reads_them(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            entrypoint: ["sh", "-c", "echo $$HOME"]
            command: ["echo", "$$HOME"]
        """,
    )
    assert result.component()["x-compose"] == {"entrypoint": ["sh", "-c", "echo $$HOME"]}
    assert result.component()["command"] == ["echo", "$HOME"]


def test_an_invalid_component_name_is_renamed_and_stays_reachable(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          wazuh.manager: {image: "wazuh/wazuh-manager:4.9.0"}
          dashboard:
            image: wazuh/wazuh-dashboard:4.9.0
            depends_on: [wazuh.manager]
            links: ["wazuh.manager:manager"]
        """,
    )
    assert list(result.data["components"]) == ["wazuh-manager", "dashboard"]
    manager = result.component("wazuh-manager")
    assert manager["x-compose"]["networks"] == {"default": {"aliases": ["wazuh.manager"]}}
    dashboard = result.component("dashboard")
    assert dashboard["depends_on"] == ["wazuh-manager"]
    assert dashboard["x-compose"]["links"] == ["wazuh-manager:manager"]


@pytest.mark.parametrize(
    ("given", "typed", "kept"),
    [
        ("restart: always", "always", None),
        ("restart: unless-stopped", None, None),
        ("restart: on-failure:5", None, "on-failure:5"),
        ("", "no", None),  # Compose's default: not restarted, which the inventory must say
    ],
)
def test_the_restart_policy_is_mapped_and_keeps_its_meaning(
    tmp_path: Path, given: str, typed: str | None, kept: str | None
) -> None:
    result = run(tmp_path, f"services:\n  app:\n    image: example/app:1.0\n    {given}\n")
    assert result.component().get("restart") == typed
    assert result.component().get("x-compose", {}).get("restart") == kept
