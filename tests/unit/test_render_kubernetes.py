"""The kubernetes target (allmende.render.kubernetes): one manifest file per service."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.render import kubernetes
from tests.conftest import BASE, EXAMPLES, FIXTURES, carrying

ENGINES = FIXTURES / "valid" / "render-engines"
CHOPPA = EXAMPLES / "choppa"
INVENTORIES = [
    p
    for p in sorted([*EXAMPLES.iterdir(), *(FIXTURES / "valid").iterdir()])
    if (p / "allmende.yaml").is_file()
]
KUBERNETES_VERSION = "1.30.0"


@cache
def inventory(root: Path) -> Inventory:
    return load(root, {})


def documents(root: Path, service: str) -> list[dict[str, Any]]:
    content = kubernetes.render(inventory(root))[f"kubernetes/{service}.yaml"].content
    return list(yaml.safe_load_all(content))


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, (kind, name, [(d["kind"], d["metadata"]["name"]) for d in docs])
    return matches[0]


def kinds(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["kind"], d["metadata"]["name"]) for d in docs]


def container(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    pod = find(docs, kind, name)["spec"]["template"]["spec"]
    result: dict[str, Any] = pod["containers"][0]
    return result


def test_one_file_per_service_on_kubernetes_hosts() -> None:
    assert sorted(kubernetes.render(inventory(ENGINES))) == [
        "kubernetes/board.yaml",
        "kubernetes/notes.yaml",
    ]
    assert sorted(kubernetes.render(inventory(CHOPPA))) == [
        "kubernetes/chat.yaml",
        "kubernetes/welcome.yaml",
    ]
    assert kubernetes.render(inventory(BASE)) == {}


def test_objects_in_apply_order() -> None:
    assert kinds(documents(ENGINES, "board")) == [
        ("Namespace", "board"),
        ("PersistentVolumeClaim", "media"),
        ("Service", "db"),
        ("StatefulSet", "db"),
        ("ConfigMap", "web-env"),
        ("Service", "web"),
        ("Deployment", "web"),
        ("StatefulSet", "worker"),
        ("Ingress", "board-werkstatt-example"),
        ("Ingress", "board-werkstatt-example-api"),
        ("Ingress", "direct-werkstatt-example"),
        ("Ingress", "plain-werkstatt-example"),
    ]
    for doc in documents(ENGINES, "board")[1:]:
        assert doc["metadata"]["namespace"] == "board"


def test_statefulset_for_own_volumes_deployment_for_shared_or_none() -> None:
    board = documents(ENGINES, "board")
    db = find(board, "StatefulSet", "db")["spec"]
    assert [t["metadata"]["name"] for t in db["volumeClaimTemplates"]] == ["data"]
    assert db["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert db["serviceName"] == "db"
    # web runs two replicas: its volume is shared, as the same directory is under Compose
    web = find(board, "Deployment", "web")["spec"]
    assert web["template"]["spec"]["volumes"] == [
        {"name": "media", "persistentVolumeClaim": {"claimName": "media"}}
    ]
    # db reads its password as a file: a volume of its Secret, mode 0600
    assert find(board, "StatefulSet", "db")["spec"]["template"]["spec"]["volumes"] == [
        {
            "name": "secret-board-db-password",
            "secret": {"secretName": "board-db-password", "defaultMode": 0o600},
        }
    ]
    media = find(board, "PersistentVolumeClaim", "media")["spec"]
    assert media["accessModes"] == ["ReadWriteMany"]
    # worker shares media with web and has scratch of its own
    worker = find(board, "StatefulSet", "worker")["spec"]
    assert [t["metadata"]["name"] for t in worker["volumeClaimTemplates"]] == ["scratch"]
    assert [v["name"] for v in worker["template"]["spec"]["volumes"]] == ["media"]
    chat = documents(CHOPPA, "chat")
    assert ("StatefulSet", "server") in kinds(chat)
    welcome = documents(CHOPPA, "welcome")
    assert ("Deployment", "web") in kinds(welcome)
    assert ("PersistentVolumeClaim", "site") in kinds(welcome)


def test_claims_use_the_hosts_storage_class() -> None:
    board = documents(ENGINES, "board")
    assert find(board, "PersistentVolumeClaim", "media")["spec"]["storageClassName"] == "fast-ssd"
    template = find(board, "StatefulSet", "db")["spec"]["volumeClaimTemplates"][0]
    assert template["spec"]["storageClassName"] == "fast-ssd"
    assert template["spec"]["resources"] == {"requests": {"storage": "1Gi"}}
    chat = find(documents(CHOPPA, "chat"), "StatefulSet", "server")["spec"]
    assert chat["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "nfs-big"
    site = find(documents(CHOPPA, "welcome"), "PersistentVolumeClaim", "site")["spec"]
    assert site["storageClassName"] == "nfs-small"
    # a host without one leaves the choice to the cluster's default class
    notes = find(documents(ENGINES, "notes"), "StatefulSet", "app")["spec"]
    assert "storageClassName" not in notes["volumeClaimTemplates"][0]["spec"]


def test_env_from_a_config_map_secrets_by_reference() -> None:
    board = documents(ENGINES, "board")
    assert find(board, "ConfigMap", "web-env")["data"] == {
        "BOARD_PORT": "8080",
        "BOARD_TITLE": "Werkstatt",
    }
    web = container(board, "Deployment", "web")
    assert web["envFrom"] == [{"configMapRef": {"name": "web-env"}}]
    assert web["env"] == [
        {
            "name": "BOARD_SECRET",
            "valueFrom": {"secretKeyRef": {"name": "board-secret-key", "key": "value"}},
        }
    ]
    assert not [d for d in board if d["kind"] == "Secret"]
    template = find(board, "Deployment", "web")["spec"]["template"]["metadata"]
    assert len(template["annotations"]["allmende/env-sha256"]) == 64


def test_command_is_args_and_dollars_are_escaped() -> None:
    web = container(documents(ENGINES, "board"), "Deployment", "web")
    assert web["args"] == ["serve", "--greeting", "$$HOME is here"]
    assert "command" not in web
    assert web["image"] == "ghcr.io/werkstatt/board:4.0.0"
    assert web["imagePullPolicy"] == "IfNotPresent"


def test_service_for_the_ports_and_host_ports_where_published() -> None:
    board = documents(ENGINES, "board")
    service = find(board, "Service", "web")["spec"]
    assert service["type"] == "ClusterIP"
    assert service["selector"] == {
        "app.kubernetes.io/name": "web",
        "app.kubernetes.io/part-of": "board",
    }
    assert [p["name"] for p in service["ports"]] == ["http", "https", "metrics-exporter-port"]
    ports = container(board, "Deployment", "web")["ports"]
    assert ports[0] == {
        "name": "http",
        "containerPort": 8080,
        "protocol": "TCP",
        "hostPort": 18081,
        "hostIP": "192.0.2.40",
    }
    assert "hostPort" not in ports[1]
    assert "name" not in ports[2]  # longer than the 15 characters a container port name may have
    # a host known by name publishes where its `bind` says
    notes = container(documents(ENGINES, "notes"), "StatefulSet", "app")["ports"]
    assert notes == [
        {
            "name": "http",
            "containerPort": 3000,
            "protocol": "TCP",
            "hostPort": 13000,
            "hostIP": "0.0.0.0",
        }
    ]
    assert "Service" not in [d["kind"] for d in board if d["metadata"]["name"] == "worker"]


def test_probes_from_healthchecks() -> None:
    board = documents(ENGINES, "board")
    web = container(board, "Deployment", "web")
    assert web["readinessProbe"] == {
        "httpGet": {"path": "/healthz", "port": 8080},
        "periodSeconds": 20,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    assert web["livenessProbe"] == web["readinessProbe"]
    assert container(board, "StatefulSet", "db")["readinessProbe"]["tcpSocket"] == {"port": 5432}
    worker = container(board, "StatefulSet", "worker")["livenessProbe"]
    assert worker["exec"] == {"command": ["test", "-f", "/tmp/alive"]}


def test_labels() -> None:
    for doc in documents(ENGINES, "board"):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "allmende"
        assert labels["app.kubernetes.io/part-of"] == "board"
    web = find(documents(ENGINES, "board"), "Deployment", "web")
    assert web["metadata"]["labels"]["app.kubernetes.io/name"] == "web"
    assert web["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "web"


def test_ingress_with_tls_by_cert_manager() -> None:
    board = documents(ENGINES, "board")
    main = find(board, "Ingress", "board-werkstatt-example")
    assert main["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    assert main["spec"]["tls"] == [
        {"hosts": ["board.werkstatt.example"], "secretName": "board-werkstatt-example-tls"}
    ]
    rule = main["spec"]["rules"][0]
    assert rule["host"] == "board.werkstatt.example"
    assert rule["http"]["paths"] == [
        {
            "path": "/",
            "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"name": "http"}}},
        }
    ]
    api = find(board, "Ingress", "board-werkstatt-example-api")
    assert api["spec"]["tls"] == main["spec"]["tls"]  # one certificate per domain
    assert api["metadata"]["annotations"]["nginx.ingress.kubernetes.io/ssl-redirect"] == "false"


def test_ingress_passthrough_and_none() -> None:
    board = documents(ENGINES, "board")
    direct = find(board, "Ingress", "direct-werkstatt-example")
    assert direct["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/ssl-passthrough": "true"
    }
    assert "tls" not in direct["spec"]
    content = kubernetes.render(inventory(ENGINES))["kubernetes/board.yaml"].content.decode()
    assert "# TLS for direct.werkstatt.example passes through to `web.https`" in content
    plain = find(board, "Ingress", "plain-werkstatt-example")
    assert "tls" not in plain["spec"]
    assert "annotations" not in plain["metadata"]


def test_object_names() -> None:
    assert kubernetes.slug("choppa.xyz", "/.well-known/matrix/") == "choppa-xyz-well-known-matrix"
    assert kubernetes.slug("a.example", "/") == "a-example"


@pytest.mark.parametrize("root", INVENTORIES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_manifest_passes_kubernetes_validate_strict(root: Path) -> None:
    for path, file in kubernetes.render(inventory(root)).items():
        for doc in yaml.safe_load_all(file.content):
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as error:
                kind = f"{doc['kind']}/{doc['metadata']['name']}"
                pytest.fail(f"{root.name}: {path}: {kind}: {error.message}")


def board(tmp_path: Path) -> tuple[Path, Path]:
    """Return a copy of the engines inventory whose board carries the directory
    ``files/board/board`` (holding board.toml), and that directory."""
    after = "    volumes: {media: /srv/media}\n"
    files = "    files: {/etc/board: board}\n"
    root = carrying(ENGINES, tmp_path / "inventory", "board", after, files)
    carried = root / "files" / "board" / "board"
    carried.mkdir(parents=True)
    (carried / "board.toml").write_text("title = 'Werkstatt'\n")
    return root, carried


def board_documents(root: Path) -> list[dict[str, Any]]:
    """Return the board's manifests, each validated."""
    content = kubernetes.render(load(root, {}))["kubernetes/board.yaml"].content
    docs = list(yaml.safe_load_all(content))
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    return docs


def test_carried_files_are_a_config_map_mounted_file_by_file(tmp_path: Path) -> None:
    root, carried = board(tmp_path)
    (carried / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff")

    docs = board_documents(root)
    files = find(docs, "ConfigMap", "web-files")
    assert files["data"] == {"board_board.toml": "title = 'Werkstatt'\n"}
    assert list(files["binaryData"]) == ["board_logo.png"]
    mounts = container(docs, "Deployment", "web")["volumeMounts"]
    assert {
        "name": "carried-files",
        "mountPath": "/etc/board/board.toml",
        "subPath": "board_board.toml",
        "readOnly": True,
    } in mounts
    template = find(docs, "Deployment", "web")["spec"]["template"]
    before = template["metadata"]["annotations"]["allmende/files-sha256"]
    (carried / "board.toml").write_text("title = 'Hackspace'\n")
    after = find(board_documents(root), "Deployment", "web")["spec"]["template"]["metadata"]
    assert after["annotations"]["allmende/files-sha256"] != before  # the pods roll
    volume = find(board_documents(root), "Deployment", "web")["spec"]["template"]["spec"][
        "volumes"
    ][-1]
    assert volume == {"name": "carried-files", "configMap": {"name": "web-files"}}


def test_an_executable_carried_file_is_mounted_executable(tmp_path: Path) -> None:
    root, carried = board(tmp_path)
    (carried / "start.sh").write_text("#!/bin/sh\nexec board\n")

    def pod() -> tuple[dict[str, Any], str]:
        template = find(board_documents(root), "Deployment", "web")["spec"]["template"]
        return template["spec"]["volumes"][-1], template["metadata"]["annotations"][
            "allmende/files-sha256"
        ]

    plain, before = pod()
    assert "items" not in plain["configMap"]
    (carried / "start.sh").chmod(0o755)
    volume, digest = pod()
    assert volume["configMap"]["items"] == [
        {"key": "board_board.toml", "path": "board_board.toml"},
        {"key": "board_start.sh", "path": "board_start.sh", "mode": 0o755},
    ]
    assert digest != before, "the pods roll when a file becomes executable"
