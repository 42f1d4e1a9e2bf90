"""What the backup end-to-end tests drive: a repository server (a real sshd whose keys may only
run the ``borg serve`` line allmende generates), a webhook that records alerts, containers
of the test podman carrying the labels compose gives a service's containers, and a real
PostgreSQL in one of them."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tests.end_to_end.images import MARIADB_ENTRY, POSTGRES_ENTRY, import_image, rootfs_tar
from tests.end_to_end.watch_world import Webhook
from tests.ports import free_port
from tests.sshd_setup import SSHD, prepare, stop, wait_for

if TYPE_CHECKING:  # conftest imports this module to register its fixtures
    from tests.end_to_end.conftest import Podman

POSTGRES_IMAGE = "localhost/allmende-test/postgres:15"
MARIADB_IMAGE = "localhost/allmende-test/mariadb:10.11"


@dataclass
class RepositoryServer:
    """An sshd on 127.0.0.1 for Borg repositories under ``directory / "repos"``."""

    port: int
    directory: Path
    authorized_keys: Path

    def url(self) -> str:
        """Return the repository URL of every service (``{service}`` in it)."""
        return f"ssh://root@127.0.0.1:{self.port}{self.directory}/repos/{{service}}"


@pytest.fixture
def repository_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RepositoryServer]:
    if not SSHD.exists() or shutil.which("borg") is None:
        pytest.fail("sshd and borg are needed: run `script/bootstrap test`", pytrace=False)
    directory = tmp_path_factory.mktemp("repository-server")
    config, port = prepare(directory)
    keys = directory / "authorized_keys"
    keys.write_text("")  # only what the test puts there: the lines allmende generates
    log = directory / "sshd.log"
    with log.open("wb") as output:
        server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=output)
    try:
        failed = wait_for(port, server, log)
        if failed is not None:
            pytest.fail(f"sshd did not start: {failed}", pytrace=False)
        (directory / "repos").mkdir()
        yield RepositoryServer(port, directory, keys)
    finally:
        stop(server)


@contextlib.contextmanager
def webhook_server() -> Iterator[Webhook]:
    """Run a ``Webhook`` on a free port of 127.0.0.1 while the block runs."""
    hook = Webhook(free_port())
    hook.start()
    try:
        yield hook
    finally:
        hook.stop()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with webhook_server() as hook:
        yield hook


def labels(service: str, component: str) -> list[str]:
    """Return the podman run options of the labels compose gives a service's container."""
    return [
        "--label",
        f"org.allmende.service={service}",
        "--label",
        f"org.allmende.component={component}",
    ]


@contextlib.contextmanager
def web_container(podman: Podman, service: str, data: Path) -> Iterator[str]:
    """Run a container with ``data`` mounted as the ``app`` container of ``service``; yield its
    name; remove it afterwards."""
    from tests.end_to_end.conftest import IMAGE

    name = f"{service}-app-{data.parent.parent.parent.name[-8:]}"
    podman.run(
        "run", "-d", "--name", name, *labels(service, "app"),
        "-v", f"{data}:/www", IMAGE,
        # A service that keeps running and stops when told (as PID 1 a program that does not
        # handle SIGTERM would make podman wait, then kill it).
        "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done",
    )  # fmt: skip
    try:
        yield name
    finally:
        podman.run("rm", "--force", "--time", "0", name, check=False)


def running(podman: Podman, name: str) -> bool:
    """Return whether the container runs."""
    return podman.run("inspect", "--format", "{{.State.Running}}", name).strip() == "true"


def state(podman: Podman, name: str) -> str:
    """Return the container's state and what it printed, for a failing assertion."""
    shown = podman.run("inspect", "--format", "{{json .State}}", name, check=False)
    return shown + podman.run("logs", name, check=False)


@pytest.fixture(scope="session")
def postgres_image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    tar = rootfs_tar(
        tmp_path_factory, ["postgresql"], {"/usr/local/bin/postgres-entry": POSTGRES_ENTRY}
    )
    changes = ["ENV PATH=/usr/local/bin:/usr/bin:/bin", 'CMD ["/usr/local/bin/postgres-entry"]']
    return import_image(podman.env, tar, POSTGRES_IMAGE, changes)


@contextlib.contextmanager
def postgres_container(podman: Podman, image: str, service: str) -> Iterator[str]:
    """Run PostgreSQL 15 as the ``server`` container of ``service``; yield its name once it
    accepts connections."""
    name = f"{service}-server-{time.monotonic_ns() % 10**8}"
    podman.run("run", "-d", "--name", name, *labels(service, "server"), image)
    try:
        deadline = time.monotonic() + 60
        ready = ["podman", "exec", name, "pg_isready", "-q"]
        while subprocess.run(ready, env=podman.env, check=False).returncode != 0:
            if time.monotonic() > deadline:
                pytest.fail("PostgreSQL did not start", pytrace=False)
            time.sleep(0.3)
        yield name
    finally:
        podman.run("rm", "--force", "--time", "0", name, check=False)


def psql(podman: Podman, container: str, database: str, sql: str) -> str:
    """Run SQL in the container's database as postgres; return the unaligned output."""
    return podman.run(
        "exec", "-i", "--user", "postgres", container,
        "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql,
    )  # fmt: skip


def row_counts(podman: Podman, container: str, database: str) -> dict[str, int]:
    """Return ``count(*)`` of every table of the public schema."""
    tables = psql(
        podman, container, database,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    ).split()  # fmt: skip
    return {
        t: int(psql(podman, container, database, f"SELECT count(*) FROM {t}").strip())
        for t in tables
    }


@pytest.fixture(scope="session")
def mariadb_image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    tar = rootfs_tar(
        tmp_path_factory, ["mariadb-server"], {"/usr/local/bin/mariadb-entry": MARIADB_ENTRY}
    )
    path = "ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    changes = [path, 'CMD ["/usr/local/bin/mariadb-entry"]']
    return import_image(podman.env, tar, MARIADB_IMAGE, changes)


@contextlib.contextmanager
def mariadb_container(podman: Podman, image: str, service: str) -> Iterator[str]:
    """Run MariaDB as the ``server`` container of ``service``; yield its name once it
    answers."""
    name = f"{service}-server-{time.monotonic_ns() % 10**8}"
    podman.run("run", "-d", "--name", name, *labels(service, "server"), image)
    try:
        deadline = time.monotonic() + 60
        ready = ["podman", "exec", name, "mariadb-admin", "--user=root", "ping"]
        while subprocess.run(ready, env=podman.env, check=False, capture_output=True).returncode:
            if time.monotonic() > deadline:
                pytest.fail(f"MariaDB did not start: {state(podman, name)}", pytrace=False)
            time.sleep(0.3)
        yield name
    finally:
        podman.run("rm", "--force", "--time", "0", name, check=False)


def mariadb(podman: Podman, container: str, sql: str, database: str = "") -> str:
    """Run SQL in the container as root (by its socket); return the tab-separated output."""
    words = ["exec", container, "mariadb", "--user=root", "--batch", "--skip-column-names"]
    return podman.run(*words, *([database] if database else []), "-e", sql)
