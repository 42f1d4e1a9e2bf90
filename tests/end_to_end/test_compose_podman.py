"""Rendered compose projects run under podman-compose and answer on their published port.

Two services on one host without an address (so ports bind to 127.0.0.1): ``store`` provides a
database (here a busybox httpd that says so) and ``site`` uses it. The site's files come from a
volume (a bind mount of a temporary directory), it reads a secret through ``TOKEN_FILE``, and it
reaches the store by the store's name over the shared network ``allmende-store``.
"""

from __future__ import annotations

from pathlib import Path

from tests.end_to_end.conftest import IMAGE, Podman, http_get
from tests.ports import free_port

from allmende.inventory.load import load
from allmende.render import compose

SECRET = "e2e-token-4711"
CGI = '#!/bin/sh\necho "Content-Type: text/plain"\necho\n'
HTTPD = '[httpd, -f, -p, "8080", -h, /www]'


def write_inventory(root: Path, port: int) -> None:
    """Write the inventory of the two services, with their volumes under ``root``."""
    for directory in ("hosts", "services", "secrets/site"):
        (root / directory).mkdir(parents=True)
    (root / "allmende.yaml").write_text("name: e2e\n")
    (root / "hosts" / "local.yaml").write_text("description: this machine\nengine: compose\n")
    (root / "services" / "store.yaml").write_text(
        f"""description: a database, as far as the site can tell
host: local
components:
  db:
    image: {IMAGE}
    command: {HTTPD}
    ports: {{http: 8080}}
    volumes: {{www: {{path: /www, host: {root}/store-www}}}}
provides: {{database: postgres, port: http, databases: [site]}}
"""
    )
    (root / "services" / "site.yaml").write_text(
        f"""description: the site
host: local
components:
  web:
    image: {IMAGE}
    command: {HTTPD}
    env: {{GREETING: hello from compose}}
    secrets: {{TOKEN: site/token}}
    ports: {{http: 8080}}
    publish: {{http: {port}}}
    volumes: {{www: {{path: /www, host: {root}/site-www}}}}
    healthcheck: {{http: /, port: http}}
uses:
  - database: store/site
"""
    )
    (root / "secrets" / "site" / "token.age").write_bytes(b"only the name counts here")
    store = root / "store-www"
    store.mkdir()
    (store / "index.html").write_text("the store answers\n")
    site = root / "site-www"
    (site / "cgi-bin").mkdir(parents=True)
    (site / "index.html").write_text("the site answers\n")
    scripts = {
        "env": CGI + "env\n",
        "secret": CGI + 'cat "$TOKEN_FILE"\n',
        "store": CGI + "wget -q -O - http://store:8080/\n",
    }
    for name, script in scripts.items():
        (site / "cgi-bin" / name).write_text(script)
        (site / "cgi-bin" / name).chmod(0o755)


def test_a_rendered_project_runs_and_answers(podman: Podman, tmp_path: Path) -> None:
    port = free_port()
    write_inventory(tmp_path / "inventory", port)
    files = compose.render(load(tmp_path / "inventory", {}))
    out = tmp_path / "out"
    for path, file in files.items():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_bytes(file.content)
    # what apply does: the secret's value in a file only its owner reads
    secret = out / "local/srv/site/secrets/site-token"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    secret.chmod(0o600)
    store, site = out / "local/srv/store/compose.yaml", out / "local/srv/site/compose.yaml"
    try:
        podman.compose("store", store, "up", "-d")
        podman.compose("site", site, "up", "-d")
        url = f"http://127.0.0.1:{port}"
        assert http_get(f"{url}/") == "the site answers\n"
        assert "GREETING=hello from compose" in http_get(f"{url}/cgi-bin/env")
        assert "TOKEN_FILE=/run/secrets/site-token" in http_get(f"{url}/cgi-bin/env")
        assert http_get(f"{url}/cgi-bin/secret") == SECRET
        assert http_get(f"{url}/cgi-bin/store") == "the store answers\n"
        names = podman.run(
            "ps", "--filter", "label=org.allmende.service=site", "--format", "{{.Names}}"
        ).split()
        assert len(names) == 1
        # the rendered health check works inside the container
        podman.run("healthcheck", "run", names[0])
    finally:
        podman.compose("site", site, "down", "-t", "0")
        podman.compose("store", store, "down", "-t", "0")
