"""`allmende apply` to Docker hosts: a real dockerd (Debian's docker.io) of the test's own,
a one-node swarm on 127.0.0.1, the host being this machine (files under ALLMENDE_HOST_ROOT).

dockerd keeps everything in a temp directory (data root, socket, no iptables, no bridge, the
vfs storage driver) and is reached through DOCKER_HOST; the swarm listens on 127.0.0.1 only.
The service publishes no port (Swarm would listen on every address): what it serves is read
from inside its container. The stack's secret is created by apply from its file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.end_to_end.conftest import IMAGE, _rootfs
from tests.ports import free_port

from allmende.cli.main import main
from allmende.inventory.secrets import SecretStore, create_key

DOCKERD = Path("/usr/sbin/dockerd")


@dataclass(frozen=True)
class Docker:
    env: dict[str, str]

    def run(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if check and done.returncode != 0:
            pytest.fail(f"docker {' '.join(args)}: {done.stderr}{done.stdout}", pytrace=False)
        return done.stdout


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    if not DOCKERD.exists() or shutil.which("docker") is None:
        pytest.fail("dockerd is not installed: run `script/bootstrap test` (docker.io)")
    root = tmp_path_factory.mktemp("docker")
    socket = root / "docker.sock"
    log = (root / "dockerd.log").open("wb")
    daemon = subprocess.Popen(
        [
            str(DOCKERD),
            f"--host=unix://{socket}",
            f"--data-root={root}/data",
            f"--exec-root={root}/exec",
            f"--pidfile={root}/docker.pid",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--storage-driver=vfs",
        ],
        stdout=log,
        stderr=log,
    )
    engine = Docker({**os.environ, "DOCKER_HOST": f"unix://{socket}"})
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["docker", "info"], env=engine.env, capture_output=True).returncode:
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start: {(root / 'dockerd.log').read_text()}")
            time.sleep(0.2)
        engine.run(
            "swarm",
            "init",
            "--advertise-addr=127.0.0.1",
            f"--listen-addr=127.0.0.1:{free_port()}",
        )
        archive = subprocess.run(
            ["tar", "-C", str(_rootfs(root)), "-c", "."], capture_output=True, check=True
        ).stdout
        subprocess.run(
            ["docker", "import", "--change", "ENV PATH=/bin", "-", IMAGE],
            input=archive,
            env=engine.env,
            capture_output=True,
            check=True,
        )
        yield engine
    finally:
        engine.run("swarm", "leave", "--force", check=False)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        subprocess.run(["ip", "link", "delete", "docker_gwbridge"], capture_output=True)
        # The overlay networks' namespaces stay mounted under the exec root after dockerd
        # exits; left there, their vxlan devices make the next swarm's tasks fail to start.
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)


def write_inventory(root: Path, greeting: str) -> None:
    for directory in ("hosts", "services"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "allmende.yaml").write_text("name: e2e\n")
    (root / "hosts" / "manager.yaml").write_text(
        "description: the swarm manager, this machine\nengine: swarm\n"
    )
    (root / "services" / "board.yaml").write_text(
        f"""description: the board
host: manager
components:
  web:
    image: {IMAGE}
    command: [httpd, -f, -p, "8080", -h, /www]
    env: {{GREETING: {greeting}}}
    secrets: {{TOKEN: board/token}}
    ports: {{http: 8080}}
    healthcheck: {{http: /, port: http, interval: 2s}}
"""
    )


def this_machine(
    inventory: Path, tmp_path: Path, docker: Docker, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Store the secret ``board/token`` (``s3cret``) under a key of the test, point allmende
    at this machine (its root a temp directory) and the test's dockerd; return the root."""
    env = {"ALLMENDE_AGE_KEY": str(tmp_path / "age.key")}
    create_key(inventory, env)
    SecretStore(inventory, env).set("board/token", b"s3cret")
    host = tmp_path / "host"
    host.mkdir()
    for key, value in {
        "DOCKER_HOST": docker.env["DOCKER_HOST"],
        "ALLMENDE_HOST_ROOT": str(host),
        "ALLMENDE_STATE": str(tmp_path / "state.sqlite"),
        **env,
    }.items():
        monkeypatch.setenv(key, value)
    return host


def served(docker: Docker, path: str) -> str:
    """Return what the board's running task answers on ``path``, from inside it."""
    deadline = time.monotonic() + 60
    while True:
        names = docker.run(
            "ps", "--filter", "label=com.docker.swarm.service.name=board_web", "--format", "{{.ID}}"
        ).split()
        for name in names:
            done = subprocess.run(
                ["docker", "exec", name, "wget", "-q", "-O", "-", f"http://127.0.0.1:8080{path}"],
                env=docker.env,
                capture_output=True,
                text=True,
            )
            if done.returncode == 0:
                return done.stdout
        if time.monotonic() > deadline:
            pytest.fail(f"board_web does not answer: {docker.run('service', 'ps', 'board_web')}")
        time.sleep(0.5)


def test_a_swarm_stack_is_deployed_with_its_secret_and_updated(
    docker: Docker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inventory = tmp_path / "inventory"
    write_inventory(inventory, "hello")
    host = this_machine(inventory, tmp_path, docker, monkeypatch)
    try:
        assert main(["apply", str(inventory), "--yes", "--diff"]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "Then on manager: up board: its files change" in out
        assert f"docker stack deploy --prune -c {host}/srv/board/stack.yaml board" in out
        body = served(docker, "/cgi-bin/env")
        assert "GREETING=hello" in body
        assert "TOKEN_FILE=/run/secrets/board-token" in body
        secret = json.loads(docker.run("secret", "inspect", "board_board-token"))
        assert secret[0]["Spec"]["Name"] == "board_board-token"
        task = docker.run(
            "ps", "--filter", "label=com.docker.swarm.service.name=board_web", "--format", "{{.ID}}"
        ).split()[0]
        assert docker.run("exec", task, "cat", "/run/secrets/board-token") == "s3cret"

        write_inventory(inventory, "again")
        assert main(["apply", str(inventory), "--yes"]) == 0, capsys.readouterr().err
        deadline = time.monotonic() + 60
        while "GREETING=again" not in served(docker, "/cgi-bin/env"):
            assert time.monotonic() < deadline, "the stack was not updated"
            time.sleep(1)
        assert main(["apply", str(inventory), "--yes"]) == 0
        assert "Nothing to do." in capsys.readouterr().err
    finally:
        docker.run("stack", "rm", "board", check=False)


def test_a_compose_service_on_docker_runs_through_docker_compose_and_is_brought_back(
    docker: Docker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inventory = tmp_path / "inventory"
    write_inventory(inventory, "hello")
    # Another name than the stack's: Swarm removes a stack's network some time after it.
    board = inventory / "services" / "board.yaml"
    board.rename(inventory / "services" / "notes.yaml")
    (inventory / "hosts" / "manager.yaml").write_text(
        "description: this machine, with Docker\nengine: compose\n"  # runtime: docker
    )
    host = this_machine(inventory, tmp_path, docker, monkeypatch)  # the secret: board/token
    compose = f"{host}/srv/notes/compose.yaml"
    try:
        assert main(["apply", str(inventory), "--yes", "--diff"]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        # This Docker has no compose plugin: the older docker-compose is used.
        assert f"$ docker-compose -p notes -f {compose} up -d" in out
        (name,) = docker.run("ps", "--filter", "label=org.allmende.service=notes", "-q").split()
        assert "healthy" in docker.run("inspect", "--format", "{{.State.Health.Status}}", name)
        body = docker.run(
            "exec", name, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/cgi-bin/env"
        )
        assert "GREETING=hello" in body
        assert docker.run("exec", name, "cat", "/run/secrets/board-token") == "s3cret"

        docker.run("stop", "-t", "0", name)
        assert main(["plan", str(inventory)]) == 3
        assert "up notes: not running: web exited" in capsys.readouterr().out
        assert main(["apply", str(inventory), "--yes"]) == 0, capsys.readouterr().err
        assert docker.run("ps", "--filter", "label=org.allmende.service=notes", "-q").strip()
    finally:
        subprocess.run(
            ["docker-compose", "-p", "notes", "-f", compose, "down", "-t", "0"],
            env=docker.env,
            capture_output=True,
        )
