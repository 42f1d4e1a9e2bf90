"""What each host gets besides render's files (allmende.plan.deliver): secrets, manifests."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from allmende.engines.base import Site
from allmende.engines.kubernetes import ENGINE as KUBERNETES
from allmende.engines.swarm import ENGINE as SWARM
from allmende.errors import SecretError
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.inventory.secrets import SecretStore
from allmende.plan.deliver import host_files, needs_secrets, secret_files, secret_names
from allmende.render.output import Rendered
from allmende.render.targets import render_all
from tests.conftest import FIXTURES, own_secrets

ENGINES = FIXTURES / "valid" / "render-engines"


@dataclass(frozen=True)
class Setup:
    inventory: Inventory
    store: SecretStore
    values: dict[str, bytes]
    rendered: dict[str, Rendered]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return make_setup(tmp_path_factory.mktemp("deliver"))


def make_setup(base: Path) -> Setup:
    root = base / "inventory"
    shutil.copytree(ENGINES, root)
    key = base / "key.txt"
    values = own_secrets(root, key)
    env = {"ALLMENDE_AGE_KEY": str(key)}
    inventory = load(root, env)
    return Setup(inventory, SecretStore(root, env), values, render_all(inventory))


def secret_paths(files: dict[str, Rendered]) -> list[str]:
    return sorted(p for p in files if "/secrets/" in p)


def test_compose_hosts_get_each_secret_as_a_0600_file(setup: Setup) -> None:
    files = host_files(setup.inventory, setup.rendered, setup.store)
    for path, name in [
        ("bench/srv/shop/secrets/shop-db-password", "shop/db-password"),
        ("bench/srv/store/secrets/store-postgres-password", "store/postgres-password"),
    ]:
        assert files[path].content == setup.values[name] == f"value-of-{name}".encode()
        assert (files[path].mode, files[path].owner) == (0o600, None)
        assert f"secrets/{name}.age" in files[path].sources
    assert [p for p in secret_paths(files) if p.startswith("bench/")] == [
        "bench/srv/shop/secrets/app.env",
        "bench/srv/shop/secrets/shop-db-password",
        "bench/srv/shop/secrets/shop-session-key",
        "bench/srv/store/secrets/store-postgres-password",
    ]


def test_a_secret_for_a_program_running_as_another_user_gets_its_owner_and_mode(
    setup: Setup,
) -> None:
    files = host_files(setup.inventory, setup.rendered, setup.store)
    key = files["bench/srv/shop/secrets/shop-session-key"]
    assert key.content == b"value-of-shop/session-key"
    assert (key.mode, key.owner) == (0o400, (5001, 5001))


def test_secrets_as_env_are_one_0600_env_file_per_component(setup: Setup) -> None:
    files = host_files(setup.inventory, setup.rendered, setup.store)
    env = files["bench/srv/shop/secrets/app.env"]
    assert env.content == b"SESSION_KEY=value-of-shop/session-key\n"
    assert env.mode == 0o600
    assert "secrets/shop/session-key.age" in env.sources
    compose = yaml.safe_load(files["bench/srv/shop/compose.yaml"].content)
    assert compose["services"]["app"]["env_file"] == ["./secrets/app.env"]
    assert b"value-of" not in files["bench/srv/shop/compose.yaml"].content


@pytest.mark.parametrize("value", [" pass word", 'say "hi"', "$HOME", "a#b"])
def test_a_value_with_spaces_dollars_or_hashes_is_single_quoted(tmp_path: Path, value: str) -> None:
    setup = make_setup(tmp_path)
    setup.store.set("shop/session-key", value.encode())
    files = host_files(setup.inventory, setup.rendered, setup.store)
    assert files["bench/srv/shop/secrets/app.env"].content == f"SESSION_KEY='{value}'\n".encode()


@pytest.mark.parametrize("value", ["it's", "a\\b", "a\nb"])
def test_a_value_an_env_file_cannot_carry_is_refused(tmp_path: Path, value: str) -> None:
    setup = make_setup(tmp_path)
    setup.store.set("shop/session-key", value.encode())
    with pytest.raises(SecretError, match="`shop/session-key` is delivered `as: env`") as told:
        host_files(setup.inventory, setup.rendered, setup.store)
    # The command that fixes it, as it must be typed from here.
    assert f"(`allmende secret set shop/session-key -C {setup.inventory.root}`)" in str(told.value)


def test_render_files_are_passed_on_unchanged(setup: Setup) -> None:
    files = host_files(setup.inventory, setup.rendered, setup.store)
    for path, rendered in setup.rendered.items():
        if not path.startswith("kubernetes/"):
            assert files[path] == rendered


def test_every_secret_file_a_compose_project_names_is_delivered(setup: Setup) -> None:
    files = host_files(setup.inventory, setup.rendered, setup.store)
    checked = 0
    for path, rendered in setup.rendered.items():
        if not path.endswith("/compose.yaml"):
            continue
        project = yaml.safe_load(rendered.content)
        directory = path.rsplit("/", 1)[0]
        named = [s["file"] for s in (project.get("secrets") or {}).values()]
        for service in project["services"].values():
            named += service.get("env_file", [])
            named += [v.split(":")[0] for v in service.get("volumes", []) if "/secrets/" in v]
        for file in named:
            assert file.startswith("./secrets/")
            assert f"{directory}/{file[2:]}" in files
            checked += 1
    assert checked == 4  # two secret files, an env file, a bind-mounted secret


def test_kubernetes_manifests_move_to_their_services_host(setup: Setup) -> None:
    files = host_files(setup.inventory, setup.rendered, setup.store)
    assert not [p for p in files if p.startswith("kubernetes/")]
    assert files["cluster/srv/board/kubernetes.yaml"] == setup.rendered["kubernetes/board.yaml"]
    assert (
        files["plain-cluster/srv/notes/kubernetes.yaml"] == setup.rendered["kubernetes/notes.yaml"]
    )


def test_kubernetes_secrets_are_secret_objects_in_the_services_namespace(setup: Setup) -> None:
    files = host_files(setup.inventory, setup.rendered, setup.store)
    secrets = files["cluster/srv/board/secrets/kubernetes.yaml"]
    assert secrets.mode == 0o600
    documents = list(yaml.safe_load_all(secrets.content))
    assert documents == [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "board-db-password", "namespace": "board"},
            "type": "Opaque",
            "stringData": {"value": "value-of-board/db-password"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "board-secret-key", "namespace": "board"},
            "type": "Opaque",
            "stringData": {"value": "value-of-board/secret-key"},
        },
    ]
    # No per-secret files on a kubernetes host: only the one manifest of Secrets.
    assert [p for p in secret_paths(files) if p.startswith("cluster/")] == [
        "cluster/srv/board/secrets/kubernetes.yaml"
    ]


def references(node: Any) -> set[tuple[str, str]]:
    """Return every (secret name, key) a Kubernetes manifest reads: by secretKeyRef, or as a
    secret volume whose key ``value`` is mounted."""
    found: set[tuple[str, str]] = set()
    if isinstance(node, dict):
        ref = node.get("secretKeyRef")
        if isinstance(ref, dict):
            found.add((ref["name"], ref["key"]))
        volume = node.get("secret")
        if isinstance(volume, dict) and "secretName" in volume:
            found.add((volume["secretName"], "value"))
        for value in node.values():
            found |= references(value)
    elif isinstance(node, list):
        for value in node:
            found |= references(value)
    return found


def test_every_secret_the_manifest_reads_is_delivered(setup: Setup) -> None:
    files = host_files(setup.inventory, setup.rendered, setup.store)
    manifest = list(yaml.safe_load_all(files["cluster/srv/board/kubernetes.yaml"].content))
    wanted = references(manifest)
    assert wanted == {("board-db-password", "value"), ("board-secret-key", "value")}
    delivered = yaml.safe_load_all(files["cluster/srv/board/secrets/kubernetes.yaml"].content)
    have = {
        (d["metadata"]["name"], key)
        for d in delivered
        if d["metadata"]["namespace"] == "board"
        for key in d["stringData"]
    }
    assert wanted <= have


def test_a_kubernetes_service_without_secrets_gets_no_secrets_file(setup: Setup) -> None:
    files = host_files(setup.inventory, setup.rendered, setup.store)
    assert not [p for p in files if p.startswith("plain-cluster/srv/notes/secrets/")]
    assert secret_files(setup.inventory, "notes", setup.store) == {}


def test_only_the_given_services_secrets(setup: Setup) -> None:
    files = host_files(setup.inventory, setup.rendered, setup.store, service="shop")
    assert secret_paths(files) == [
        "bench/srv/shop/secrets/app.env",
        "bench/srv/shop/secrets/shop-db-password",
        "bench/srv/shop/secrets/shop-session-key",
    ]
    board = host_files(setup.inventory, setup.rendered, setup.store, service="board")
    assert secret_paths(board) == ["cluster/srv/board/secrets/kubernetes.yaml"]
    # Manifests still go to their hosts.
    assert "cluster/srv/board/kubernetes.yaml" in files


def test_without_a_store_no_secrets_at_all(setup: Setup) -> None:
    files = host_files(setup.inventory, setup.rendered, None)
    assert secret_paths(files) == []
    assert "cluster/srv/board/kubernetes.yaml" in files
    assert "kubernetes/board.yaml" not in files
    assert set(files) == {
        *(p for p in setup.rendered if not p.startswith("kubernetes/")),
        "cluster/srv/board/kubernetes.yaml",
        "plain-cluster/srv/notes/kubernetes.yaml",
    }


def test_needs_secrets(setup: Setup) -> None:
    inventory = setup.inventory
    assert needs_secrets(inventory, ["bench"])
    assert needs_secrets(inventory, ["named", "cluster"])
    assert needs_secrets(inventory, ["bench"], service="store")
    assert not needs_secrets(inventory, ["named"])  # blog reads no secret
    assert not needs_secrets(inventory, ["plain-cluster", "six"])
    assert not needs_secrets(inventory, [])
    assert not needs_secrets(inventory, ["cluster"], service="notes")  # notes is elsewhere
    assert not needs_secrets(inventory, ["plain-cluster"], service="board")


def test_every_secret_a_swarm_stack_names_is_delivered_or_created(setup: Setup) -> None:
    files = host_files(setup.inventory, setup.rendered, setup.store)
    stack = yaml.safe_load(files["swarm/srv/accounts/stack.yaml"].content)
    commands = SWARM.up(
        Site("swarm", "docker"), "accounts", secret_names(setup.inventory, "accounts")
    )
    for name, secret in stack["secrets"].items():
        if "file" in secret:
            assert f"swarm/srv/accounts/{secret['file'].removeprefix('./')}" in files
        else:
            assert secret.get("external")
            assert any("docker secret create" in " ".join(c) and name in c for c in commands), name


def test_podman_kube_play_gets_the_delivered_secrets(setup: Setup) -> None:
    files = host_files(setup.inventory, setup.rendered, setup.store)
    assert "cluster/srv/board/secrets/kubernetes.yaml" in files
    commands = KUBERNETES.up(
        Site("cluster", "podman"), "board", secret_names(setup.inventory, "board")
    )
    assert any("/srv/board/secrets/kubernetes.yaml" in c for c in commands)


def test_kubectl_apply_gets_the_delivered_secrets(setup: Setup) -> None:
    files = host_files(setup.inventory, setup.rendered, setup.store)
    (command,) = KUBERNETES.up(
        Site("cluster", "docker"), "board", secret_names(setup.inventory, "board")
    )
    named = [command[i + 1] for i, word in enumerate(command) if word == "-f"]
    assert named == ["/srv/board/secrets/kubernetes.yaml", "/srv/board/kubernetes.yaml"]
    for path in named:
        assert f"cluster{path}" in files


def test_secret_values_are_read_with_the_key(tmp_path: Path, setup: Setup) -> None:
    # Without the key the files cannot be made: the error says which key file is missing.
    missing = tmp_path / "missing.txt"
    other = SecretStore(setup.store.root, {"ALLMENDE_AGE_KEY": str(missing)})
    with pytest.raises(SecretError, match=re.escape(f"no age key file at {missing}")):
        host_files(setup.inventory, setup.rendered, other, service="shop")
