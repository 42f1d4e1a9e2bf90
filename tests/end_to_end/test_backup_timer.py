"""The backup timer and the watcher on a host with systemd as PID 1 (a Debian container of the
test podman, on the machine's network, its sshd on 127.0.0.1 only): apply puts allmende, the
job, the passphrase and the units there and enables the timer; the unit's own ExecStart, under
its hardening, stops the service, backs it up and starts it again. The watch unit, under its
hardening (checked in force: a mount namespace of its own, read-only but allmende's state),
reads the host's own repository, and asks another host (an sshd of the machine in a mount
namespace of its own, on 127.0.0.1 as well) over SSH how fresh its backups are. Nothing is
installed by hand: apply installs Borg and the watcher's packages from Debian's (python3 the
host has, as Debian's own tools need it)."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.end_to_end.conftest import IMAGE as BUSYBOX
from tests.end_to_end.conftest import Podman
from tests.end_to_end.images import import_image, rootfs_tar
from tests.end_to_end.remote import started
from tests.integration.backup_site import need_borg
from tests.ports import free_port
from tests.sshd_setup import keygen

from allmende.cli.main import main
from allmende.inventory.hostpaths import STATE_DIR, WATCH_UNIT

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
    """A running container with systemd as PID 1 and sshd listening on 127.0.0.1:port."""

    name: str
    port: int
    key: Path
    known_hosts: Path
    podman: Podman

    def sh(self, command: str, check: bool = True) -> str:
        return self.podman.run("exec", self.name, "sh", "-c", command, check=check)


#: The watcher's last result of a backup probe (``{probe}``), read in the host's state database.
LAST_BACKUP_RESULT = """
import sqlite3
db = sqlite3.connect("/var/lib/allmende/state.sqlite")
print(db.execute(
    "SELECT state, detail FROM watch_results WHERE probe = '{probe}' "
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
    # The machine's network, so that 127.0.0.1 in there is where the other hosts of a test
    # listen too; sshd listens on 127.0.0.1:port only, from the start. CAP_SYS_ADMIN lets
    # systemd give units the mount namespaces of their hardening (ProtectSystem=, ...):
    # without it, it runs them unhardened and says so only in its debug log.
    listen = directory / "listen.conf"
    listen.write_text(f"ListenAddress 127.0.0.1:{port}\n")
    podman.run(
        "run", "-d", "--name", name, "--systemd=always", "--network", "host",
        "--cap-add", "SYS_ADMIN", "--volume", f"{listen}:/etc/ssh/sshd_config.d/listen.conf:ro",
        IMAGE,
    )  # fmt: skip
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


def box_inventory(
    host: SystemdHost,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    collective: str,
    files: Mapping[str, str],
    known_hosts: Path | None = None,
) -> Path:
    """Return an inventory whose host ``box`` is ``host`` (``collective``: the rest of
    allmende.yaml; ``files``: its other files), its age key made, allmende reaching ``box``
    with its key and ``known_hosts`` (default: box's alone)."""
    inventory = tmp_path / "inventory"
    box = (
        f"description: a systemd host\naddress: 127.0.0.1\nssh: {{user: root, port: "
        f"{host.port}}}\nengine: systemd\n"
    )
    every = {"allmende.yaml": f"name: testers\n{collective}", "hosts/box.yaml": box, **files}
    for path, text in every.items():
        (inventory / path).parent.mkdir(parents=True, exist_ok=True)
        (inventory / path).write_text(text)
    for name, value in {
        "ALLMENDE_AGE_KEY": str(tmp_path / "age.key"),
        "ALLMENDE_STATE": str(tmp_path / "state.sqlite"),
        "ALLMENDE_KNOWN_HOSTS": str(known_hosts or host.known_hosts),
        "ALLMENDE_SSH_KEY": str(host.key),
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["secret", "init", "--inventory", str(inventory)]) == 0
    return inventory


def notes_on(
    host: SystemdHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collective: str
) -> Path:
    """Return an inventory whose host ``box`` is ``host``, running the notes with data there
    (``collective``: the rest of allmende.yaml), its age key made, allmende reaching ``box``."""
    inventory = box_inventory(
        host, tmp_path, monkeypatch, collective, {"services/notes.yaml": NOTES}
    )
    host.sh("mkdir -p /srv/notes/data && echo 'buy milk' > /srv/notes/data/todo.txt")
    return inventory


def test_apply_installs_the_timer_and_its_unit_backs_up_under_its_hardening(
    systemd_host: SystemdHost,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    need_borg()
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
        # Really under its hardening: the repositories it reads are read-only to it too.
        assert hardened(systemd_host, WATCH_UNIT, "/srv", "/root", STATE_DIR) == {
            "/srv": "ro", "/root": "ro", STATE_DIR: "rw", "NoNewPrivs": "1"
        }  # fmt: skip

        # The unit, under its hardening, reads the notes' repository on the host: nothing
        # backed up yet, then fresh once a backup ran.
        def recorded() -> str:
            return last_backup_result(systemd_host, "notes/backup/notes")

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


#: The service of the other host the watch host asks about (engine compose, podman there).
MINUTES = f"""\
description: Minutes of the plenum
host: far
components:
  app:
    image: {BUSYBOX}
    command: [httpd, -f, -p, "8080", -h, /www]
    volumes: {{data: /www}}
backup: {{consistency: stop}}
"""


def test_the_watch_unit_asks_another_host_over_ssh_under_its_hardening(
    systemd_host: SystemdHost,
    podman: Podman,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """box, the systemd host, watches; far (an sshd of the machine in a mount namespace of its
    own, on 127.0.0.1 as box's is) runs the minutes and keeps their repository and passphrase.
    The watch unit, under its hardening, asks far with its forced key: missing, then fresh."""
    need_borg()
    far_files = tmp_path_factory.mktemp("far")
    with started(far_files, podman, homes=True, keep=[systemd_host.name]) as far:
        # The admin's key and known_hosts reach both hosts, as an admin's laptop does.
        with (far.directory / "authorized_keys").open("a") as keys:
            keys.write(systemd_host.key.with_name("key.pub").read_text())
        known = tmp_path / "known_hosts"
        known.write_text(systemd_host.known_hosts.read_text() + far.known_hosts.read_text())
        far_file = (
            f"description: the host of the minutes\naddress: 127.0.0.1\n"
            f"ssh: {far.inventory_ssh}\nengine: compose\nruntime: podman\n"
        )
        inventory = box_inventory(
            systemd_host,
            tmp_path,
            monkeypatch,
            "backup:\n  repository: /srv/backup/{service}\n"
            "watch:\n  host: box\n  intervals: {backup: 2s}\n",
            {"hosts/far.yaml": far_file, "services/minutes.yaml": MINUTES},
            known,
        )
        far.local("/srv/minutes/data").mkdir(parents=True)
        (far.local("/srv/minutes/data") / "index.html").write_text("the plenum's minutes\n")
        try:
            assert main(["backup", "init", "-C", str(inventory)]) == 0, capsys.readouterr().err
            code = main(["apply", str(inventory), "--yes"])
            out, err = capsys.readouterr()
            assert code == 0, err
            assert "authorize watch key" in out, out
            # The hardening is in force, not merely written: systemd skips what it cannot set
            # up in a container without the privilege to, and says so only in its debug log.
            assert hardened(systemd_host, WATCH_UNIT, "/etc/allmende", "/root", STATE_DIR) == {
                "/etc/allmende": "ro", "/root": "ro", STATE_DIR: "rw", "NoNewPrivs": "1"
            }  # fmt: skip

            def recorded() -> str:
                return last_backup_result(systemd_host, "minutes/backup/minutes")

            def shown() -> str:
                unit = "journalctl -u allmende-watch.service --no-pager"
                return recorded() + systemd_host.sh(unit, check=False)

            # Nothing of far's is on box but the key and far's host key: no Borg, no
            # passphrase, no repository; what it learns, far answers.
            assert "borg" not in systemd_host.sh("command -v borg", check=False)
            missing = "('down', 'missing: the repository holds no archive"
            wait(lambda: missing in recorded(), shown)
            assert main(["backup", "run", "-C", str(inventory)]) == 0, capsys.readouterr().err
            wait(lambda: "('up', 'fresh: last archive minutes-" in recorded(), shown)
        finally:
            # The host as the other tests expect it: no watcher, no keys of far's.
            systemd_host.sh(
                "systemctl disable --now allmende-watch.service; rm -rf /etc/allmende/watch",
                check=False,
            )
    # far, gone, took its containers but not box's, which the other tests go on using.
    running = systemd_host.sh("systemctl is-system-running", check=False).strip()
    assert running in ("running", "degraded"), running


#: How the main process of a unit (``$1``) sees the file system: whether it has a mount
#: namespace of its own, whether it can write in each of the other arguments, and whether
#: it may gain privileges.
HARDENING = """
pid=$(systemctl show -p MainPID --value "$1") && shift
[ "$(readlink /proc/$pid/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" ] && echo own-namespace
for path in "$@"; do
  if nsenter --target "$pid" --mount -- touch "$path/.written" 2>/dev/null; then
    nsenter --target "$pid" --mount -- rm "$path/.written"
    echo "$path rw"
  else
    echo "$path ro"
  fi
done
awk '$1 == "NoNewPrivs:" {print "NoNewPrivs", $2}' /proc/$pid/status
"""


def hardened(host: SystemdHost, unit: str, *paths: str) -> dict[str, str]:
    """Return whether ``unit``'s running main process can write in each of ``paths`` (rw or
    ro) and its NoNewPrivs; fail unless it has a mount namespace of its own."""
    said = host.podman.run("exec", host.name, "sh", "-c", HARDENING, "sh", unit, *paths)
    lines = said.splitlines()
    assert lines and lines[0] == "own-namespace", f"{unit} shares the host's mounts: {said}"
    return dict(line.split() for line in lines[1:])


def last_backup_result(host: SystemdHost, probe: str) -> str:
    """Return the watcher's last result of ``probe`` in ``host``'s state database."""
    script = LAST_BACKUP_RESULT.format(probe=probe)
    return host.sh(f"python3 -c {shlex.quote(script)}", check=False)


def wait(condition: Callable[[], bool], shown: Callable[[], str], timeout: float = 60) -> None:
    """Wait until ``condition()``; fail with what ``shown()`` says then."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s in vain: {shown()}", pytrace=False)
        time.sleep(0.5)
