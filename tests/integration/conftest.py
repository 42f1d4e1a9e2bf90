"""A real OpenSSH server on 127.0.0.1 for the connector and plan tests.

Host key and client key live in a temp directory; ``StrictModes no`` because that directory
is under /tmp. The server is stopped when the tests using it are done.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.ports import free_port
from tests.sshd_setup import SSHD, keygen, known_hosts, prepare, stop, wait_for

from allmende.actions.plan import Seams
from allmende.plan.changes import Action

__all__ = ["SSHD", "Sshd", "free_port", "keygen", "sshd", "write_host"]


@dataclass(frozen=True)
class Sshd:
    """A running sshd: where it listens, and the files a client needs."""

    port: int
    directory: Path
    client_key: Path
    known_hosts: Path
    host_public_key: str


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        pytest.fail("sshd is not installed: run `script/bootstrap test` (openssh-server)")
    directory = tmp_path_factory.mktemp("sshd")
    config, port = prepare(directory)
    log = (directory / "sshd.log").open("wb")
    server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=log)
    try:
        failed = wait_for(port, server, directory / "sshd.log")
        if failed is not None:
            raise RuntimeError(failed)
        public = (directory / "host_ed25519.pub").read_text().strip()
        trusted = known_hosts(directory, port)
        yield Sshd(port, directory, directory / "client_key", trusted, public)
    finally:
        stop(server)
        log.close()


def write_host(root: Path, name: str, ssh: str | None) -> None:
    """Make host ``name`` of the inventory at ``root`` an SSH host (``ssh`` given, on 127.0.0.1)
    or this machine (``ssh`` None)."""
    path = root / "hosts" / f"{name}.yaml"
    lines = [
        line for line in path.read_text().splitlines() if not line.startswith(("ssh:", "address:"))
    ]
    if ssh is not None:
        lines += ["address: 127.0.0.1", f"ssh: {ssh}"]
    path.write_text("\n".join(lines) + "\n")


async def no_actions(*args: object) -> list[Action]:
    """Find no actions after the files: no engine, no proxy (they are driven for real in
    tests/end_to_end; the integration tests are about the files)."""
    return []


#: Plan and apply files only.
FILES_ONLY = Seams(actions=no_actions)
