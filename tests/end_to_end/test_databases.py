"""Services that use a database come up healthy: the roles and databases are provisioned by
apply, and each application gets its password the way it reads it.

A real PostgreSQL 15 and a real MariaDB (Debian's, in local images: ``tests/end_to_end/debian.py``)
and applications that log in to them and write a row (``/usr/local/bin/app``), all run by
podman-compose on ``remote_host`` (a real sshd on 127.0.0.1), applied by ``allmende apply``
over SSH. One application reads its password from a plain variable (``as: env``), one from
``DB_PASS_FILE`` while running as uid 5001 (the file owned by 5001, mode 0400).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.end_to_end.conftest import Podman
from tests.end_to_end.debian import IMAGE, IMAGE_5001, build_images
from tests.end_to_end.remote import RemoteHost
from tests.ports import free_port

from allmende.cli.main import main
from allmende.inventory.secrets import SecretStore, create_key


@pytest.fixture(scope="session")
def debian(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The Debian images, in the test storage (the podman fixture removes them at the end)."""
    build_images(podman.env, tmp_path_factory.mktemp("debian"))


@dataclass
class Site:
    inventory: Path
    host: RemoteHost
    ports: dict[str, int]
    env: dict[str, str]

    def health(self, service: str, timeout: float = 60) -> dict[str, Any]:
        """GET /health of a service's published port; return its JSON once it answers 200."""
        url = f"http://127.0.0.1:{self.ports[service]}/health"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        said = ""
        while time.monotonic() < deadline:
            try:
                with opener.open(url, timeout=5) as answer:
                    data: dict[str, Any] = json.loads(answer.read())
                    return data
            except urllib.error.HTTPError as error:
                said = error.read().decode()
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                said = str(error)
            time.sleep(0.5)
        pytest.fail(f"{service} is not healthy after {timeout} s: {said}", pytrace=False)

    def sql(self, service: str, *query: str) -> str:
        """Run a query as the superuser inside a provider's container; return what it printed."""
        container = f"{service}_server_1"
        if service == "database":
            words = ["runuser", "-u", "postgres", "--", "psql", "-At", "-c", " ".join(query)]
        else:
            words = ["mariadb", "--batch", "--skip-column-names", "-e", " ".join(query)]
        done = self.host.run(["podman", "exec", container, *words], check=True)
        return done.stdout


def write(root: Path, path: str, data: dict[str, Any]) -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(yaml.safe_dump(data, sort_keys=False))


def app(image: str, kind: str, host: str, port: int, name: str, secret: Any) -> dict[str, Any]:
    """A component running the test application against ``host``'s database ``name``."""
    return {
        "image": image,
        "command": ["app"],
        "env": {
            "DB_KIND": kind,
            "DB_HOST": host,
            "DB_PORT": str(port),
            "DB_NAME": name,
            "DB_USER": name,
        },
        "secrets": {"DB_PASS": secret},
        "ports": {"http": 8000},
        "healthcheck": {"command": ["python3", "-c", HEALTH], "interval": "2s"},
    }


#: The application's own check: /health answers 200.
HEALTH = "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/health', timeout=3)"


def server(kind: str) -> dict[str, Any]:
    """The provider: PostgreSQL or MariaDB from the Debian image."""
    if kind == "postgres":
        return {
            "image": IMAGE,
            "command": ["pg-entry"],
            "secrets": {"POSTGRES_PASSWORD": "database/postgres-password"},
            "ports": {"db": 5432},
            "volumes": {"data": "/var/lib/postgresql/data"},
            "healthcheck": {
                "command": ["/usr/lib/postgresql/15/bin/pg_isready", "-h", "127.0.0.1"],
                "interval": "2s",
            },
        }
    return {
        "image": IMAGE,
        "command": ["mariadb-entry"],
        "ports": {"db": 3306},
        "volumes": {"data": "/var/lib/mysql"},
        "healthcheck": {"command": ["mariadb-admin", "ping"], "interval": "2s"},
    }


def make_site(remote_host: RemoteHost, tmp_path: Path, kind: str) -> Site:
    root = tmp_path / "inventory"
    provider = "database" if kind == "postgres" else "mariadb"
    port = 5432 if kind == "postgres" else 3306
    write(root, "allmende.yaml", {"name": "werkstatt", "backup": {"consistency": "none"}})
    write(
        root,
        "hosts/box.yaml",
        {
            "description": "The box in the workshop",
            "address": "127.0.0.1",
            "ssh": {"user": "root", "port": remote_host.port},
            "runtime": "podman",
        },
    )
    ports = {"notes": free_port(), "board": free_port()}
    write(
        root,
        f"services/{provider}.yaml",
        {
            "description": f"The shared {kind} of the workshop",
            "host": "box",
            "components": {"server": server(kind)},
            "provides": {"database": kind, "databases": ["notes", "board"]},
            "backup": {"consistency": "none"},
            "allow": [{"rule": "backups.required", "reason": "a database made for one test"}],
            "monitor": [],
        },
    )
    env_secret = {"secret": "notes/db-password", "as": "env"}
    file_secret = {"secret": "board/db-password", "uid": 5001, "gid": 5001, "mode": "0400"}
    for name, image, secret in (("notes", IMAGE, env_secret), ("board", IMAGE_5001, file_secret)):
        component = app(image, kind, provider, port, name, secret)
        component["publish"] = {"http": ports[name]}
        write(
            root,
            f"services/{name}.yaml",
            {
                "description": f"The workshop's {name}",
                "host": "box",
                "components": {"app": component},
                "uses": [{"database": f"{provider}/{name}"}],
                "monitor": [],
            },
        )
    key = tmp_path / "age.key"
    env = {
        **remote_host.connector_env,
        "ALLMENDE_AGE_KEY": str(key),
        "ALLMENDE_STATE": str(tmp_path / "state.sqlite"),
        "USER": "tester",
    }
    create_key(root, env)
    store = SecretStore(root, env)
    for name in ("notes/db-password", "board/db-password", "database/postgres-password"):
        store.set(name, f"{name.replace('/', '-')}-1".encode())
    return Site(root, remote_host, ports, env)


@pytest.fixture(params=["postgres", "mariadb"])
def site(
    request: pytest.FixtureRequest,
    remote_host: RemoteHost,
    debian: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Site]:
    made = make_site(remote_host, tmp_path, request.param)
    for key, value in made.env.items():
        monkeypatch.setenv(key, value)
    yield made
    for name in ("notes", "board", "database", "mariadb"):
        compose = f"/srv/{name}/compose.yaml"
        if remote_host.local(compose).exists():
            remote_host.run(["podman-compose", "-p", name, "-f", compose, "down", "-t", "0"])
    remote_host.empty("/srv", "/var/lib/allmende")


def apply(capsys: pytest.CaptureFixture[str], site: Site) -> tuple[int, str, str]:
    code = main(["apply", str(site.inventory), "--yes"])
    out, err = capsys.readouterr()
    return code, out, err


def test_databases_are_provisioned_and_each_app_logs_in_as_it_reads_its_password(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    provider = "database" if (site.inventory / "services/database.yaml").exists() else "mariadb"
    code, out, err = apply(capsys, site)
    assert code == 0, err
    # The plan said it, before the services that use it start.
    actions = [line for line in out.splitlines() if line.startswith("Then on box:")]
    provision = f"Then on box: provision {provider}: create role board, create role notes, "
    assert any(line.startswith(provision) for line in actions), actions
    order = [line.split(":")[1].strip() for line in actions]
    assert order.index(f"provision {provider}") < order.index("up board")
    assert "db-password-1" not in out + err  # no value is ever shown
    # Both applications log in with their own role: one from a plain variable, one from a
    # file it can read as uid 5001.
    notes, board = site.health("notes"), site.health("board")
    assert (notes["user"], board["user"]) == ("notes", "board")
    assert (notes["uid"], board["uid"]) == (0, 5001)
    owner = site.host.local("/srv/board/secrets/board-db-password").stat()
    assert (owner.st_uid, owner.st_gid, owner.st_mode & 0o777) == (5001, 5001, 0o400)
    env_file = site.host.local("/srv/notes/secrets/app.env")
    assert env_file.read_text() == "DB_PASS=notes-db-password-1\n"
    assert env_file.stat().st_mode & 0o777 == 0o600
    compose = site.host.local("/srv/notes/compose.yaml").read_text()
    assert "notes-db-password-1" not in compose
    # The server has the roles and databases, each database owned by its role.
    if provider == "database":
        listed = site.sql(provider, "SELECT datname, pg_get_userbyid(datdba) FROM pg_database")
        assert {"notes|notes", "board|board"} <= set(listed.split())
    else:
        listed = site.sql(provider, "SELECT User FROM mysql.user WHERE Host = '%'")
        assert {"notes", "board"} <= set(listed.split())
        assert {"notes", "board"} <= set(site.sql(provider, "SHOW DATABASES").split())

    # A second apply changes nothing.
    code, out, err = apply(capsys, site)
    assert code == 0 and "Nothing to do." in err, out + err

    # A password changed in the store is set at the next apply, and the app logs in with it.
    SecretStore(site.inventory, site.env).set("notes/db-password", b"notes-db-password-2")
    code, out, err = apply(capsys, site)
    assert code == 0, err
    assert f"Then on box: provision {provider}: set the password of notes" in out
    assert site.health("notes")["user"] == "notes"
    rows = site.health("notes")["rows"]
    assert rows >= 3  # the rows written before the rotation are still there
    code, out, err = apply(capsys, site)
    assert code == 0 and "Nothing to do." in err, out + err
