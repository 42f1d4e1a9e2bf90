"""The backup timer on a host with systemd as PID 1 (a Debian container of the test podman,
reached over SSH on 127.0.0.1): apply puts allmende, the job, the passphrase and the units
there and enables the timer; the unit's own ExecStart, under its hardening, stops the
service, backs it up and starts it again. Nothing is installed by hand: apply installs Borg
from Debian's packages (python3 the host has, as Debian's own tools need it)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.end_to_end.conftest import Podman
from tests.end_to_end.images import import_image, rootfs_tar
from tests.ports import free_port
from tests.sshd_setup import keygen

from allmende.cli.main import main

IMAGE = "localhost/allmende-test/systemd-host:12"
#: No Borg: apply installs it (from Debian's packages) because the host backs something up.
PACKAGES = ["systemd-sysv", "dbus", "openssh-server", "python3"]
#: The service the backup stops and starts: a systemd unit of the host (engine systemd).
APP_UNIT = """\
[Unit]
Description=The notes app (a stand-in that keeps running)

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""
NOTES = """\
description: Notes of the space
host: box
components:
  app:
    image: localhost/notes:1
    volumes: {data: /data}
backup: {consistency: stop}
"""


@dataclass(frozen=True)
class SystemdHost:
    """A running container with systemd as PID 1 and sshd published on 127.0.0.1:port."""

    name: str
    port: int
    key: Path
    known_hosts: Path
    podman: Podman

    def sh(self, command: str, check: bool = True) -> str:
        return self.podman.run("exec", self.name, "sh", "-c", command, check=check)


#: The watcher's last result of the notes' backup probe, read in the host's state database.
LAST_BACKUP_RESULT = """
import sqlite3
db = sqlite3.connect("/var/lib/allmende/state.sqlite")
print(db.execute(
    "SELECT state, detail FROM watch_results WHERE probe = 'notes/backup/notes' "
    "ORDER BY at DESC LIMIT 1"
).fetchall())
"""


@pytest.fixture(scope="module")
def systemd_host(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdHost]:
    tar = rootfs_tar(
        tmp_path_factory, PACKAGES, {"/etc/systemd/system/notes-app.service": APP_UNIT}
    )
    import_image(podman.env, tar, IMAGE, ['CMD ["/sbin/init"]'])
    directory = tmp_path_factory.mktemp("systemd-host")
    keygen(directory / "key")
    port = free_port()
    name = f"systemd-host-{port}"
    podman.run("run", "-d", "--name", name, "--systemd=always", "-p", f"127.0.0.1:{port}:22", IMAGE)
    try:
        deadline = time.monotonic() + 60
        while True:
            state = podman.run("exec", name, "systemctl", "is-system-running", check=False)
            if state.strip() in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"systemd did not come up: {state}", pytrace=False)
            time.sleep(0.5)
        public = (directory / "key.pub").read_text()
        podman.run(
            "exec", name, "sh", "-c",
            "mkdir -p -m 0700 /root/.ssh && printf '%s' \"$1\" > /root/.ssh/authorized_keys "
            "&& systemctl enable --now notes-app.service ssh.service", "sh", public,
        )  # fmt: skip
        host_key = podman.run("exec", name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
        known = directory / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {host_key.strip()}\n")
        yield SystemdHost(name, port, directory / "key", known, podman)
    finally:
        podman.run("rm", "--force", "--time", "0", name, check=False)


def notes_on(
    host: SystemdHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collective: str
) -> Path:
    """Return an inventory whose host ``box`` is ``host``, running the notes with data there
    (``collective``: the rest of allmende.yaml), its age key made, allmende reaching ``box``."""
    inventory = tmp_path / "inventory"
    (inventory / "hosts").mkdir(parents=True)
    (inventory / "services").mkdir()
    (inventory / "allmende.yaml").write_text(f"name: testers\n{collective}")
    (inventory / "hosts/box.yaml").write_text(
        f"description: a systemd host\naddress: 127.0.0.1\nssh: {{user: root, port: "
        f"{host.port}}}\nengine: systemd\n"
    )
    (inventory / "services/notes.yaml").write_text(NOTES)
    for name, value in {
        "ALLMENDE_AGE_KEY": str(tmp_path / "age.key"),
        "ALLMENDE_STATE": str(tmp_path / "state.sqlite"),
        "ALLMENDE_KNOWN_HOSTS": str(host.known_hosts),
        "ALLMENDE_SSH_KEY": str(host.key),
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["secret", "init", "--inventory", str(inventory)]) == 0
    host.sh("mkdir -p /srv/notes/data && echo 'buy milk' > /srv/notes/data/todo.txt")
    return inventory


def test_apply_installs_the_timer_and_its_unit_backs_up_under_its_hardening(
    systemd_host: SystemdHost,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if shutil.which("borg") is None:
        pytest.fail("borg is needed: run `script/bootstrap test`", pytrace=False)
    inventory = notes_on(
        systemd_host, tmp_path, monkeypatch, "backup:\n  repository: /srv/backup/borg/{service}\n"
    )

    code = main(["apply", str(inventory), "--yes"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Then on box: install backup tools: backups need borgbackup" in out
    assert "box: installing borgbackup" in err
    assert "reload-systemd units" in out
    assert main(["backup", "init", "-C", str(inventory)]) == 0, capsys.readouterr().err
    assert main(["apply", str(inventory), "--yes"]) == 0, capsys.readouterr().err
    enabled = systemd_host.sh("systemctl is-enabled allmende-backup-notes.timer")
    assert enabled.strip() == "enabled"
    assert "allmende-backup-notes.timer" in systemd_host.sh("systemctl list-timers --all")

    # The unit as systemd runs it: the real ExecStart, with the hardening of the unit file.
    start = ["systemctl", "start", "allmende-backup-notes.service"]
    done = subprocess.run(
        ["podman", "exec", systemd_host.name, *start], env=systemd_host.podman.env,
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    log = systemd_host.sh("journalctl -u allmende-backup-notes.service --no-pager", check=False)
    assert done.returncode == 0, done.stderr + log
    assert "stopping the service" in log and "started again after" in log
    assert systemd_host.sh("systemctl is-active notes-app.service").strip() == "active"
    runs = systemd_host.sh(
        "python3 -c \"import sqlite3; print(sqlite3.connect('/var/lib/allmende/state.sqlite')"
        ".execute('select kind, ok, archive from backup_runs').fetchall())\""
    )
    assert "('run', 1, 'notes-" in runs

    # And from the inventory: the archive the timer's unit made is there, and restores.
    assert main(["backup", "status", "-C", str(inventory)]) == 0
    assert "fresh: last archive notes-" in capsys.readouterr().out
    assert main(["backup", "verify", "-C", str(inventory)]) == 0, capsys.readouterr().err


def test_up_starts_the_watcher_last_and_its_unit_reads_the_backups(
    systemd_host: SystemdHost,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inventory = notes_on(
        systemd_host,
        tmp_path,
        monkeypatch,
        "backup:\n  repository: /srv/backup/watched/{service}\n"
        "watch:\n  host: box\n  intervals: {backup: 2s}\n",
    )
    try:
        site = ["--out", str(tmp_path / "site"), "--no-serve", "--yes"]
        code = main(["up", str(inventory), *site])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "restart watch: its plan or unit changes" in out
        # Last: after what it needs is installed and everything else is done.
        said = [line.strip() for line in err.splitlines() if line.startswith("  box: ")]
        assert said[-1] == "box: watch: restarted (its plan or unit changes)", said
        assert any("python3-aiohttp" in line for line in said[:-1]), said
        active = systemd_host.sh("systemctl is-active allmende-watch.service", check=False)
        log = systemd_host.sh("journalctl -u allmende-watch.service --no-pager", check=False)
        assert active.strip() == "active", log

        # The unit, under its hardening, reads the notes' repository on the host: nothing
        # backed up yet, then fresh once a backup ran.
        def recorded() -> str:
            return systemd_host.sh(f"python3 -c {shlex.quote(LAST_BACKUP_RESULT)}", check=False)

        assert main(["backup", "init", "-C", str(inventory)]) == 0, capsys.readouterr().err
        wait(lambda: "missing: the repository holds no archive" in recorded(), recorded)
        assert main(["backup", "run", "-C", str(inventory)]) == 0, capsys.readouterr().err
        wait(lambda: "('up', 'fresh: last archive notes-" in recorded(), recorded)
        # Applied again unchanged, the watcher is left running as it is.
        assert main(["up", str(inventory), *site]) == 0
        assert "restart watch" not in capsys.readouterr().out
    finally:
        # The host as the other test expects it, whichever runs first: no Borg, no watcher.
        systemd_host.sh(
            "systemctl disable --now allmende-watch.service; rm -rf /srv/backup/watched; "
            "DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq borgbackup",
            check=False,
        )


def wait(condition: Callable[[], bool], shown: Callable[[], str], timeout: float = 60) -> None:
    """Wait until ``condition()``; fail with what ``shown()`` says then."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s in vain: {shown()}", pytrace=False)
        time.sleep(0.5)
