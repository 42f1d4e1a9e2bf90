"""Backup units: which services get them, what the timer and service say, escaping, no secrets,
and every unit of every inventory through the real `systemd-analyze verify` (which runs without
a running systemd: the units are checked inside a scratch root)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.render import systemd
from allmende.render.output import Rendered
from tests.conftest import BASE, EXAMPLES, FIXTURES

INVENTORIES = sorted(
    [*(FIXTURES / "valid").iterdir(), *(p for p in EXAMPLES.iterdir() if p.is_dir())]
)
UNITS = "rack/etc/systemd/system/allmende-backup-"

#: Every key a backup unit may hold, by section: anything else is a typo systemd would ignore.
KNOWN = {
    "Unit": {"Description", "Wants", "After"},
    "Service": {
        "Type",
        "ExecStart",
        "Nice",
        "IOSchedulingClass",
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RestrictSUIDSGID",
        "LockPersonality",
        "StateDirectory",
        "CacheDirectory",
        "ReadWritePaths",
        "Environment",
    },
    "Timer": {"OnCalendar", "RandomizedDelaySec", "Persistent"},
    "Install": {"WantedBy"},
}


def parse(text: str) -> dict[str, list[tuple[str, str]]]:
    """Parse a unit file strictly: comments, blank lines, [sections] and Key=value lines only."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            assert current in KNOWN and current not in sections, f"section {line}"
            sections[current] = []
            continue
        key, equals, value = line.partition("=")
        assert equals and current, f"not a setting inside a section: {line!r}"
        assert key in KNOWN[current], f"unknown key {key} in [{current}]"
        assert not value.endswith("\\"), f"a line continues: {line!r}"
        sections[current].append((key, value))
    return sections


def settings(text: str, section: str) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for key, value in parse(text)[section]:
        result.setdefault(key, []).append(value)
    return result


def with_files(root: Path, files: dict[str, str]) -> Inventory:
    for name, text in files.items():
        (root / name).write_text(text)
    return load(root, {})


def test_services_with_data_a_consistency_and_a_schedule_get_units() -> None:
    files = systemd.render(load(BASE, {}))
    assert sorted(files) == [
        f"{UNITS}{name}.{kind}"
        for name in ("database", "git", "wiki")
        for kind in ("service", "timer")
    ]
    # pages holds no data; the rest get the collective's daily schedule
    assert systemd.backed_up(load(BASE, {})) == {
        "database": ("dump", "daily"),
        "git": ("snapshot", "daily"),
        "wiki": ("stop", "daily"),
    }


def test_no_repository_or_no_backup_no_units(nordlicht: Path) -> None:
    wiki = (nordlicht / "services/wiki.yaml").read_text()
    inventory = with_files(
        nordlicht,
        {
            "services/wiki.yaml": wiki.replace("consistency: stop", "consistency: none"),
            "allmende.yaml": (nordlicht / "allmende.yaml")
            .read_text()
            .replace("  schedule: daily\n", ""),
        },
    )
    # Without a schedule anywhere, daily; wiki opted out.
    assert systemd.backed_up(inventory) == {
        "database": ("dump", "daily"),
        "git": ("snapshot", "daily"),
    }
    no_repository = (
        (nordlicht / "allmende.yaml")
        .read_text()
        .replace("  repository: ssh://borg@vault.nordlicht.example/srv/borg/{service}\n", "")
    )
    inventory = with_files(nordlicht, {"allmende.yaml": no_repository})
    assert systemd.backed_up(inventory) == {}


def test_the_service_unit_runs_the_backup_command_hardened() -> None:
    files = systemd.render(load(BASE, {}))
    text = files[f"{UNITS}git.service"].content.decode()
    unit = settings(text, "Unit")
    assert unit["Wants"] == unit["After"] == ["network-online.target"]
    service = settings(text, "Service")
    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"] == [
        "/usr/bin/python3 -I /usr/local/lib/allmende/allmende.pyz backup job git"
    ]
    for key, value in (
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "read-only"),
        ("PrivateTmp", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("Nice", "10"),
        ("IOSchedulingClass", "idle"),
        ("StateDirectory", "allmende"),
        ("CacheDirectory", "allmende"),
        # The Incus client's settings, which it cannot keep in the read-only home.
        ("Environment", "INCUS_CONF=/var/cache/allmende/incus"),
    ):
        assert service[key] == [value], key
    # The service's directory, where the dumps and the manifest pass through named pipes; the
    # volumes are only read.
    assert service["ReadWritePaths"] == ["-/srv/git"]
    assert text.startswith("# Generated by allmende for nordlicht from allmende.yaml, hosts/rack")
    assert "passphrase from the file apply wrote" in text


def test_the_timer_follows_the_schedule() -> None:
    files = systemd.render(load(EXAMPLES / "softwerke", {}))
    timer = settings(
        files["elbe/etc/systemd/system/allmende-backup-monitoring.timer"].content.decode(), "Timer"
    )
    assert timer == {
        "OnCalendar": ["*-*-* 05:35:00"],
        "RandomizedDelaySec": ["15min"],
        "Persistent": ["true"],
    }
    timer = settings(
        files["elbe/etc/systemd/system/allmende-backup-pad.timer"].content.decode(), "Timer"
    )
    assert timer["OnCalendar"] == ["*-*-* 00,03,06,09,12,15,18,21:00:00"]
    install = settings(
        files["elbe/etc/systemd/system/allmende-backup-pad.timer"].content.decode(), "Install"
    )
    assert install == {"WantedBy": ["timers.target"]}


def test_percent_signs_are_doubled_and_odd_paths_quoted() -> None:
    assert systemd.value("50% off") == "50%% off"
    assert systemd.value("two\nlines") == "two lines"
    assert systemd.word("-/srv/a b/100%") == '"-/srv/a b/100%%"'
    assert systemd.word('-/srv/say "hi"\\') == '"-/srv/say \\"hi\\"\\\\"'
    assert systemd.word("-/srv/wiki/images") == "-/srv/wiki/images"


def test_no_unit_holds_a_secret() -> None:
    for root in INVENTORIES:
        for path, file in systemd.render(load(root, {})).items():
            lines = file.content.decode().splitlines()
            # The only variable a unit sets is where the Incus client keeps its settings.
            settings_dir = f"Environment=INCUS_CONF={systemd.INCUS_CONF}"
            body = "\n".join(
                line for line in lines if not line.startswith("#") and line != settings_dir
            ).upper()
            assert "ENVIRONMENT" not in body and "PASSPHRASE" not in body, path
            assert file.mode == 0o644


def test_odd_volume_paths_and_schedules_survive_systemd(nordlicht: Path, tmp_path: Path) -> None:
    wiki = (nordlicht / "services/wiki.yaml").read_text()
    wiki = wiki.replace(
        "consistency: stop",
        "consistency: stop\n  schedule: Mon..Fri *-*-* 02:30\n"
        '  repository: "/mnt/big/borg 100% {service}"',
    )
    inventory = with_files(nordlicht, {"services/wiki.yaml": wiki})
    files = systemd.render(inventory)
    service = files[f"{UNITS}wiki.service"].content.decode()
    assert 'ReadWritePaths="-/mnt/big/borg 100%% wiki"' in service
    verify(files, tmp_path)


def verify(files: dict[str, Rendered], scratch: Path) -> None:
    """Run `systemd-analyze verify` on the units of each host inside a scratch root that has
    systemd's own units and a stand-in for the backup command; fail on any complaint."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (script/bootstrap)")
    hosts = sorted({path.split("/", 1)[0] for path in files})
    for host in hosts:
        root = scratch / host
        (root / "usr/lib/systemd").mkdir(parents=True)
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
        command = root / systemd.BACKUP_COMMAND[0].lstrip("/")
        command.parent.mkdir(parents=True)
        command.write_text("#!/bin/sh\n")
        command.chmod(0o755)
        names = []
        for path, file in files.items():
            if path.startswith(f"{host}/"):
                target = root / path.split("/", 1)[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(file.content)
                names.append(target.name)
        done = subprocess.run(
            [analyze, "verify", "--man=no", f"--root={root}", *sorted(names)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), (
            f"{host}: {done.stdout}{done.stderr}"
        )


def test_verify_finds_a_mistake(tmp_path: Path) -> None:
    files = systemd.render(load(BASE, {}))
    path = f"{UNITS}wiki.service"
    broken = files[path].content.replace(b"ProtectSystem=", b"ProtectSytem=")
    files[path] = Rendered(broken, files[path].sources)
    with pytest.raises(AssertionError, match="Unknown key 'ProtectSytem'"):
        verify(files, tmp_path)


@pytest.mark.parametrize("root", INVENTORIES, ids=lambda p: p.name)
def test_every_unit_passes_systemd_analyze_verify(root: Path, tmp_path: Path) -> None:
    files = systemd.render(load(root, {}))
    for file in files.values():
        parse(file.content.decode())
    verify(files, tmp_path)


def test_every_schedule_is_a_calendar_systemd_understands() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (script/bootstrap)")
    schedules = {
        schedule
        for root in INVENTORIES
        for _, schedule in systemd.backed_up(load(root, {})).values()
    }
    assert {"daily", "weekly", "*-*-* 05:35:00"} <= schedules
    done = subprocess.run(
        [analyze, "calendar", *sorted(schedules | {"hourly", "monthly"})],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_a_stop_backup_on_podman_has_no_mount_namespace_of_its_own() -> None:
    files = systemd.render(load(EXAMPLES / "demo", {}))
    wiki = settings(files["local/etc/systemd/system/allmende-backup-wiki.service"].content.decode(),
                    "Service")  # fmt: skip
    # podman must mount the file systems of the containers it starts where the host sees them
    for namespaced in ("ProtectSystem", "ProtectHome", "PrivateTmp", "ProtectControlGroups"):
        assert namespaced not in wiki, namespaced
    assert "ReadWritePaths" not in wiki
    assert wiki["NoNewPrivileges"] == ["yes"] and wiki["ProtectKernelModules"] == ["yes"]
    # a dump runs `podman exec`, which keeps its session's state in podman's own files
    database = settings(
        files["local/etc/systemd/system/allmende-backup-database.service"].content.decode(),
        "Service",
    )
    assert "ProtectSystem" not in database
    # on a docker host the unit keeps its namespace: docker does it all in its daemon
    docker = systemd.render(load(BASE, {}))[f"{UNITS}database.service"].content.decode()
    assert settings(docker, "Service")["ProtectSystem"] == ["strict"]
