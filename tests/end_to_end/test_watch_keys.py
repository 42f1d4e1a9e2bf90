"""The watch host asks another host how fresh its backups are, with a key that can do nothing
else: two real sshd hosts (``lookout`` watches, ``far`` runs the notes with a real Borg
repository), each in a mount namespace of its own whose root's home is a temp directory.

``allmende backup init`` makes the watch host's key in the secret store, ``apply`` puts its
forced ``authorized_keys`` line on far and its private half beside the watch unit's files on
lookout; the unit's own command line, run on lookout, reports the notes' backup missing (down),
then fresh after ``backup run`` on far; the key gets nothing but that answer (no command of its
own, no shell, no forwarding, no SFTP); far unreachable makes the probe down saying why.

Borg, sshd, podman and python3's aiohttp are installed by ``script/bootstrap test``."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.end_to_end.conftest import IMAGE, Podman
from tests.end_to_end.remote import SSH_PATH, RemoteHost, started
from tests.end_to_end.watch_world import process, wait_for
from tests.integration.backup_site import need_borg
from tests.ports import free_port

from allmende.inventory.hostpaths import HOST_STATE, WATCH_KNOWN_HOSTS, watch_key
from allmende.inventory.secrets import create_key
from allmende.render.watch import FRESHNESS_COMMAND, WATCH_COMMAND

ALLMENDE = str(Path(sys.executable).parent / "allmende")
PROBE = "notes/backup/notes"


def inventory(directory: Path, lookout: RemoteHost, far: RemoteHost) -> Path:
    """Write the collective: the notes on far, backed up there, watched from lookout."""
    root = directory / "inventory"
    files = {
        "allmende.yaml": {
            "name": "watchers",
            "notify": [{"webhook": "http://127.0.0.1:9/unused"}],
            "backup": {
                "repository": "/srv/backup/{service}",
                "encryption": "repokey-blake2",
                "schedule": "daily",
            },
            "watch": {
                "host": "lookout",
                "intervals": {"backup": "1s"},
                "timeout": "20s",
                "retries": 0,
                "recover": 1,
            },
        },
        "services/notes.yaml": {
            "description": "The plenum's notes",
            "host": "far",
            "components": {
                "app": {
                    "image": IMAGE,
                    "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                    "ports": {"http": 8080},
                    "publish": {"http": free_port()},
                    "volumes": {"data": "/www"},
                }
            },
            "backup": {"consistency": "stop"},
        },
    }
    for name, host in (("lookout", lookout), ("far", far)):
        files[f"hosts/{name}.yaml"] = {
            "description": f"the {name} host",
            "address": "127.0.0.1",
            "ssh": {"user": "root", "port": host.port},
            "engine": "compose",
            "runtime": "podman",
        }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def allmende(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ALLMENDE, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def last_result(lookout: RemoteHost) -> tuple[str, str] | None:
    """Return the watcher's last result of the notes' backup probe in lookout's state
    database (None before there is one)."""
    path = lookout.local(HOST_STATE)
    if not path.exists():
        return None
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        try:
            row = db.execute(
                "SELECT state, detail FROM watch_results WHERE probe = ? ORDER BY at DESC LIMIT 1",
                (PROBE,),
            ).fetchone()
        except sqlite3.OperationalError:  # the watcher has not made its tables yet
            return None
    return None if row is None else (str(row[0]), str(row[1]))


def result_is(lookout: RemoteHost, state: str, words: str) -> bool:
    found = last_result(lookout)
    return found is not None and found[0] == state and words in found[1]


@contextlib.contextmanager
def the_unit(lookout: RemoteHost, log: Path) -> Iterator[None]:
    """Run the watch unit's command line on lookout, with the unit's environment."""
    argv = ["nsenter", f"--target={lookout.pid}", "--mount", "--", *WATCH_COMMAND]
    env = {
        "PATH": SSH_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "ALLMENDE_STATE": HOST_STATE,
        "BORG_BASE_DIR": "/var/lib/allmende/borg",
    }
    with process(argv, log, env):
        yield


def with_key(lookout: RemoteHost, far: RemoteHost, *args: str) -> list[str]:
    """Return an ssh command line that logs in to far with the watch host's key."""
    return [
        *args,
        "-F",
        "/dev/null",
        "-i",
        str(lookout.local(watch_key("far"))),
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={lookout.local(WATCH_KNOWN_HOSTS)}",
        "-o",
        "StrictHostKeyChecking=yes",
    ]


def attempt(argv: list[str], input: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=60)


def test_the_watch_host_asks_another_host_with_a_key_good_for_nothing_else(
    tmp_path: Path, podman: Podman, tmp_path_factory: pytest.TempPathFactory
) -> None:
    need_borg()
    with contextlib.ExitStack() as hosts:
        lookout = hosts.enter_context(
            started(tmp_path_factory.mktemp("lookout"), podman, homes=True)
        )
        far_stack = contextlib.ExitStack()
        hosts.enter_context(far_stack)
        far = far_stack.enter_context(started(tmp_path_factory.mktemp("far"), podman, homes=True))
        # One admin key and one known_hosts for both, as an admin's laptop has.
        public = lookout.client_key.with_name("client_key.pub").read_text()
        with (far.directory / "authorized_keys").open("a") as keys:
            keys.write(public)
        with lookout.known_hosts.open("a") as known:
            known.write(far.known_hosts.read_text())
        root = inventory(tmp_path, lookout, far)
        env = {
            **os.environ,
            **lookout.connector_env,
            "ALLMENDE_AGE_KEY": str(tmp_path / "age.key"),
            "ALLMENDE_STATE": str(tmp_path / "state.sqlite"),
            "ALLMENDE_VERIFY_TIMEOUT": "60",
            "NO_COLOR": "1",
        }
        create_key(root, env)
        far.local("/srv/notes/data").mkdir(parents=True)
        (far.local("/srv/notes/data") / "index.html").write_text("the plenum's notes\n")

        made = allmende(env, "backup", "init", "-C", str(root))
        assert made.returncode == 0, made.stderr
        assert (root / "secrets/watch/far/ssh-key.age").exists()
        done = allmende(env, "apply", "-C", str(root), "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "authorize watch key" in done.stdout, done.stdout

        # far: the watch host's line, forced to the freshness answer, beside the admin's own.
        [line] = far.local("/root/.ssh/authorized_keys").read_text().splitlines()
        forced = " ".join(FRESHNESS_COMMAND)
        assert line.startswith(f'restrict,command="{forced}" ssh-ed25519 '), line
        assert line.endswith(" allmende-watch-lookout@far"), line
        # lookout: the private half beside the unit's plan, readable by root only.
        key = lookout.local(watch_key("far"))
        assert key.stat().st_mode & 0o777 == 0o600
        plan = json.loads(lookout.local("/etc/allmende/watch.json").read_text())
        assert [(r["host"], r["port"], r["user"]) for r in plan["remotes"]] == [
            ("far", far.port, "root")
        ]
        assert not plan["skipped"], plan["skipped"]

        # The key gets the freshness answer whatever it asks for, and nothing else.
        asked = attempt(
            [*with_key(lookout, far, "ssh"), "-p", str(far.port), "root@127.0.0.1", "id"]
        )
        assert asked.returncode == 0, asked.stderr
        assert "uid=" not in asked.stdout
        assert json.loads(asked.stdout)["notes"]["state"] == "missing", asked.stdout
        # A login shell, with and without a terminal: the answer again, or a refusal.
        login = [*with_key(lookout, far, "ssh"), "-p", str(far.port)]
        shell = attempt([*login, "root@127.0.0.1"], input="echo SHELL-$((6*7))\nexit\n")
        assert "SHELL-42" not in shell.stdout and "notes" in json.loads(shell.stdout), shell
        tty = attempt([*login, "-tt", "root@127.0.0.1"], input="echo SHELL-$((6*7))\nexit\n")
        assert "SHELL-42" not in tty.stdout and "PTY allocation request failed" in tty.stderr
        through = ["-W", f"127.0.0.1:{far.port}", "root@127.0.0.1"]
        forward = attempt([*with_key(lookout, far, "ssh"), "-p", str(far.port), *through])
        assert forward.returncode != 0 and "SSH-2.0" not in forward.stdout, forward
        assert "prohibited" in forward.stderr, forward.stderr
        sftp = attempt(
            [*with_key(lookout, far, "sftp"), "-P", str(far.port), "-b", "-", "root@127.0.0.1"],
            input="ls /\n",
        )
        assert sftp.returncode != 0 and "srv" not in sftp.stdout, sftp

        # The unit's own command line on lookout: missing first, fresh after a backup on far.
        log = tmp_path / "watch.log"
        with the_unit(lookout, log):
            wait_for(
                lambda: result_is(lookout, "down", "missing: the repository holds no archive"),
                90,
                f"the notes' backup missing: {last_result(lookout)}, {log.read_text()}",
            )
            run = allmende(env, "backup", "run", "-C", str(root), "notes")
            assert run.returncode == 0, run.stdout + run.stderr
            wait_for(
                lambda: result_is(lookout, "up", "fresh: last archive notes-"),
                60,
                f"the notes' backup fresh: {last_result(lookout)}, {log.read_text()}",
            )
            # far goes away: the probe says it could not ask it, and why.
            far_stack.close()
            wait_for(
                lambda: result_is(lookout, "down", "could not ask far: "),
                60,
                f"far unreachable: {last_result(lookout)}, {log.read_text()}",
            )
        _, detail = last_result(lookout) or ("", "")
        assert "Connection refused" in detail, detail
