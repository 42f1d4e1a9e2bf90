"""The engines (allmende.engines), and the actions a plan takes through them
(allmende.plan.actions)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from allmende import engines
from allmende.apply.files import new_manifest
from allmende.apply.host import HostPlan, apply_host
from allmende.connectors.base import Ran
from allmende.engines import find_driver
from allmende.engines.base import Driver, Running, Site, observe
from allmende.engines.containers import parse_ps
from allmende.engines.kubernetes import parse_kubectl
from allmende.errors import ApplyFailed, UserError
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.plan.actions import (
    engine_actions,
    host_actions,
    order,
    plan_actions,
    service_of,
    unrecorded,
)
from allmende.plan.changes import Action, Change, Plan, file_change, sha256
from allmende.plan.deliver import host_files, secret_names
from allmende.plan.digest import HostKey
from allmende.plan.observe import Recorded, wanted_by_host
from allmende.render.output import Rendered
from allmende.render.targets import render_all
from tests.conftest import BASE, FIXTURES
from tests.memory import MemoryHost

#: A host's key for the hashes of secret files; one the plan chose for a host without one.
KEY = HostKey(b"k" * 32)
FRESH = HostKey(b"f" * 32, new=True)

ENGINES = FIXTURES / "valid" / "render-engines"
DOCKER_COMPOSE = ("docker", "compose")


def bound(name: str, runtime: str, program: tuple[str, ...] = (), host: str = "rack") -> Driver:
    found = engines.engine(name)
    assert found is not None
    return Driver(found, Site(host, runtime, "/", program))


@cache
def inventory(root: Path) -> Inventory:
    return load(root, {})


@cache
def rendered(root: Path) -> dict[str, Rendered]:
    return render_all(inventory(root))


def wanted(root: Path, host: str) -> dict[str, Rendered]:
    return wanted_by_host(rendered(root), [host])[host]


def update(host: str, path: str) -> Change:
    return Change("update", host, path, "", before="a" * 64, after="b" * 64)


def delete(host: str, path: str) -> Change:
    return Change("delete", host, path, "", before="a" * 64)


def create(host: str, path: str) -> Change:
    return Change("create", host, path, "", after="b" * 64)


# --------------------------------------------------------------------------- parse_ps

#: What ``podman ps -a --format json`` prints: one JSON array, Labels a dict, Names a list.
PODMAN_PS: list[dict[str, Any]] = [
    {
        "AutoRemove": False,
        "Command": ["postgres"],
        "CreatedAt": "About a minute ago",
        "Exited": False,
        "ExitedAt": -62135596800,
        "ExitCode": 0,
        "Id": "3f5c2a9e1b7d",
        "Image": "docker.io/library/postgres:16.4",
        "ImageID": "b0d3e4b1c2a9",
        "IsInfra": False,
        "Labels": {
            "com.docker.compose.project": "database",
            "com.docker.compose.service": "server",
            "io.podman.compose.project": "database",
            "org.allmende.collective": "nordlicht",
            "org.allmende.component": "server",
            "org.allmende.service": "database",
        },
        "Mounts": ["/var/lib/postgresql/data"],
        "Names": ["database_server_1"],
        "Namespaces": {},
        "Networks": ["database_default"],
        "Pid": 4242,
        "Pod": "",
        "PodName": "",
        "Ports": [{"host_ip": "127.0.0.1", "container_port": 5432, "host_port": 5432}],
        "Size": None,
        "StartedAt": 1727776800,
        "State": "running",
        "Status": "Up 5 seconds (healthy)",
        "Created": 1727776795,
    },
    {
        "Command": ["php-fpm"],
        "Exited": False,
        "ExitCode": 0,
        "Id": "9a8b7c6d5e4f",
        "Image": "docker.io/library/mediawiki:1.42.3",
        "Labels": {
            "io.podman.compose.project": "wiki",
            "org.allmende.component": "app",
            "org.allmende.service": "wiki",
        },
        "Names": ["wiki_app_1"],
        "State": "running",
        "Status": "Up 2 seconds (starting)",
    },
    {
        "Command": ["/usr/bin/entrypoint"],
        "Exited": False,
        "ExitCode": 0,
        "Id": "0a1b2c3d4e5f",
        "Image": "docker.io/gitea/gitea:1.22.3",
        "Labels": {
            "io.podman.compose.project": "git",
            "org.allmende.component": "app",
            "org.allmende.service": "git",
        },
        "Names": ["git_app_1"],
        "State": "running",
        "Status": "Up 3 seconds (unhealthy)",
    },
    {
        "Command": ["caddy", "run"],
        "Exited": True,
        "ExitCode": 1,
        "Id": "5e4f3a2b1c0d",
        "Image": "docker.io/library/caddy:2.8.4",
        "Labels": {
            "io.podman.compose.project": "pages",
            "org.allmende.component": "web",
            "org.allmende.service": "pages",
        },
        "Names": ["pages_web_1"],
        "State": "exited",
        "Status": "Exited (1) 2 seconds ago",
    },
    {
        # Someone's own container, started by hand: no allmende labels.
        "Command": ["sleep", "infinity"],
        "Id": "ffffffffffff",
        "Image": "docker.io/library/alpine:3.20",
        "Labels": None,
        "Names": ["scratch"],
        "State": "running",
        "Status": "Up 3 days",
    },
    {
        "Id": "eeeeeeeeeeee",
        "Image": "docker.io/library/redis:7",
        "Labels": {"com.docker.compose.project": "other", "org.allmende.service": "other"},
        "Names": ["other_redis_1"],
        "State": "running",
        "Status": "Up 1 hour",
    },
]

#: What ``docker ps -a --format json`` prints: one object per line, Labels one string.
DOCKER_PS = "\n".join(
    json.dumps(row)
    for row in [
        {
            "Command": '"docker-entrypoint.s…"',
            "CreatedAt": "2024-10-01 10:00:00 +0200 CEST",
            "ID": "3f5c2a9e1b7d",
            "Image": "postgres:16.4",
            "Labels": "com.docker.compose.config-hash=5d1c0b,com.docker.compose.container-number=1,"
            "com.docker.compose.depends_on=,com.docker.compose.image=sha256:b0d3,"
            "com.docker.compose.oneoff=False,com.docker.compose.project=database,"
            "com.docker.compose.project.config_files=/srv/database/compose.yaml,"
            "com.docker.compose.project.working_dir=/srv/database,"
            "com.docker.compose.service=server,com.docker.compose.version=2.29.7,"
            "org.allmende.collective=nordlicht,org.allmende.component=server,"
            "org.allmende.service=database",
            "LocalVolumes": "0",
            "Mounts": "/srv/database/data",
            "Names": "database-server-1",
            "Networks": "database_default",
            "Ports": "127.0.0.1:5432->5432/tcp",
            "RunningFor": "5 minutes ago",
            "Size": "0B",
            "State": "running",
            "Status": "Up 5 minutes (healthy)",
        },
        {
            "Command": '"docker-php-entrypoi…"',
            "ID": "9a8b7c6d5e4f",
            "Image": "mediawiki:1.42.3",
            "Labels": "com.docker.compose.project=wiki,org.allmende.component=app,"
            "org.allmende.service=wiki",
            "Names": "wiki-app-1",
            "State": "exited",
            "Status": "Exited (137) 3 minutes ago",
        },
        {
            "Command": '"sleep infinity"',
            "ID": "ffffffffffff",
            "Image": "alpine:3.20",
            "Labels": "",
            "Names": "scratch",
            "State": "running",
            "Status": "Up 3 days",
        },
    ]
)


def test_podman_ps_gives_each_services_components_state_and_health() -> None:
    seen = parse_ps(json.dumps(PODMAN_PS, indent=4).encode())
    assert sorted(seen) == ["database", "git", "pages", "wiki"]
    assert seen["database"].states == {"server": "running"}
    assert seen["database"].health == {"server": "healthy"}
    assert seen["database"].containers == {"server": "database_server_1"}
    assert seen["wiki"].health == {"app": "starting"}
    assert seen["git"].health == {"app": "unhealthy"}
    assert seen["pages"].states == {"web": "exited"}
    assert seen["pages"].health == {}
    assert seen["pages"].containers == {"web": "pages_web_1"}


def test_docker_ps_one_object_per_line_with_labels_as_one_string() -> None:
    seen = parse_ps(DOCKER_PS.encode() + b"\n")
    assert sorted(seen) == ["database", "wiki"]
    assert seen["database"].states == {"server": "running"}
    assert seen["database"].health == {"server": "healthy"}
    assert seen["database"].containers == {"server": "database-server-1"}
    assert seen["wiki"].states == {"app": "exited"}


def test_docker_ps_with_a_single_container_and_old_health_wording() -> None:
    row = {
        "Labels": "org.allmende.service=wiki,org.allmende.component=app",
        "Names": "wiki-app-1",
        "State": "running",
        "Status": "Up 4 seconds (health: starting)",
    }
    seen = parse_ps(json.dumps(row).encode() + b"\n")
    assert seen["wiki"].states == {"app": "running"}
    assert seen["wiki"].health == {"app": "starting"}


@pytest.mark.parametrize("output", [b"", b"\n", b"[]", b"[]\n"])
def test_nothing_running_is_no_service(output: bytes) -> None:
    assert parse_ps(output) == {}


def test_containers_without_allmende_labels_are_ignored() -> None:
    rows = [row for row in PODMAN_PS if row["Names"] in (["scratch"], ["other_redis_1"])]
    assert parse_ps(json.dumps(rows).encode()) == {}


def container(state: str, status: str, name: str) -> dict[str, object]:
    return {
        "Labels": {"org.allmende.service": "shop", "org.allmende.component": "worker"},
        "Names": [name],
        "State": state,
        "Status": status,
    }


@pytest.mark.parametrize("running_first", [True, False])
def test_a_running_container_wins_over_an_exited_one_of_the_same_component(
    running_first: bool,
) -> None:
    up = container("running", "Up 1 minute", "shop_worker_2")
    gone = container("exited", "Exited (1) 1 minute ago", "shop_worker_1")
    rows = [up, gone] if running_first else [gone, up]
    seen = parse_ps(json.dumps(rows).encode())
    assert seen["shop"].states == {"worker": "running"}
    assert seen["shop"].containers == {"worker": "shop_worker_2"}
    assert seen["shop"].missing(["worker"]) == []


def test_running_missing_names_what_does_not_run_and_how() -> None:
    running = Running({"app": "running", "worker": "exited", "cache": "created"})
    assert running.missing(["app", "worker", "cache", "printer"]) == [
        "worker exited",
        "cache created",
        "printer missing",
    ]
    assert running.missing(["app"]) == []
    assert Running().missing(["app"]) == ["app missing"]


# --------------------------------------------------------------------------- parse_kubectl


def workload(
    kind: str, service: str, component: str, replicas: int | None, ready: int | None
) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {
            "name": component,
            "namespace": service,
            "labels": {
                "app.kubernetes.io/name": component,
                "app.kubernetes.io/part-of": service,
                "app.kubernetes.io/managed-by": "allmende",
            },
        },
        "spec": {} if replicas is None else {"replicas": replicas},
        "status": {"replicas": replicas or 1} if ready is None else {"readyReplicas": ready},
    }


def test_kubectl_counts_a_workload_running_when_every_replica_is_ready() -> None:
    document = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            workload("Deployment", "board", "web", 2, 2),
            workload("Deployment", "board", "worker", 2, 1),
            workload("StatefulSet", "board", "db", 1, None),
            workload("Deployment", "notes", "app", None, 1),
            {"kind": "Deployment", "metadata": {"name": "foreign", "labels": {}}},
        ],
    }
    seen = parse_kubectl(json.dumps(document).encode())
    assert sorted(seen) == ["board", "notes"]
    assert seen["board"].states == {"web": "running", "worker": "starting", "db": "starting"}
    assert seen["notes"].states == {"app": "running"}
    assert seen["board"].missing(["web", "worker", "db"]) == ["worker starting", "db starting"]


def test_kubectl_with_nothing_deployed() -> None:
    assert parse_kubectl(b'{"apiVersion": "v1", "items": [], "kind": "List"}') == {}


# --------------------------------------------------------------------------- Driver


@pytest.mark.parametrize(
    "compose",
    [("docker", "compose"), ("docker-compose",), ("podman-compose",)],
)
def test_compose_commands(compose: tuple[str, ...]) -> None:
    runtime = "podman" if compose == ("podman-compose",) else "docker"
    driver = bound("compose", runtime, compose)
    assert driver.project_file("wiki") == "/srv/wiki/compose.yaml"
    assert driver.up("wiki") == (
        (*compose, "-p", "wiki", "-f", "/srv/wiki/compose.yaml", "up", "-d"),
    )
    assert driver.down("wiki") == (
        (*compose, "-p", "wiki", "-f", "/srv/wiki/compose.yaml", "down"),
    )
    assert driver.engine.observe(driver.site) == (
        runtime,
        "ps",
        "-a",
        "--filter",
        "label=org.allmende.service",
        "--format",
        "json",
    )


def test_kubernetes_with_docker_applies_the_secrets_and_the_manifest() -> None:
    driver = bound("kubernetes", "docker")
    assert driver.project_file("board") == "/srv/board/kubernetes.yaml"
    assert driver.up("board", ["board-token"]) == (
        (
            "kubectl",
            "apply",
            "-f",
            "/srv/board/secrets/kubernetes.yaml",
            "-f",
            "/srv/board/kubernetes.yaml",
        ),
    )
    assert driver.down("board") == (
        ("kubectl", "delete", "--ignore-not-found", "-f", "/srv/board/kubernetes.yaml"),
    )
    observe = driver.engine.observe(driver.site)
    assert observe is not None
    assert observe[:3] == ("kubectl", "get", "deployments,statefulsets")
    assert "app.kubernetes.io/managed-by=allmende" in observe
    assert observe[-2:] == ("-o", "json")


def test_kubernetes_with_podman_plays_the_manifest() -> None:
    driver = bound("kubernetes", "podman")
    assert driver.up("board") == (
        ("podman", "kube", "play", "--replace", "/srv/board/kubernetes.yaml"),
    )
    assert driver.down("board") == (("podman", "kube", "down", "/srv/board/kubernetes.yaml"),)
    assert driver.engine.observe(driver.site) == (
        "podman",
        "ps",
        "-a",
        "--filter",
        "label=app.kubernetes.io/managed-by=allmende",
        "--format",
        "json",
    )
    # With secrets, kube play makes podman secrets of the Secret objects first (dropping the
    # old ones, which it would not replace).
    forget, secrets, play = driver.up("board", ["board-token"])
    assert forget[:2] == ("sh", "-c") and forget[-1] == "board-token"
    assert secrets == ("podman", "kube", "play", "/srv/board/secrets/kubernetes.yaml")
    assert play == ("podman", "kube", "play", "--replace", "/srv/board/kubernetes.yaml")


def test_swarm_deploys_the_stack() -> None:
    driver = bound("swarm", "docker", host="swarm")
    assert driver.project_file("ledger") == "/srv/ledger/stack.yaml"
    label, up = driver.up("ledger")
    # The node is labelled with the host's name, which the stack's placement asks for.
    assert label[:2] == ("sh", "-c") and "--label-add" in label[2] and label[-1] == "swarm"
    assert up[:3] == ("docker", "stack", "deploy")
    assert up[up.index("-c") + 1] == "/srv/ledger/stack.yaml"
    assert up[-1] == "ledger"
    assert driver.down("ledger") == (("docker", "stack", "rm", "ledger"),)


@pytest.mark.parametrize("engine", ["systemd"])
def test_hosts_that_only_get_files_are_not_driven(engine: str) -> None:
    assert engines.engine(engine) is None
    assert asyncio.run(find_driver(MemoryHost("rack"), engine, "docker")) is None


def test_every_engine_has_the_same_shape() -> None:
    assert sorted(engines.engines()) == ["compose", "incus", "kubernetes", "swarm"]
    for engine in engines.engines().values():
        site = Site("rack", engine.runtimes[0])
        assert engine.project("wiki") == f"/srv/wiki/{engine.project_file}"
        assert engine.up(site, "wiki") and engine.down(site, "wiki")
        for command in (*engine.up(site, "wiki", ["wiki-key"]), *engine.down(site, "wiki")):
            assert all(isinstance(word, str) for word in command)


def test_swarm_cannot_be_driven_with_podman() -> None:
    with pytest.raises(UserError, match="engine swarm cannot be driven with runtime podman"):
        asyncio.run(find_driver(MemoryHost("rack"), "swarm", "podman"))


def test_the_kubernetes_manifest_labels_are_the_ones_observe_selects_and_parses() -> None:
    documents = yaml.safe_load_all(rendered(ENGINES)["kubernetes/board.yaml"].content)
    workloads = [d for d in documents if d["kind"] in ("Deployment", "StatefulSet")]
    assert sorted(d["metadata"]["name"] for d in workloads) == ["db", "web", "worker"]
    cluster = bound("kubernetes", "docker")
    observe = cluster.engine.observe(cluster.site)
    assert observe is not None
    key, _, value = observe[observe.index("-l") + 1].partition("=")
    for document in workloads:
        assert document["metadata"]["labels"][key] == value
        document["status"] = {"readyReplicas": document["spec"].get("replicas", 1)}
    seen = parse_kubectl(json.dumps({"items": workloads}).encode())
    assert seen["board"].missing(["db", "web", "worker"]) == []


# --------------------------------------------------------------------------- find/observe


@pytest.mark.parametrize(
    ("engine", "runtime", "plugin", "compose"),
    [
        ("compose", "docker", 0, ("docker", "compose")),
        ("compose", "docker", 125, ("docker-compose",)),
        ("compose", "podman", 0, ("podman-compose",)),
        ("kubernetes", "docker", 0, ()),
    ],
)
def test_find_driver_picks_the_compose_program(
    engine: str, runtime: str, plugin: int, compose: tuple[str, ...]
) -> None:
    host = MemoryHost("rack", programs={("docker", "compose", "version"): Ran(plugin, b"", b"")})
    found = asyncio.run(find_driver(host, engine, runtime))
    assert found is not None
    assert (found.engine.name, found.site.runtime, found.site.program) == (engine, runtime, compose)


def test_observe_engine_parses_what_the_host_answered() -> None:
    driver = bound("compose", "podman", ("podman-compose",))
    command = driver.engine.observe(driver.site)
    assert command is not None
    host = MemoryHost("rack", programs={command: Ran(0, json.dumps(PODMAN_PS).encode(), b"")})
    seen = asyncio.run(observe(host, driver))
    assert seen is not None
    assert seen["pages"].missing(["web"]) == ["web exited"]


def test_observe_engine_says_what_to_do_when_the_engine_is_missing() -> None:
    host = MemoryHost("rack")
    with pytest.raises(UserError, match=r"rack: `docker` is not installed there.*install docker"):
        asyncio.run(observe(host, bound("compose", "docker", DOCKER_COMPOSE)))


def test_observe_engine_refuses_an_answer_it_cannot_read() -> None:
    driver = bound("compose", "docker", DOCKER_COMPOSE)
    command = driver.engine.observe(driver.site)
    assert command is not None
    host = MemoryHost("rack", programs={command: Ran(0, b"Error: something {not json", b"")})
    with pytest.raises(UserError, match="cannot read what `docker ps` answered"):
        asyncio.run(observe(host, driver))


# --------------------------------------------------------------------------- engine_actions


def all_running(root: Path, services: Sequence[str]) -> dict[str, Running]:
    model = inventory(root)
    return {
        s: Running({c: "running" for c, m in model.services[s].components.items() if m.image})
        for s in services
    }


RACK = ("database", "git", "wiki")
COMPOSE = bound("compose", "docker", DOCKER_COMPOSE)


def rack_actions(
    changes: Sequence[Change], running: dict[str, Running] | None, root: Path = BASE
) -> list[Action]:
    return engine_actions(inventory(root), "rack", COMPOSE, changes, wanted(root, "rack"), running)


#: How the plan says a running, routed service that holds data is replaced.
STOP_FIRST = (
    "its files change; stop-first (it holds data): its routes are down from its stop until it "
    "is healthy, at most 64 s, the edge showing a maintenance page"
)


def test_a_service_whose_files_change_is_brought_up() -> None:
    actions = rack_actions([update("rack", "/srv/wiki/compose.yaml")], all_running(BASE, RACK))
    # wiki holds data (a volume): stopped first; the window is its start period (60 s) and
    # the edge's checks noticing
    assert actions == [Action("rack", "up", "wiki", STOP_FIRST, COMPOSE.recreate("wiki"))]


def start_first(tmp_path: Path, service: str, update: str = "update: start-first\n") -> Path:
    root = tmp_path / "inventory"
    import shutil

    shutil.copytree(BASE, root)
    path = root / "services" / f"{service}.yaml"
    path.write_text(path.read_text() + update)
    return root


def test_a_service_that_may_run_twice_is_started_beside_itself_first(tmp_path: Path) -> None:
    root = start_first(tmp_path, "wiki")
    changes = [update("rack", "/srv/wiki/compose.yaml")]
    [action] = rack_actions(changes, all_running(root, RACK), root)
    assert (action.verb, action.subject, action.commands) == (
        "replace",
        "wiki",
        COMPOSE.recreate("wiki"),
    )
    assert action.reason == (
        "its files change; start-first: the new version runs beside the old as "
        "wiki-allmende-next until the edge sends to it, no downtime"
    )


def test_a_service_that_is_not_running_is_simply_brought_up(tmp_path: Path) -> None:
    root = start_first(tmp_path, "wiki")
    running = all_running(root, ("database", "git"))
    [action] = rack_actions([update("rack", "/srv/wiki/compose.yaml")], running, root)
    assert (action.verb, action.reason) == ("up", "its files change")


def test_a_service_without_routes_is_simply_recreated(tmp_path: Path) -> None:
    # git's routes are left out: nothing sends to it through an edge, nothing to switch
    root = start_first(tmp_path, "database")
    changes = [update("rack", "/srv/database/compose.yaml")]
    [action] = rack_actions(changes, all_running(root, RACK), root)
    assert (action.verb, action.reason) == ("up", "its files change")


def test_the_version_beside_publishes_every_port_where_the_host_picks() -> None:
    content = wanted(BASE, "rack")["/srv/wiki/compose.yaml"].content
    beside = COMPOSE.beside("wiki", content)
    assert beside is not None
    assert beside.name == "wiki-allmende-next"
    assert beside.path == "/srv/wiki/.allmende-next.compose.yaml"
    old, new = yaml.safe_load(content), yaml.safe_load(beside.content)
    assert old["services"]["app"]["ports"] == ["192.0.2.10:8081:80"]
    assert new["services"]["app"]["ports"] == ["192.0.2.10::80"]
    assert new["services"]["app"]["labels"]["org.allmende.service"] == "wiki-allmende-next"
    # everything else is the same project
    for entry in (old, new):
        entry["services"]["app"].pop("ports")
        entry["services"]["app"]["labels"].pop("org.allmende.service")
    assert old == new
    assert beside.up == (
        (*DOCKER_COMPOSE, "-p", "wiki-allmende-next", "-f", beside.path, "up", "-d"),
    )
    assert beside.down == (
        (*DOCKER_COMPOSE, "-p", "wiki-allmende-next", "-f", beside.path, "down"),
    )


def test_a_changed_secret_file_brings_its_service_up() -> None:
    change = create("rack", "/srv/wiki/secrets/wiki-db-password")
    actions = rack_actions([change], all_running(BASE, RACK))
    assert [(a.verb, a.subject, a.reason) for a in actions] == [("up", "wiki", STOP_FIRST)]


def test_an_unchanged_service_that_exited_is_brought_up_again() -> None:
    running = all_running(BASE, RACK)
    running["git"] = Running({"app": "exited"})
    actions = rack_actions([], running)
    assert actions == [Action("rack", "up", "git", "not running: app exited", COMPOSE.up("git"))]


def test_an_unchanged_service_that_is_missing_is_brought_up() -> None:
    running = all_running(BASE, ["database", "wiki"])
    actions = rack_actions([], running)
    assert [(a.verb, a.subject, a.reason) for a in actions] == [
        ("up", "git", "not running: app missing")
    ]


def test_a_service_whose_last_apply_died_before_it_came_up_is_brought_up() -> None:
    # Its files are in place (no change) and its old containers run, but the manifest, which
    # apply writes last, still records the previous files.
    files = wanted(BASE, "rack")
    recorded = {p: r for p, r in files.items() if not p.startswith("/srv/wiki/")}
    stale = dict(files)
    stale["/srv/wiki/compose.yaml"] = Rendered(b"the previous compose.yaml", ())
    manifest = Recorded(new_manifest(None, "rack", stale, [], False, KEY), KEY)
    assert unrecorded(manifest, "rack", files) == {"wiki"}
    done = Recorded(new_manifest(None, "rack", files, [], False, KEY), KEY)
    assert unrecorded(done, "rack", files) == set()
    assert unrecorded(None, "rack", files) == set()  # a host allmende never applied to
    assert recorded  # the other services' files are recorded as they are
    actions = engine_actions(
        inventory(BASE), "rack", COMPOSE, [], files, all_running(BASE, RACK), {"wiki"}
    )
    assert [(a.verb, a.subject, a.reason) for a in actions] == [
        ("up", "wiki", "the apply that wrote its files did not finish")
    ]


def test_everything_running_and_nothing_changed_is_nothing_to_do() -> None:
    assert rack_actions([], all_running(BASE, RACK)) == []


def test_only_the_hosts_own_services_are_looked_at() -> None:
    actions = rack_actions([], {})
    # pages (on gateway) runs nowhere either, but it is not this host's business.
    assert [a.subject for a in actions] == ["database", "git", "wiki"]
    assert {a.reason for a in actions} == {
        "not running: server missing",
        "not running: app missing",
    }


def test_an_unread_engine_and_no_change_is_nothing_to_do() -> None:
    assert rack_actions([], None) == []
    actions = rack_actions([update("rack", "/srv/git/compose.yaml")], None)
    assert [(a.verb, a.subject) for a in actions] == [("up", "git")]


def test_a_service_whose_project_file_is_deleted_is_brought_down_first() -> None:
    changes = [
        update("rack", "/srv/wiki/compose.yaml"),
        delete("rack", "/srv/bar/data.txt"),
        delete("rack", "/srv/forum/secrets/forum-db-password"),
        delete("rack", "/srv/forum/compose.yaml"),
    ]
    actions = rack_actions(changes, all_running(BASE, RACK))
    assert actions == [
        Action("rack", "down", "forum", "removed from the inventory", COMPOSE.down("forum")),
        Action("rack", "up", "wiki", STOP_FIRST, COMPOSE.recreate("wiki")),
    ]


def test_deleting_only_a_secret_file_brings_nothing_down() -> None:
    actions = rack_actions([delete("rack", "/srv/wiki/secrets/old")], all_running(BASE, RACK))
    assert [(a.verb, a.subject) for a in actions] == [("up", "wiki")]


def test_database_providers_come_before_their_users() -> None:
    changes = [update("rack", f"/srv/{s}/compose.yaml") for s in ("wiki", "git", "database")]
    actions = rack_actions(changes, all_running(BASE, RACK))
    assert [a.subject for a in actions] == ["database", "git", "wiki"]


def test_a_provider_comes_first_even_when_its_name_sorts_later() -> None:
    # shop uses store/shop: store must run before shop, although "shop" < "store".
    changes = [update("bench", f"/srv/{s}/compose.yaml") for s in ("shop", "store")]
    actions = engine_actions(
        inventory(ENGINES),
        "bench",
        COMPOSE,
        changes,
        wanted(ENGINES, "bench"),
        all_running(ENGINES, ["shop", "store"]),
    )
    assert [a.subject for a in actions] == ["store", "shop"]
    assert order(inventory(ENGINES), ["shop", "blog", "store", "relay"]) == [
        "relay",
        "store",
        "blog",
        "shop",
    ]
    assert order(inventory(ENGINES), ["accounts", "ledger"]) == ["ledger", "accounts"]


def test_components_without_an_image_need_not_run() -> None:
    # shop's printer is a system component (no container): it never shows in `ps`.
    running = all_running(ENGINES, ["shop", "store"])
    assert "printer" in inventory(ENGINES).services["shop"].components
    assert "printer" not in running["shop"].states
    actions = engine_actions(
        inventory(ENGINES), "bench", COMPOSE, [], wanted(ENGINES, "bench"), running
    )
    assert actions == []


def test_hosts_with_files_only_get_no_engine_actions() -> None:
    changes = [update("rack", "/srv/wiki/compose.yaml")]
    model = inventory(BASE)
    systemd = model.hosts["rack"].model_copy(update={"engine": "systemd"})
    model = dataclasses.replace(model, hosts={**model.hosts, "rack": systemd})
    host = MemoryHost("rack")
    actions = asyncio.run(plan_actions(host, model, changes, wanted(BASE, "rack"), None))
    assert [(a.verb, a.subject, a.commands) for a in actions] == [("note", "systemd", ())]
    assert actions[0].reason == (
        "database, git, wiki on rack are not deployed: allmende cannot drive engine systemd "
        "yet (their files, if any, are written)"
    )
    assert host.ran == []
    assert Plan((), ("rack",), actions=tuple(actions)).empty


def test_service_of() -> None:
    assert service_of("/srv/wiki/compose.yaml") == "wiki"
    assert service_of("/srv/wiki/secrets/wiki-db-password") == "wiki"
    assert service_of("/srv/wiki") is None
    assert service_of("/etc/haproxy/haproxy.cfg") is None


def delivered_paths(root: Path, host: str) -> set[str]:
    prefix = f"{host}/"
    return {
        "/" + p[len(prefix) :]
        for p in host_files(inventory(root), rendered(root), None)
        if p.startswith(prefix)
    }


def test_kubernetes_up_only_names_files_the_host_gets() -> None:
    # board has secrets; its secrets file is made by deliver (with a store): see test_deliver.
    (command,) = bound("kubernetes", "docker").up("board")
    assert "/srv/board/kubernetes.yaml" in delivered_paths(ENGINES, "cluster")
    assert command[-1] == "/srv/board/kubernetes.yaml"


def test_kubernetes_up_of_a_service_without_secrets_names_no_missing_file() -> None:
    # notes (on plain-cluster) has no secrets, so no secrets file is delivered for it.
    (command,) = bound("kubernetes", "docker").up("notes")
    files = [command[i + 1] for i, word in enumerate(command) if word == "-f"]
    assert set(files) <= delivered_paths(ENGINES, "plain-cluster")


# --------------------------------------------------------------------------- host_actions

CFG = "/etc/haproxy/haproxy.cfg"
CERTS = "/etc/haproxy/certs.list"
UNITS = "/etc/systemd/system"
EDGE: dict[str, object] = {CFG: object(), CERTS: object(), "/srv/pages/compose.yaml": object()}


def test_the_proxy_is_started_where_it_is_wanted_and_not_running() -> None:
    for changes in ([], [update("gateway", CFG)]):
        actions = host_actions("gateway", changes, EDGE, False, systemd=True)
        assert [(a.verb, a.subject) for a in actions] == [("start-proxy", "haproxy")]


@pytest.mark.parametrize("path", [CFG, CERTS])
@pytest.mark.parametrize("running", [True, None])
def test_the_proxy_is_reloaded_when_its_files_change(path: str, running: bool | None) -> None:
    actions = host_actions("gateway", [update("gateway", path)], EDGE, running, systemd=True)
    assert [(a.host, a.verb, a.subject) for a in actions] == [
        ("gateway", "reload-proxy", "haproxy")
    ]


def test_the_proxy_is_left_alone_when_its_files_do_not_change() -> None:
    changes = [update("gateway", "/srv/pages/compose.yaml")]
    assert host_actions("gateway", changes, EDGE, True, systemd=True) == []


def test_no_proxy_actions_where_no_proxy_is_wanted() -> None:
    wanted_here = {"/srv/wiki/compose.yaml": object()}
    assert host_actions("rack", [delete("rack", CFG)], wanted_here, False, systemd=True) == []


def test_changed_units_reload_systemd_and_enable_the_wanted_timers() -> None:
    wanted_here = {
        f"{UNITS}/allmende-backup-wiki.service": object(),
        f"{UNITS}/allmende-backup-wiki.timer": object(),
        f"{UNITS}/allmende-backup-database.service": object(),
        f"{UNITS}/allmende-backup-database.timer": object(),
        "/srv/wiki/compose.yaml": object(),
    }
    changes = [
        create("rack", f"{UNITS}/allmende-backup-wiki.timer"),
        create("rack", f"{UNITS}/allmende-backup-wiki.service"),
    ]
    (action,) = host_actions("rack", changes, wanted_here, None, systemd=True)
    assert (action.verb, action.subject) == ("reload-systemd", "units")
    assert "allmende-backup-wiki.service" in action.reason
    assert "allmende-backup-wiki.timer" in action.reason
    assert action.commands == (
        ("systemctl", "daemon-reload"),
        (
            "systemctl",
            "enable",
            "--now",
            "allmende-backup-database.timer",
            "allmende-backup-wiki.timer",
        ),
    )


def test_deleted_timers_are_disabled_before_the_reload() -> None:
    wanted_here = {
        f"{UNITS}/allmende-backup-wiki.service": object(),
        f"{UNITS}/allmende-backup-wiki.timer": object(),
    }
    changes = [
        delete("rack", f"{UNITS}/allmende-backup-git.timer"),
        delete("rack", f"{UNITS}/allmende-backup-git.service"),
    ]
    # Disabling is a "down": apply runs it before the unit files are deleted.
    down, reload = host_actions("rack", changes, wanted_here, None, systemd=True)
    assert down.verb == "down"
    assert down.commands == (("systemctl", "disable", "--now", "allmende-backup-git.timer"),)
    assert reload.commands == (
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "--now", "allmende-backup-wiki.timer"),
    )


def test_units_on_a_host_without_systemd_do_nothing() -> None:
    changes = [create("rack", f"{UNITS}/allmende-backup-wiki.timer")]
    wanted_here = {f"{UNITS}/allmende-backup-wiki.timer": object()}
    assert host_actions("rack", changes, wanted_here, None, systemd=False) == []


def test_no_unit_change_no_systemd_reload() -> None:
    wanted_here = {f"{UNITS}/allmende-backup-wiki.timer": object()}
    changes = [update("rack", "/srv/wiki/compose.yaml")]
    assert host_actions("rack", changes, wanted_here, None, systemd=True) == []


# --------------------------------------------------------------------------- Plan


def test_the_checksum_covers_the_actions() -> None:
    change = update("rack", "/srv/wiki/compose.yaml")
    up = Action("rack", "up", "wiki", "its files change", COMPOSE.up("wiki"))
    files_only = Plan((change,), ("rack",))
    with_up = Plan((change,), ("rack",), actions=(up,))
    assert files_only.checksum != with_up.checksum
    assert with_up.checksum == Plan((change,), ("rack",), actions=(up,)).checksum
    other_command = Action("rack", "up", "wiki", "its files change", DOCKER_UP_OTHER)
    assert Plan((change,), ("rack",), actions=(other_command,)).checksum != with_up.checksum
    # The reason is for people; the same action for another reason is the same plan.
    same = Action("rack", "up", "wiki", "not running: app exited", COMPOSE.up("wiki"))
    assert Plan((change,), ("rack",), actions=(same,)).checksum == with_up.checksum


DOCKER_UP_OTHER = (("docker-compose", "-p", "wiki", "-f", "/srv/wiki/compose.yaml", "up", "-d"),)


def test_a_plan_with_only_actions_is_not_empty() -> None:
    up = Action("rack", "up", "git", "not running: app exited", COMPOSE.up("git"))
    assert Plan((), ("rack",)).empty
    assert not Plan((), ("rack",), actions=(up,)).empty
    assert not Plan((update("rack", "/srv/git/compose.yaml"),), ("rack",)).empty
    data = Plan((), ("rack",), actions=(up,)).as_json()
    assert data["actions"] == [
        {
            "host": "rack",
            "verb": "up",
            "subject": "git",
            "reason": "not running: app exited",
            "commands": [list(c) for c in COMPOSE.up("git")],
        }
    ]
    assert up.shown() == "up git: not running: app exited"


# --------------------------------------------------------------------------- rollback


def rolled_back_commands(secrets_existed: bool) -> list[tuple[str, ...]]:
    """Apply a broken change of board (Kubernetes on a kubectl cluster) on an in-memory host
    and return the commands the rollback ran after the failed ``kubectl apply``."""
    model = inventory(ENGINES)
    project, manifest = "/srv/board/kubernetes.yaml", "/srv/board/secrets/kubernetes.yaml"
    files = {project: (b"old\n", 0o644)}
    if secrets_existed:
        files[manifest] = (b"old secrets\n", 0o600)
    host = MemoryHost("cluster", files)

    def kubectl(command: tuple[str, ...], input: bytes | None) -> Ran:
        broken = b"broken" in host.files[command[-1]][0]
        return Ran(1, b"", b"error: broken manifest") if broken else Ran(0, b"", b"")

    host.answer(["kubectl", "apply"], kubectl)
    site = bound("kubernetes", "docker", host="cluster")
    wanted = {project: Rendered(b"broken\n", ("services/board.yaml",), 0o644)}
    if not secrets_existed:
        wanted[manifest] = Rendered(b"new secrets\n", ("services/board.yaml",), 0o600)
    changes = []
    for path, rendered in wanted.items():
        have = host.files.get(path)
        digest = sha256(have[0]) if have else None
        change = file_change(
            "cluster", path, rendered.content, rendered.mode, digest, 0o644, key=FRESH
        )
        assert change is not None
        changes.append(change)
    secrets = secret_names(model, "board")
    up = Action("cluster", "up", "board", "its files change", site.up("board", secrets))
    plan = HostPlan(model, changes, [up], wanted, FRESH, verify_timeout=1)
    with pytest.raises(ApplyFailed) as failed:
        asyncio.run(apply_host(host, plan))
    assert failed.value.rolled_back and not failed.value.problems
    assert host.files[project][0] == b"old\n"
    assert (manifest in host.files) == secrets_existed
    applies = [c for c in host.ran if c[:2] == ("kubectl", "apply")]
    assert applies[0] == up.commands[0]
    return applies[1:]


def test_a_kubernetes_rollback_applies_the_previous_secrets_with_the_manifest() -> None:
    (again,) = rolled_back_commands(secrets_existed=True)
    assert again == (
        "kubectl",
        "apply",
        "-f",
        "/srv/board/secrets/kubernetes.yaml",
        "-f",
        "/srv/board/kubernetes.yaml",
    )


def test_a_kubernetes_rollback_does_not_name_secrets_the_failed_apply_created() -> None:
    (again,) = rolled_back_commands(secrets_existed=False)
    assert again == ("kubectl", "apply", "-f", "/srv/board/kubernetes.yaml")
