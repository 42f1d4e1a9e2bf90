"""A rendered Kubernetes manifest runs under ``podman kube play`` and answers.

The manifest is used as rendered, Namespace, ConfigMap, Service and Ingress included (podman
4.3 skips what it does not run). Podman ignores Services, so the port is reached through the
``hostPort`` the renderer writes for a port named in ``publish``; the host has no address, so
``hostIP`` is 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from tests.end_to_end.conftest import IMAGE, INDEX, Podman, http_get
from tests.ports import free_port

from allmende.inventory.load import load
from allmende.render import kubernetes


def write_inventory(root: Path, port: int) -> None:
    for directory in ("hosts", "services"):
        (root / directory).mkdir(parents=True)
    (root / "allmende.yaml").write_text("name: e2e\n")
    (root / "hosts" / "local.yaml").write_text("description: this machine\nengine: kubernetes\n")
    (root / "services" / "board.yaml").write_text(
        f"""description: the board
host: local
components:
  web:
    image: {IMAGE}
    command: [httpd, -f, -p, "8080", -h, /www]
    env: {{GREETING: hello from a config map}}
    ports: {{http: 8080}}
    publish: {{http: {port}}}
    healthcheck: {{http: /, port: http}}
routes:
  - domain: board.e2e.example
    to: web.http
"""
    )


def test_a_rendered_deployment_runs_and_answers(podman: Podman, tmp_path: Path) -> None:
    port = free_port()
    write_inventory(tmp_path / "inventory", port)
    files = kubernetes.render(load(tmp_path / "inventory", {}))
    manifest = tmp_path / "board.yaml"
    manifest.write_bytes(files["kubernetes/board.yaml"].content)
    kinds = [d["kind"] for d in yaml.safe_load_all(manifest.read_text())]
    assert kinds == ["Namespace", "ConfigMap", "Service", "Deployment", "Ingress"]
    try:
        podman.run("kube", "play", str(manifest))
        assert http_get(f"http://127.0.0.1:{port}/") == INDEX
        assert "GREETING=hello from a config map" in http_get(
            f"http://127.0.0.1:{port}/cgi-bin/env"
        )
    finally:
        podman.run("kube", "down", str(manifest))
