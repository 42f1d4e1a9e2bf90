"""`allmende apply` of the demo inventory to a real host: sshd, podman, HAProxy, all on loopback.

The host is ``remote_host`` (a real sshd whose sessions see /srv, /etc/haproxy ... as temp
directories), its engine podman with the test storage. The demo's three services run the local
busybox test image (``httpd`` serving ``/www``, whose ``/cgi-bin/env`` prints the container's
environment, so a request shows which service answered); HAProxy is the edge on free ports of
127.0.0.1. Secrets are re-encrypted to a key of the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import EXAMPLES, own_secrets
from tests.end_to_end.conftest import IMAGE
from tests.end_to_end.remote import RemoteHost
from tests.ports import free_port

from allmende.actions.plan import Seams
from allmende.cli.main import main
from allmende.inventory.hostpaths import MANIFEST
from allmende.inventory.inventory import Inventory
from allmende.render.output import Rendered
from allmende.render.targets import render_all

CONTEXT = ssl.create_default_context()
CONTEXT.check_hostname = False
CONTEXT.verify_mode = ssl.CERT_NONE


#: What apply says of the demo, step by step, as it does it.
DEMO_STEPS = [
    "local: 16 files in place",
    "local: database: up (its files change)",
    "local: database: running",
    "local: pad: up (its files change)",
    "local: pad: running",
    "local: wiki: up (its files change)",
    "local: wiki: running",
    "local: HAProxy started",
    "local: monitors pass: database, pad, wiki",
]


@dataclass
class Demo:
    inventory: Path
    host: RemoteHost
    https: int
    ports: dict[str, int]
    env: dict[str, str]

    def get(self, domain: str, path: str = "/", timeout: float = 5) -> tuple[int, str]:
        """GET https://<domain><path> through the edge (SNI and Host: domain)."""
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.https}{path}", headers={"Host": domain}
        )
        handler = urllib.request.HTTPSHandler(context=_sni(domain))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), handler)
        try:
            with opener.open(request, timeout=timeout) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def service_file(self, name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load(
            (self.inventory / f"services/{name}.yaml").read_text()
        )
        # PyYAML reads `mode: 0400` as YAML 1.1 octal (256): keep it as the octal digits
        for component in loaded.get("components", {}).values():
            for use in component.get("secrets", {}).values():
                if isinstance(use, dict) and isinstance(use.get("mode"), int):
                    use["mode"] = f"0{use['mode']:o}"
        return loaded

    def write_service(self, name: str, data: dict[str, Any]) -> None:
        (self.inventory / f"services/{name}.yaml").write_text(yaml.safe_dump(data))


def _sni(domain: str) -> ssl.SSLContext:
    class Named(ssl.SSLContext):
        def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
            kwargs["server_hostname"] = domain
            return super().wrap_socket(*args, **kwargs)

    context = Named(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _busybox(component: dict[str, Any], port: int) -> None:
    component["image"] = IMAGE
    component["command"] = ["httpd", "-f", "-p", str(port), "-h", "/www"]
    name = next(iter(component["ports"]))
    component["healthcheck"] = {"http": "/", "port": name, "interval": "30s"}


@pytest.fixture
def demo(
    remote_host: RemoteHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Demo]:
    inventory = tmp_path / "demo"
    shutil.copytree(EXAMPLES / "demo", inventory)
    host = yaml.safe_load((inventory / "hosts/local.yaml").read_text())
    host.update(address="127.0.0.1", ssh={"user": "root", "port": remote_host.port})
    host["runtime"] = "podman"
    (inventory / "hosts/local.yaml").write_text(yaml.safe_dump(host))
    collective = yaml.safe_load((inventory / "allmende.yaml").read_text())
    https = free_port()
    collective["edge"].update(bind="127.0.0.1", http_port=free_port(), https_port=https)
    (inventory / "allmende.yaml").write_text(yaml.safe_dump(collective))
    ports = {name: free_port() for name in ("database", "pad", "wiki")}
    result = Demo(inventory, remote_host, https, ports, {})
    for name, port in ports.items():
        data = result.service_file(name)
        component = next(iter(data["components"].values()))
        inside = next(iter(component["ports"].values()))
        _busybox(component, inside)
        component["publish"] = {next(iter(component["ports"])): port}
        if name == "database":
            data["monitor"] = [{"tcp": f"127.0.0.1:{port}"}]
            del data["provides"]["databases"]  # nothing to create in a busybox
        else:  # the database is a busybox here: its roles are provisioned in test_databases
            data["uses"] = [{**use, "provision": False} for use in data["uses"]]
        if name == "wiki":  # the demo expects Wiki.js's title
            data["monitor"] = [
                {"http": "https://wiki.nordlicht.example/", "expect": {"contains": "allmende-test"}}
            ]
        result.write_service(name, data)
    own_secrets(inventory, tmp_path / "age.key")
    env = {
        **remote_host.connector_env,
        "ALLMENDE_AGE_KEY": str(tmp_path / "age.key"),
        "ALLMENDE_STATE": str(tmp_path / "state.sqlite"),
        "ALLMENDE_VERIFY_TIMEOUT": "20",
        "USER": "tester",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result.env = {**os.environ, **env}
    yield result
    for name in ports:
        compose = f"/srv/{name}/compose.yaml"
        if remote_host.local(compose).exists():
            remote_host.run(["podman-compose", "-p", name, "-f", compose, "down", "-t", "0"])
    pidfile = remote_host.local("/run/haproxy/haproxy.pid")
    if pidfile.exists():
        remote_host.run(["kill", pidfile.read_text().split()[0]])
        time.sleep(0.5)
    remote_host.empty(
        "/srv",
        "/etc/haproxy",
        "/var/lib/allmende",
        "/run/haproxy",
        "/etc/allmende",
        "/etc/systemd/system",
        "/usr/local/lib/allmende",
    )


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_demo_applies_serves_by_domain_and_a_second_apply_does_nothing(
    demo: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "plan", str(demo.inventory))
    assert code == 3, err
    assert "Create local:/srv/wiki/compose.yaml" in out
    assert "Create local:/srv/wiki/secrets/wiki-db-password" in out
    assert "Then on local: up database: its files change" in out
    assert "Then on local: start-proxy haproxy: no HAProxy master answers" in out
    # Providers first: the database's network must exist before the wiki joins it.
    ups = [out.index(f"Then on local: up {name}:") for name in ("database", "pad", "wiki")]
    assert ups == sorted(ups)
    code, out, _ = run_cli(capsys, "plan", str(demo.inventory), "--json")
    planned = json.loads(out)
    assert code == 3
    assert [(a["verb"], a["subject"]) for a in planned["actions"]] == [
        ("up", "database"),
        ("up", "pad"),
        ("up", "wiki"),
        ("start-proxy", "haproxy"),
    ]
    secret = next(c for c in planned["changes"] if c["path"].endswith("wiki-db-password"))
    assert secret["mode_after"] == "0400" and "value-of" not in secret["diff"]

    code, out, err = run_cli(capsys, "apply", str(demo.inventory), "--yes")
    assert code == 0, err
    # Each step as it is done, then the result.
    steps = [line.strip() for line in err.splitlines() if line.startswith("  local: ")]
    assert steps == DEMO_STEPS
    assert "Applied local." in err

    status, body = demo.get("wiki.nordlicht.example", "/cgi-bin/env")
    assert status == 200 and "DB_NAME=wiki" in body
    assert "DB_PASS_FILE=/run/secrets/wiki-db-password" in body
    status, body = demo.get("pad.nordlicht.example", "/cgi-bin/env")
    assert status == 200 and "DB_NAME=pad" in body
    # Etherpad reads plain variables: the pad's secrets reach it as such, from its env file
    assert "DB_PASS=value-of-pad/db-password" in body
    assert "ADMIN_PASSWORD=value-of-pad/admin-password" in body
    assert demo.get("nobody.nordlicht.example")[0] in (403, 404, 503)

    secret = demo.host.local("/srv/wiki/secrets/wiki-db-password")
    assert secret.read_bytes() == b"value-of-wiki/db-password"
    # Wiki.js runs as uid 1000: the file is its own, readable by nobody else
    assert (secret.stat().st_uid, secret.stat().st_mode & 0o777) == (1000, 0o400)
    inside = demo.host.run(
        ["podman", "exec", "wiki_app_1", "cat", "/run/secrets/wiki-db-password"], check=True
    )
    assert inside.stdout == "value-of-wiki/db-password"
    # Stand-in certificates let HAProxy start before the certificate job ran.
    assert demo.host.local("/etc/haproxy/certs/wiki.nordlicht.example.pem").exists()

    started = time.monotonic()
    code, out, err = run_cli(capsys, "apply", str(demo.inventory), "--yes")
    assert (code, out) == (0, "")
    assert "Nothing to do." in err
    assert time.monotonic() - started < 5


def _client(demo: Demo, domain: str, total: int, failures: list[str], done: list[int]) -> None:
    for _ in range(total):
        try:
            status, _body = demo.get(domain, "/", timeout=10)
            if status != 200:
                failures.append(f"status {status}")
        except (OSError, urllib.error.URLError) as error:
            failures.append(repr(error))
        done[0] += 1


def test_a_route_moves_while_5000_requests_run_and_none_fails(
    demo: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "apply", str(demo.inventory), "--yes")[0] == 0
    assert "DB_NAME=wiki" in demo.get("wiki.nordlicht.example", "/cgi-bin/env")[1]

    failures: list[str] = []
    done = [0]
    clients = [
        threading.Thread(
            target=_client, args=(demo, "wiki.nordlicht.example", 1250, failures, done)
        )
        for _ in range(4)
    ]
    for client in clients:
        client.start()
    while done[0] < 300:
        time.sleep(0.05)
    # The wiki's /cgi-bin now goes to the pad: only the proxy configuration changes.
    pad = demo.service_file("pad")
    pad["routes"].append({"domain": "wiki.nordlicht.example", "path": "/cgi-bin", "to": "app.http"})
    demo.write_service("pad", pad)
    code, out, err = run_cli(capsys, "apply", str(demo.inventory), "--yes")
    assert code == 0, err
    assert "reload-proxy haproxy" in out
    moved_at = done[0]
    for client in clients:
        client.join()
    assert done[0] == 5000
    assert moved_at < 5000, "the apply finished after the clients: nothing was measured"
    assert failures == []
    assert "DB_NAME=pad" in demo.get("wiki.nordlicht.example", "/cgi-bin/env")[1]


def test_a_configuration_haproxy_rejects_changes_nothing(
    demo: Demo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(capsys, "apply", str(demo.inventory), "--yes")[0] == 0
    config = demo.host.local("/etc/haproxy/haproxy.cfg")
    before = config.read_bytes()

    def broken(inventory: Inventory) -> dict[str, Rendered]:
        files = render_all(inventory)
        name = "local/etc/haproxy/haproxy.cfg"
        text = files[name].content + b"backend broken\n    server x 127.0.0.1:1 no-such-keyword\n"
        files[name] = Rendered(text, files[name].sources)
        return files

    code = main(["apply", str(demo.inventory), "--yes"], seams=Seams(render=broken))
    _, err = capsys.readouterr()
    assert code == 2
    assert "rejects the new /etc/haproxy/haproxy.cfg" in err
    assert "no-such-keyword" in err
    assert config.read_bytes() == before
    assert demo.get("wiki.nordlicht.example")[0] == 200


def test_a_service_failing_its_health_check_is_rolled_back(
    demo: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_cli(capsys, "apply", str(demo.inventory), "--yes")
    assert first[0] == 0, first[2]
    compose = demo.host.local("/srv/wiki/compose.yaml")
    before = compose.read_bytes()
    wiki = demo.service_file("wiki")
    wiki["components"]["app"]["healthcheck"]["http"] = "/no-such-page"
    wiki["components"]["app"]["healthcheck"]["start_period"] = "1s"  # it is not slow, it fails
    wiki["components"]["app"]["env"]["VERSION"] = "2"
    demo.write_service("wiki", wiki)

    code, _, err = run_cli(capsys, "apply", str(demo.inventory), "--yes")
    assert code == 2
    assert "wiki: the health check of app fails" in err, err
    assert "rolled back" in err
    assert compose.read_bytes() == before
    status, body = demo.get("wiki.nordlicht.example", "/cgi-bin/env")
    assert status == 200 and "VERSION=2" not in body
    # The plan still wants the change: nothing pretends it was applied.
    assert run_cli(capsys, "plan", str(demo.inventory))[0] == 3


def test_an_apply_killed_half_way_leaves_no_half_written_file_and_the_next_converges(
    demo: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "apply", str(demo.inventory), "--yes")[0] == 0
    old = {p: demo.host.local(p).read_bytes() for p in _managed(demo)}
    for name in ("wiki", "pad"):
        data = demo.service_file(name)
        data["components"]["app"]["env"]["VERSION"] = "2"
        demo.write_service(name, data)
    command = [sys.executable, "-m", "allmende", "apply", str(demo.inventory), "--yes"]
    process = subprocess.Popen(command, env=demo.env, stderr=subprocess.DEVNULL)
    lock = demo.host.local("/var/lib/allmende/apply.lock/holder.json")
    deadline = time.monotonic() + 30
    while not lock.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    time.sleep(0.5)  # into the renames and the engine
    process.send_signal(signal.SIGKILL)
    process.wait()

    for path, before in old.items():
        now = demo.host.local(path).read_bytes()
        assert now == before or b"VERSION" in now, f"{path} is neither old nor new"

    code, _, err = run_cli(capsys, "apply", str(demo.inventory), "--yes")
    assert code == 0, err
    assert run_cli(capsys, "plan", str(demo.inventory))[0] == 0
    assert "VERSION=2" in demo.get("wiki.nordlicht.example", "/cgi-bin/env")[1]
    assert "VERSION=2" in demo.get("pad.nordlicht.example", "/cgi-bin/env")[1]


def _managed(demo: Demo) -> list[str]:
    manifest = json.loads(demo.host.local(MANIFEST).read_text())
    return sorted(manifest["hosts"]["local"])


def test_a_configuration_haproxy_cannot_load_keeps_the_old_worker_and_is_rolled_back(
    demo: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "apply", str(demo.inventory), "--yes")[0] == 0
    config = demo.host.local("/etc/haproxy/haproxy.cfg")
    before = config.read_bytes()
    # The new HTTPS port is taken by another program: `haproxy -c` accepts the file, but the
    # reload cannot bind it.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        collective = yaml.safe_load((demo.inventory / "allmende.yaml").read_text())
        collective["edge"]["https_port"] = taken.getsockname()[1]
        (demo.inventory / "allmende.yaml").write_text(yaml.safe_dump(collective))

        code, _, err = run_cli(capsys, "apply", str(demo.inventory), "--yes")
        assert code == 2
        assert "HAProxy kept the old configuration" in err
        assert "rolled back" in err
        assert config.read_bytes() == before
        status, body = demo.get("wiki.nordlicht.example", "/cgi-bin/env")
        assert status == 200 and "DB_NAME=wiki" in body
