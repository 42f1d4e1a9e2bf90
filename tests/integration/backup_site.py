"""An inventory backed up with the real Borg, for the backup tests: one host (this machine
under a temp root, or a remote host), a repository, an age key and a state database, all in
temp directories."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from allmende.actions import backup, backupinit
from allmende.actions.backup import Context, prepare
from allmende.inventory.secrets import create_key

COLLECTIVE = """\
name: testers
notify:
{notify}
backup:
  repository: {repository}
  encryption: repokey-blake2
  append_only: {append_only}
  schedule: daily
  keep: {{daily: 7}}
"""
HOST = "description: this machine\nengine: {engine}\nruntime: {runtime}\n{ssh}"


def need_borg() -> None:
    """Fail the test (it is part of CI) when Borg is not installed."""
    if shutil.which("borg") is None:
        pytest.fail("Borg is not installed: run `script/bootstrap test` (borgbackup)")


@dataclass
class Site:
    """An inventory in ``root/inventory`` whose one host ``box`` is ``host_root``."""

    directory: Path
    env: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    @property
    def inventory(self) -> Path:
        return self.directory / "inventory"

    @property
    def host_root(self) -> Path:
        return self.directory / "host"

    def on_host(self, path: str) -> Path:
        """Return where the host path ``path`` is on this machine."""
        return self.host_root / path.lstrip("/")

    def context(self, *services: str) -> Context:
        return prepare(self.inventory, self.env, services)

    def say(self, line: str) -> None:
        self.lines.append(line)

    def init(self, *services: str) -> list[backupinit.Initialised]:
        return backupinit.init(self.context(*services), self.say)

    def run(self, *services: str) -> list[backup.Outcome]:
        return backup.run(self.context(*services), self.say)

    def borg(
        self, *args: str, passphrase: bytes, cwd: Path | None = None, base: str = "borg-by-hand"
    ) -> bytes:
        """Run Borg here directly, as a person would, with the repository's passphrase (and
        Borg's own files in ``base``)."""
        env = {
            **os.environ,
            "BORG_PASSPHRASE_FD": "0",
            "BORG_BASE_DIR": str(self.directory / base),
            "TZ": "UTC",
        }
        done = subprocess.run(
            ["borg", *args], input=passphrase, env=env, capture_output=True, cwd=cwd, check=False
        )
        assert done.returncode in (0, 1), done.stderr.decode()
        return done.stdout


def make_site(
    directory: Path,
    repository: str,
    services: Mapping[str, str],
    *,
    engine: str = "compose",
    runtime: str = "podman",
    ssh: str = "",
    append_only: bool = False,
    notify: str = "  - webhook: http://127.0.0.1:9/unused\n",
    env: Mapping[str, str] | None = None,
) -> Site:
    """Write the inventory (``services``: file name -> YAML) and make its age key."""
    site = Site(directory)
    inventory = site.inventory
    (inventory / "hosts").mkdir(parents=True)
    (inventory / "services").mkdir()
    (inventory / "allmende.yaml").write_text(
        COLLECTIVE.format(
            notify=notify.rstrip("\n"),
            repository=repository,
            append_only="true" if append_only else "false",
        )
    )
    (inventory / "hosts" / "box.yaml").write_text(
        HOST.format(engine=engine, runtime=runtime, ssh=ssh)
    )
    for name, text in services.items():
        (inventory / "services" / f"{name}.yaml").write_text(text)
    site.host_root.mkdir()
    site.env = {
        **os.environ,
        "ALLMENDE_AGE_KEY": str(directory / "age.key"),
        "ALLMENDE_STATE": str(directory / "state.sqlite"),
        "ALLMENDE_HOST_ROOT": str(site.host_root),
        "ALLMENDE_NOTIFY_TIMEOUT": "10",
        **(env or {}),
    }
    create_key(inventory, site.env)
    return site
