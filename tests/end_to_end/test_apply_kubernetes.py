"""`allmende apply` to a Kubernetes host driven by ``podman kube play`` (runtime: podman),
over SSH to ``remote_host``: the manifest is placed on the host and played; a change replaces
the pod; the next apply has nothing to do; a dead container is seen and brought back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.end_to_end.conftest import IMAGE, http_get
from tests.end_to_end.remote import RemoteHost
from tests.ports import free_port

from allmende.cli.main import main


def write_inventory(root: Path, ssh: str, port: int, greeting: str) -> None:
    for directory in ("hosts", "services"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "allmende.yaml").write_text("name: e2e\n")
    (root / "hosts" / "node.yaml").write_text(
        f"description: a node\naddress: 127.0.0.1\nssh: {ssh}\nengine: kubernetes\n"
        "runtime: podman\n"
    )
    (root / "services" / "board.yaml").write_text(
        f"""description: the board
host: node
components:
  web:
    image: {IMAGE}
    command: [httpd, -f, -p, "8080", -h, /www]
    env: {{GREETING: {greeting}}}
    ports: {{http: 8080}}
    publish: {{http: {port}}}
monitor:
  - http: http://127.0.0.1:{port}/cgi-bin/env
    expect: {{contains: "GREETING={greeting}"}}
"""
    )


@pytest.fixture
def node(
    remote_host: RemoteHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    for key, value in remote_host.connector_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ALLMENDE_STATE", str(tmp_path / "state.sqlite"))
    monkeypatch.setenv("ALLMENDE_VERIFY_TIMEOUT", "20")
    yield tmp_path / "inventory"
    manifest = "/srv/board/kubernetes.yaml"
    if remote_host.local(manifest).exists():
        remote_host.run(["podman", "kube", "down", manifest])
    remote_host.empty("/srv", "/var/lib/allmende")


def test_a_kubernetes_service_is_played_replaced_and_then_left_alone(
    node: Path, remote_host: RemoteHost, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    write_inventory(node, remote_host.inventory_ssh, port, "hello")
    assert main(["apply", str(node), "--yes", "--diff"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "Create node:/srv/board/kubernetes.yaml" in out
    assert "podman kube play --replace /srv/board/kubernetes.yaml" in out
    assert "GREETING=hello" in http_get(f"http://127.0.0.1:{port}/cgi-bin/env")

    write_inventory(node, remote_host.inventory_ssh, port, "again")
    assert main(["apply", str(node), "--yes"]) == 0, capsys.readouterr().err
    assert "GREETING=again" in http_get(f"http://127.0.0.1:{port}/cgi-bin/env")

    assert main(["apply", str(node), "--yes"]) == 0
    assert "Nothing to do." in capsys.readouterr().err

    # Someone stops the container (a kill would be restarted by its restart policy): the plan
    # sees it and the next apply brings it back.
    remote_host.run(["podman", "stop", "-t", "0", "web-pod-0-web"], check=True)
    assert main(["plan", str(node)]) == 3
    assert "up board: not running: web exited" in capsys.readouterr().out
    assert main(["apply", str(node), "--yes"]) == 0, capsys.readouterr().err
    assert "GREETING=again" in http_get(f"http://127.0.0.1:{port}/cgi-bin/env")
