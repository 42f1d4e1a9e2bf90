"""Fixtures of the end-to-end tests: the real programs allmende drives, on loopback only.

``podman`` is a rootful Podman that keeps everything in one temporary directory: its own
containers.conf (runc, cgroupfs, ulimits this machine allows, its runtime files) and
storage.conf, passed to every podman and podman-compose command through CONTAINERS_CONF and
CONTAINERS_STORAGE_CONF, so the machine's own images, containers and networks are never touched.
It holds one image, ``localhost/allmende-test/busybox:1``, imported from a rootfs made of the
static busybox: ``/www`` holds ``index.html`` (``allmende-test``) and the CGI script
``/www/cgi-bin/env`` that prints the environment of ``httpd -f -p 8080 -h /www``. At the end
of the session every container, pod, network, volume and image is removed, one by one: not with
``podman system reset``, which also wipes podman's machine-wide runtime directory (/run/libpod)
under every other podman on the machine.

Without podman, runc or busybox the tests fail, saying what to install: they are part of CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

IMAGE = "localhost/allmende-test/busybox:1"
INDEX = "allmende-test\n"
CGI_ENV = '#!/bin/sh\necho "Content-Type: text/plain"\necho\nenv\n'
PODMAN_COMPOSE = Path(sys.executable).parent / "podman-compose"
INSTALL = (
    "run `script/bootstrap test` (as root it installs the Debian packages podman, runc, "
    "busybox-static and iptables; podman-compose comes with the test extra)"
)


@dataclass(frozen=True)
class Podman:
    """A podman whose configuration and storage live under ``root``."""

    root: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        """Run ``podman ARGS``; return its output. Fail the test with its stderr if it fails."""
        return self._run(["podman", *args], check=check, timeout=timeout)

    def compose(self, project: str, file: Path, *args: str) -> str:
        """Run ``podman-compose -p PROJECT -f FILE ARGS`` in the file's directory."""
        command = [str(PODMAN_COMPOSE), "-p", project, "-f", str(file), *args]
        return self._run(command, cwd=file.parent)

    def _run(
        self, command: list[str], check: bool = True, timeout: float = 120, cwd: Path | None = None
    ) -> str:
        done = subprocess.run(
            command,
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}{done.stdout}",
                pytrace=False,
            )
        return done.stdout


def _require() -> None:
    missing = [p for p in ("podman", "runc", "busybox", "tar") if shutil.which(p) is None]
    if not PODMAN_COMPOSE.exists():
        missing.append(str(PODMAN_COMPOSE))
    if missing:
        pytest.fail(f"the end-to-end tests need {', '.join(missing)}: {INSTALL}", pytrace=False)


def _configure(root: Path) -> dict[str, str]:
    """Write containers.conf and storage.conf under ``root``; return the environment."""
    (root / "containers.conf").write_text(
        "[containers]\n"
        'default_ulimits = ["nofile=10000:10000", "nproc=10000:10000"]\n'
        "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'runtime = "runc"\n'
        'events_logger = "file"\n'
        # Its own runtime files (exit codes, the "alive" file), not the machine's /run/libpod,
        # which another podman may clear while this one runs.
        f'tmp_dir = "{root}/libpod"\n'
        "[network]\n"
        f'network_config_dir = "{root}/netconf"\n'
    )
    (root / "storage.conf").write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{root}/store/graph"\n'
        f'runroot = "{root}/store/run"\n'
    )
    return {
        **os.environ,
        "CONTAINERS_CONF": str(root / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
    }


def busybox_tree(rootfs: Path, *directories: str) -> None:
    """Make ``directories`` under ``rootfs``, the static busybox in its ``bin`` with a link per
    applet, and ``/etc/passwd`` and ``/etc/group`` with root."""
    for directory in ("bin", "etc", *directories):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    busybox = Path(shutil.which("busybox") or "busybox")
    shutil.copy(busybox, rootfs / "bin" / "busybox")
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":  # a link named busybox would point at itself
            (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")


def _rootfs(root: Path) -> Path:
    """Make the busybox rootfs of the test image under ``root``; return it."""
    rootfs = root / "rootfs"
    busybox_tree(rootfs, "www/cgi-bin", "tmp")
    (rootfs / "www" / "index.html").write_text(INDEX)
    script = rootfs / "www" / "cgi-bin" / "env"
    script.write_text(CGI_ENV)
    script.chmod(0o755)
    return rootfs


def _teardown(podman: Podman) -> None:
    podman.run("rm", "--all", "--force", "--time", "0", check=False)
    podman.run("pod", "rm", "--all", "--force", "--time", "0", check=False)
    podman.run("rmi", "--all", "--force", check=False)
    podman.run("network", "prune", "--force", check=False)
    podman.run("volume", "prune", "--force", check=False)
    overlay = podman.root / "store" / "graph" / "overlay"
    if overlay.is_mount():
        subprocess.run(["umount", str(overlay)], check=False)
    shutil.rmtree(podman.root, ignore_errors=True)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """A podman of its own, holding the test image; everything is removed at the end."""
    _require()
    root = tmp_path_factory.mktemp("podman")
    engine = Podman(root, _configure(root))
    try:
        archive = subprocess.run(
            ["tar", "-C", str(_rootfs(root)), "-c", "."], capture_output=True, check=True
        ).stdout
        changes = ["--change", "ENV PATH=/bin", "--change", 'CMD ["/bin/sh"]']
        imported = subprocess.run(
            ["podman", "import", "-q", *changes, "-", IMAGE],
            input=archive,
            env=engine.env,
            capture_output=True,
            check=False,
        )
        if imported.returncode != 0:
            pytest.fail(f"podman import failed: {imported.stderr.decode()}", pytrace=False)
        yield engine
    finally:
        _teardown(engine)


def http_get(url: str, timeout: float = 20) -> str:
    """Return the body of ``url`` once it answers 200, trying until ``timeout`` seconds."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with opener.open(url, timeout=2) as answer:
                body: str = answer.read().decode()
                return body
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer within {timeout} s: {error}", pytrace=False)
            time.sleep(0.2)


from tests.end_to_end.backup_world import (  # noqa: E402, F401  (registers the fixtures)
    mariadb_image,
    postgres_image,
    repository_server,
    webhook,
)
from tests.end_to_end.incus import incus_world  # noqa: E402, F401  (registers the fixture)
from tests.end_to_end.remote import (  # noqa: E402, F401  (registers the fixtures)
    remote_host,
    remote_pair,
)
