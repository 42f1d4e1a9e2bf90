"""A compose project started with podman-compose, imported, rendered and delivered as apply
delivers it (each secret's value from the store, in the file or env file it is read from), and
started again under podman-compose: it answers the same requests on the same address and port,
and its container sees the same environment and secret values.

The rendered project names its directory ``/srv/<service>``; here that directory is a
temporary one (the paths are rewritten when it is laid out), so that the test writes nothing
outside its own directories.
"""

from __future__ import annotations

from pathlib import Path

from tests.end_to_end.conftest import IMAGE, Podman, http_get
from tests.ports import free_port

from allmende.actions.importing import Options, import_compose
from allmende.inventory.load import load
from allmende.inventory.secrets import SecretStore, create_key
from allmende.plan.deliver import secret_files
from allmende.render import compose

ORIGINAL = """\
services:
  web:
    image: {image}
    command: [httpd, -f, -p, "8080", -h, /www]
    ports: ["127.0.0.1:{port}:8080"]
    environment:
      GREETING: hello from the original
      API_TOKEN: tok-8f2a9c71e4b35d06aa91
      DB_PASSWORD: "s3cr3t pass # word"
    volumes: ["./site:/www:ro"]
"""
VARIABLES = ("GREETING", "API_TOKEN", "DB_PASSWORD")


def observe(podman: Podman, project: str, port: int) -> tuple[str, dict[str, str]]:
    """Return what the running project answers on its port, and the variables its
    container has."""
    body = http_get(f"http://127.0.0.1:{port}/")
    [name] = podman.run(
        "ps", "--filter", f"label=io.podman.compose.project={project}", "--format", "{{.Names}}"
    ).split()
    lines = podman.run("exec", name, "env").splitlines()
    env = {k: v for k, _, v in (line.partition("=") for line in lines) if k in VARIABLES}
    return body, env


def imported(original: Path, tmp_path: Path) -> tuple[Path, dict[str, str], str]:
    """Import the project ``original`` into a new inventory with one local compose host;
    return the inventory, its environment and the service's name."""
    inventory = tmp_path / "inventory"
    (inventory / "hosts").mkdir(parents=True)
    (inventory / "allmende.yaml").write_text("name: e2e\n")
    (inventory / "hosts" / "local.yaml").write_text("description: this machine\nengine: compose\n")
    env = {"ALLMENDE_AGE_KEY": str(tmp_path / "age.key")}
    create_key(inventory, env)
    report = import_compose([original], Options(into=inventory, environ=env, host="local"))
    [service] = report.services
    return inventory, env, service.name


def delivered(inventory: Path, env: dict[str, str], name: str, tmp_path: Path) -> Path:
    """Render the service and lay its files out as apply delivers them (each with its mode, each
    secret from the store) under ``tmp_path/srv/<service>``; return its compose file."""
    loaded = load(inventory, env)
    here = tmp_path / "srv" / name
    files = {
        path.removeprefix(f"local/srv/{name}/"): rendered
        for path, rendered in compose.render(loaded).items()
    }
    secrets = secret_files(loaded, name, SecretStore(inventory, env))
    files |= {p.removeprefix(f"/srv/{name}/"): r for p, r in secrets.items()}
    for relative, rendered in files.items():
        target = here / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(rendered.content.replace(f"/srv/{name}/".encode(), f"{here}/".encode()))
        target.chmod(rendered.mode)
    return here / "compose.yaml"


def test_an_imported_project_answers_as_the_original_did(podman: Podman, tmp_path: Path) -> None:
    port = free_port()
    original = tmp_path / "shop"
    (original / "site").mkdir(parents=True)
    (original / "site" / "index.html").write_text("the shop answers\n")
    (original / "compose.yaml").write_text(ORIGINAL.format(image=IMAGE, port=port))
    try:
        podman.compose("original", original / "compose.yaml", "up", "-d")
        before = observe(podman, "original", port)
    finally:
        podman.compose("original", original / "compose.yaml", "down", "-t", "0")

    inventory, env, name = imported(original, tmp_path)
    assert "tok-8f2a9c71e4b35d06aa91" not in (inventory / "services" / f"{name}.yaml").read_text()
    project = delivered(inventory, env, name, tmp_path)
    try:
        podman.compose(name, project, "up", "-d")
        after = observe(podman, name, port)
    finally:
        podman.compose(name, project, "down", "-t", "0")
    assert after == before
    assert before[1]["DB_PASSWORD"] == "s3cr3t pass # word"


STARTED_BY_SCRIPT = """\
services:
  web:
    image: {image}
    entrypoint: [/start.sh]
    ports: ["127.0.0.1:{port}:8080"]
    volumes: ["./start.sh:/start.sh:ro"]
"""
START = (
    "#!/bin/sh\nmkdir -p /tmp/www\necho started by the carried script > /tmp/www/index.html\n"
    "exec httpd -f -p 8080 -h /tmp/www\n"
)


def test_an_executable_file_of_the_project_still_starts_the_container(
    podman: Podman, tmp_path: Path
) -> None:
    port = free_port()
    original = tmp_path / "board"
    original.mkdir()
    (original / "start.sh").write_text(START)
    (original / "start.sh").chmod(0o755)
    (original / "compose.yaml").write_text(STARTED_BY_SCRIPT.format(image=IMAGE, port=port))
    try:
        podman.compose("original", original / "compose.yaml", "up", "-d")
        before = http_get(f"http://127.0.0.1:{port}/")
    finally:
        podman.compose("original", original / "compose.yaml", "down", "-t", "0")
    assert before == "started by the carried script\n"

    inventory, env, name = imported(original, tmp_path)
    assert (inventory / "files" / name / "start.sh").stat().st_mode & 0o111
    project = delivered(inventory, env, name, tmp_path)
    assert (project.parent / "files" / "start.sh").stat().st_mode & 0o777 == 0o755
    try:
        podman.compose(name, project, "up", "-d")
        after = http_get(f"http://127.0.0.1:{port}/")
    finally:
        podman.compose(name, project, "down", "-t", "0")
    assert after == before, "the container's entrypoint is the carried script, still executable"
