"""`consistency: snapshot` on a real Incus, into a real Borg repository: the art school's way.

The host ``box`` is this machine's Incus (the session's pool, a bridge and profile of this
module's own), its files under a temp root standing in for ``/``. The service ``<tag>-files``
is a busybox system container whose volume ``www`` is a btrfs subvolume on a loop device
mounted at the service's directory. Applied for real, then:

* a backup takes an Incus snapshot of the container and a btrfs snapshot of the volume, and
  archives the container's files at ``srv/<service>/web.rootfs``; a file changed in the
  container, and one in the volume, once the snapshots are taken are in the archive as they
  were before; the snapshots are deleted afterwards;
* the restore drill compares the archive with its manifest;
* a restore in place puts the container's files back (the moment before kept as a snapshot)
  and the volume's (a subvolume still), and the container runs again;
* a backup that fails leaves no snapshot behind;
* a service backed up by ``stop`` has its container stopped for the copy and running after it,
  and a restore into a directory brings its volume's files back;
* the host's own timer command (allmende's zip application and the job file apply wrote) backs
  it up the same way, also under the unit's file system hardening (reproduced with a mount
  namespace: this machine's PID 1 is not systemd, so ``systemd-run`` cannot run it).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from tests.end_to_end.incus import Incus, free_subnet
from tests.integration.backup_site import need_borg

from allmende.actions import backup, backupinit
from allmende.actions.apply import plan_and_apply
from allmende.inventory.backups import passphrase_secret
from allmende.inventory.hostpaths import PROGRAM, incus_snapshot_rootfs
from allmende.inventory.secrets import SecretStore, create_key
from allmende.operations.instances import BACKUP
from allmende.render import systemd


@dataclass
class Studio:
    incus: Incus
    directory: Path
    env: dict[str, str]
    service: str

    @property
    def inventory(self) -> Path:
        return self.directory / "inventory"

    @property
    def root(self) -> Path:
        return self.directory / "root"

    @property
    def instance(self) -> str:
        return f"{self.service}-web"

    @property
    def pad(self) -> str:
        return f"{self.incus.tag}-pad"

    @property
    def repository(self) -> str:
        return str(self.directory / "repos" / self.service)

    def volume(self) -> Path:
        return self.root / "srv" / self.service / "www"

    def borg(self, *args: str) -> bytes:
        key = SecretStore(self.inventory, self.env).get(passphrase_secret(self.service))
        env = {**os.environ, "BORG_PASSPHRASE_FD": "0", "BORG_BASE_DIR": str(self.directory)}
        done = subprocess.run(["borg", *args], input=key, env=env, capture_output=True)
        assert done.returncode in (0, 1), done.stderr.decode()
        return done.stdout

    def archived(self, archive: str, path: str) -> str:
        return self.borg("extract", "--stdout", f"{self.repository}::{archive}", path).decode()

    def snapshots(self) -> list[str]:
        found = self.incus.query(f"/1.0/instances/{self.instance}/snapshots")
        return [str(s).rsplit("/", 1)[-1] for s in found]


def _write(studio: Studio, network: str, subnet: str) -> None:
    def put(path: str, data: dict[str, object]) -> None:
        target = studio.inventory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(data, sort_keys=False))

    put(
        "allmende.yaml",
        {
            "name": "studio",
            "backup": {
                "repository": str(studio.directory / "repos" / "{service}"),
                "consistency": "snapshot",
                "keep": {"daily": 7},
            },
        },
    )
    put(
        "hosts/box.yaml",
        {
            "description": "The old machine in the studio",
            "engine": "incus",
            "incus": {
                "pool": studio.incus.pool,
                "network": network,
                "subnet": subnet,
                "profile": f"{studio.incus.tag}-backups",
            },
        },
    )
    put(
        f"services/{studio.service}.yaml",
        {
            "description": "The studio's files",
            "host": "box",
            "components": {
                "web": {
                    "system": {"image": studio.incus.busybox},
                    "ports": {"http": 80},
                    "volumes": {"www": "/www"},
                }
            },
            "monitor": [],
        },
    )
    put(
        f"services/{studio.pad}.yaml",
        {
            "description": "The studio's pad, stopped for its backup",
            "host": "box",
            "components": {
                "app": {"system": {"image": studio.incus.busybox}, "volumes": {"pads": "/pads"}}
            },
            "backup": {"consistency": "stop"},
            "monitor": [],
        },
    )


@pytest.fixture(scope="module")
def studio(incus_world: Incus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    need_borg()
    directory = tmp_path_factory.mktemp("studio")
    made = Studio(incus_world, directory, {}, f"{incus_world.tag}-files")
    _write(made, f"{incus_world.tag}bk", free_subnet([incus_world.subnet]))
    made.env = {
        **os.environ,
        "ALLMENDE_HOST_ROOT": str(made.root),
        "ALLMENDE_STATE": str(directory / "state.sqlite"),
        "ALLMENDE_AGE_KEY": str(directory / "age.key"),
        "ALLMENDE_VERIFY_TIMEOUT": "60",
        "ALLMENDE_NOTIFY_TIMEOUT": "10",
    }
    create_key(made.inventory, made.env)
    home = made.root / "srv" / made.service
    home.mkdir(parents=True)
    image = directory / "btrfs.img"
    with image.open("wb") as handle:
        handle.truncate(128 * 2**20)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(home)], capture_output=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a btrfs: {mounted.stderr.decode()}", pytrace=False)
    try:
        subprocess.run(["btrfs", "subvolume", "create", str(made.volume())], check=True,
                       capture_output=True)  # fmt: skip
        (made.volume() / "index.html").write_text("the studio\n")
        for initialised in backupinit.init(backup.prepare(made.inventory, made.env), print):
            assert not initialised.error, initialised.error
        outcome = plan_and_apply(made.inventory, made.env, show=lambda _: None,
                                 confirm=lambda _: True)  # fmt: skip
        assert outcome.ok, outcome.results
        yield made
    finally:
        for instance in (made.instance, f"{made.pad}-app"):
            if made.incus.exists(instance):
                made.incus.run("delete", "--force", instance, check=False)
        subprocess.run(["umount", str(home)], check=False)


def test_a_backup_holds_the_container_as_it_was_at_its_snapshot(studio: Studio) -> None:
    studio.incus.inside(studio.instance, "echo before > /root/notes.txt")
    lines: list[str] = []

    def meanwhile(line: str) -> None:  # once the snapshots are taken, everything writes on
        lines.append(line)
        if ": archiving " in line:
            studio.incus.inside(studio.instance, "echo after > /root/notes.txt")
            (studio.volume() / "index.html").write_text("changed during the copy\n")

    [outcome] = backup.run(
        backup.prepare(studio.inventory, studio.env, [studio.service]), meanwhile
    )
    assert outcome.ok, outcome.message
    archive = outcome.value.archive
    prefix = f"srv/{studio.service}"
    assert studio.archived(archive, f"{prefix}/web.rootfs/root/notes.txt") == "before\n"
    busybox = studio.borg("extract", "--stdout", f"{studio.repository}::{archive}",
                          f"{prefix}/web.rootfs/bin/busybox")  # fmt: skip
    assert busybox.startswith(b"\x7fELF")
    assert studio.archived(archive, f"{prefix}/www/index.html") == "the studio\n"
    assert studio.incus.inside(studio.instance, "cat /root/notes.txt") == "after\n"
    # Neither snapshot is left, nor the directory the container's files were shown at.
    assert BACKUP not in studio.snapshots()
    assert not Path(incus_snapshot_rootfs(studio.incus.pool, studio.instance, BACKUP)).exists()
    assert not (studio.root / prefix / "web.rootfs").exists()
    assert not list((studio.root / prefix).glob("*.allmende-snapshot"))
    assert studio.incus.query(f"/1.0/instances/{studio.instance}")["status"] == "Running"

    # The manifest has the container's files as the snapshot had them; the drill matches them.
    manifest = json.loads(studio.archived(archive, f"{prefix}/dumps/allmende-files.json"))
    recorded = manifest["files"][f"{prefix}/web.rootfs/root/notes.txt"]
    assert recorded == [7, hashlib.sha256(b"before\n").hexdigest()]
    assert manifest["links"][f"{prefix}/web.rootfs/sbin/init"] == "../bin/busybox"
    [verified] = backup.verify(
        backup.prepare(studio.inventory, studio.env, [studio.service]), lines.append
    )
    assert verified.ok, verified.message
    assert verified.value.files == len(manifest["files"]) >= 5


def test_a_restore_in_place_brings_the_containers_files_back(studio: Studio) -> None:
    studio.incus.inside(studio.instance, "echo later > /root/notes.txt; rm /www/index.html")
    context = backup.prepare(studio.inventory, studio.env, [studio.service])
    lines: list[str] = []
    done = backup.restore_service(context, studio.service, lines.append, in_place=True)
    assert done.instances == [studio.instance]
    assert studio.incus.inside(studio.instance, "cat /root/notes.txt") == "before\n"
    assert studio.incus.inside(studio.instance, "cat /www/index.html") == "the studio\n"
    assert studio.incus.query(f"/1.0/instances/{studio.instance}")["status"] == "Running"
    volume = subprocess.run(["btrfs", "subvolume", "show", str(studio.volume())],
                            capture_output=True)  # fmt: skip
    assert volume.returncode == 0, "the volume is a subvolume still, to be snapshotted again"
    # The moment before the restore is a snapshot of the container.
    [kept] = [s for s in studio.snapshots() if s.startswith("before-restore-")]
    files = Path(incus_snapshot_rootfs(studio.incus.pool, studio.instance, kept))
    assert (files / "root/notes.txt").read_text() == "later\n"
    assert any(f"--to {kept}" in aside for aside in done.aside)


def test_a_failed_backup_leaves_no_snapshot(studio: Studio) -> None:
    store = SecretStore(studio.inventory, studio.env)
    right = store.get(passphrase_secret(studio.service))
    store.set(passphrase_secret(studio.service), b"not the passphrase")
    try:
        [outcome] = backup.run(
            backup.prepare(studio.inventory, studio.env, [studio.service]), lambda _: None
        )
    finally:
        store.set(passphrase_secret(studio.service), right)
    assert not outcome.ok and "the repository passphrase is wrong" in outcome.message
    assert BACKUP not in studio.snapshots()
    assert not (studio.root / "srv" / studio.service / "web.rootfs").exists()


def test_the_hosts_timer_command_backs_up_the_container_too(studio: Studio) -> None:
    studio.incus.inside(studio.instance, "echo from the timer > /root/notes.txt")
    words = [*systemd.BACKUP_COMMAND, studio.service]
    words[words.index(PROGRAM)] = str(studio.root / PROGRAM.lstrip("/"))
    env = {
        "PATH": os.environ["PATH"],
        "ALLMENDE_HOST_ROOT": str(studio.root),
        "ALLMENDE_NOTIFY_TIMEOUT": "10",
    }
    done = subprocess.run(words, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    archives = studio.borg("list", "--short", studio.repository).decode().split()
    notes = f"srv/{studio.service}/web.rootfs/root/notes.txt"
    assert studio.archived(archives[-1], notes) == "from the timer\n"
    assert BACKUP not in studio.snapshots()


#: Mounts whose subtrees ``ProtectSystem=strict`` leaves writable (the kernel's own).
API_MOUNTS = ("/dev", "/proc", "/sys")
#: Given pairs (``mounted`` and a mount point: made read-only; ``ro`` or ``rw`` and a path:
#: bound over itself, with what is mounted under it, so), then ``--`` and a command: sets the
#: mounts up in that order, makes sure the system is read-only, and runs the command.
CONFINE = (
    'set -e; mount --make-rslave /; while [ "$1" != -- ]; do '
    'if [ "$1" = mounted ]; then mount -o remount,bind,ro "$2" 2>/dev/null || :; '
    'else mount --rbind "$2" "$2"; mount -o "remount,bind,$1" "$2"; fi; shift 2; done; shift; '
    'if [ -w /etc ] || [ -w /var/lib ] || [ -w "$HOME" ]; then echo "not read-only" >&2; '
    'exit 99; fi; exec "$@"'
)


def unit_settings(text: str) -> dict[str, list[str]]:
    """Return each setting of a unit file and its values, in order."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, equals, setting = line.partition("=")
        if equals and not line.startswith("#"):
            found.setdefault(key, []).append(setting)
    return found


def mount_points() -> list[str]:
    """Return this machine's mount points but the kernel's own file systems', shortest
    first."""
    points = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if not any(point == a or point.startswith(f"{a}/") for a in API_MOUNTS):
            points.add(point)
    return sorted(points, key=len)


def test_the_timers_unit_backs_up_the_container_under_its_hardening(studio: Studio) -> None:
    """The unit's ExecStart under the unit's own file system hardening, as far as a machine
    whose PID 1 is not systemd reproduces it: a mount namespace (unshare) in which every mount
    is read-only (``ProtectSystem=strict``, ``ProtectHome=read-only``), the directory standing
    in for ``/`` too, but the unit's ``ReadWritePaths=``, its state and cache directories and
    /tmp and /var/tmp (``PrivateTmp=``: writable, though not private here, since the test's
    own files are there); without new privileges (``NoNewPrivileges=``, setpriv); with the
    unit's ``Environment=`` and a home that holds no Incus settings (a host whose
    administrator never ran ``incus``)."""
    unit = studio.root / "etc/systemd/system" / f"{systemd.unit_name(studio.service)}.service"
    settings = unit_settings(unit.read_text())
    for key, expected in (("ProtectSystem", "strict"), ("ProtectHome", "read-only"),
                          ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes")):  # fmt: skip
        assert settings[key] == [expected], key
    words = settings["ExecStart"][0].split()
    assert words == [*systemd.BACKUP_COMMAND, studio.service]
    words[words.index(PROGRAM)] = str(studio.root / PROGRAM.lstrip("/"))

    def on_host(path: str) -> str:
        path = path.lstrip("-")  # a path the unit skips when it does not exist
        return path if path.startswith(str(studio.directory)) else f"{studio.root}{path}"

    made = [on_host(f"/var/{kind}/{settings[f'{d}Directory'][0]}")
            for kind, d in (("lib", "State"), ("cache", "Cache"))]  # fmt: skip
    for path in made:
        Path(path).mkdir(parents=True, exist_ok=True)
    home = studio.directory / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ALLMENDE_HOST_ROOT": str(studio.root),
        "ALLMENDE_NOTIFY_TIMEOUT": "10",
    }
    for assignment in settings.get("Environment", []):
        key, _, setting = assignment.partition("=")
        env[key] = on_host(setting) if setting.startswith("/") else setting
    pairs = [
        *(("mounted", p) for p in mount_points()),
        ("rw", "/tmp"), ("rw", "/var/tmp"), ("ro", str(studio.root)), ("ro", str(home)),
        *(("rw", p) for p in [*made, *map(on_host, settings["ReadWritePaths"])]
          if Path(p).exists()),
    ]  # fmt: skip
    studio.incus.inside(studio.instance, "echo under the hardening > /root/notes.txt")
    confined = ["unshare", "--mount", "--propagation", "slave", "sh", "-c", CONFINE, "sh",
                *(word for pair in pairs for word in pair), "--",
                "setpriv", "--no-new-privs", *words]  # fmt: skip
    done = subprocess.run(confined, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not list(home.iterdir())  # nothing was written to the read-only home
    archives = studio.borg("list", "--short", studio.repository).decode().split()
    notes = f"srv/{studio.service}/web.rootfs/root/notes.txt"
    assert studio.archived(archives[-1], notes) == "under the hardening\n"
    assert BACKUP not in studio.snapshots()


def test_a_service_backed_up_by_stop_has_its_container_stopped_for_the_copy(
    studio: Studio,
) -> None:
    pad, volume = f"{studio.pad}-app", studio.root / "srv" / studio.pad / "pads"
    studio.incus.inside(pad, "echo the first pad > /pads/first.txt")
    seen: list[str] = []

    def meanwhile(line: str) -> None:
        if ": archiving " in line:
            seen.append(studio.incus.query(f"/1.0/instances/{pad}")["status"])

    context = backup.prepare(studio.inventory, studio.env, [studio.pad])
    [outcome] = backup.run(context, meanwhile)
    assert outcome.ok, outcome.message
    assert seen == ["Stopped"]
    assert studio.incus.query(f"/1.0/instances/{pad}")["status"] == "Running"
    assert outcome.value.downtime is not None and outcome.value.downtime > 0
    (volume / "first.txt").unlink()
    done = backup.restore_service(context, studio.pad, lambda _: None, into="/restored")
    assert done.paths == [f"/restored/srv/{studio.pad}/pads"]
    restored = studio.root / "restored" / "srv" / studio.pad / "pads" / "first.txt"
    assert restored.read_text() == "the first pad\n"
