"""The watch host's keys to the hosts it asks how fresh their backups are: made once in the
secret store, the private half and the host keys for the watch host, the forced line for the
asked host, kept among the SSH user's own lines; and how the watch host reads the answer."""

from __future__ import annotations

import asyncio
import pwd
import shutil
from pathlib import Path

import pytest

from allmende.actions.backupinit import watch_keys
from allmende.actions.watchhost import Asker, backup_reader
from allmende.connectors.base import Ran
from allmende.inventory.load import load
from allmende.inventory.secrets import SecretStore, create_key
from allmende.inventory.sshkeys import public_of
from allmende.inventory.watchspec import Plan, Probe, Remote
from allmende.onhost import authorized
from allmende.plan.backuptools import install_actions
from allmende.plan.changes import Change
from allmende.plan.watchkeys import authorize_actions, watch_files
from allmende.render.watch_plan import plan
from tests.conftest import BASE
from tests.memory import MemoryHost

FORCED = (
    'restrict,command="/usr/bin/python3 -I /usr/local/lib/allmende/allmende.pyz backup freshness"'
)


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def watched(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Return the base inventory watched from the gateway (every backup is on rack), with an
    age key, and its environment (rack's host key in the admin's known_hosts)."""
    root = Path(shutil.copytree(BASE, tmp_path / "inventory"))
    collective = root / "allmende.yaml"
    collective.write_text(collective.read_text() + "watch:\n  host: gateway\n")
    known = tmp_path / "known_hosts"
    known.write_text(f"192.0.2.10 {HOST_KEY}\n[192.0.2.99]:2222 {OTHER_KEY}\n")
    env = {"ALLMENDE_AGE_KEY": str(tmp_path / "age.key"), "ALLMENDE_KNOWN_HOSTS": str(known)}
    create_key(root, env)
    return root, env


def test_the_key_is_made_once_and_delivered_to_both_ends(tmp_path: Path) -> None:
    root, env = watched(tmp_path)
    store = SecretStore(root, env)
    assert watch_files(load(root, env), root, env, ["gateway", "rack"]) == {}
    before = plan(load(root, env), where="gateway").remotes[0]
    assert before.missing.startswith("no key to ask it with yet")
    assert watch_keys(load(root, env), store) == ["rack"]
    assert watch_keys(load(root, env), store) == []  # kept, not made again
    inventory = load(root, env)
    assert plan(inventory, where="gateway").remotes[0].missing == ""
    files = watch_files(inventory, root, env, ["gateway", "rack"])
    assert set(files) == {
        "gateway/etc/allmende/watch/rack.ssh-key",
        "gateway/etc/allmende/watch/known_hosts",
        "rack/etc/allmende/watch/authorized_keys",
    }
    private = files["gateway/etc/allmende/watch/rack.ssh-key"]
    assert private.mode == 0o600 and private.content == store.get("watch/rack/ssh-key")
    # rack's host key as the admin's known_hosts trusts it, and no other host's.
    known = files["gateway/etc/allmende/watch/known_hosts"].content.decode()
    assert "\n192.0.2.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqq" in known
    assert "192.0.2.99" not in known
    record = files["rack/etc/allmende/watch/authorized_keys"].content.decode()
    [line] = [x for x in record.splitlines() if not x.startswith("#")]
    public = public_of(private.content, "allmende-watch-gateway@rack")
    assert line == f"{FORCED} {public}"
    # Each host gets only its own end.
    assert set(watch_files(inventory, root, env, ["rack"])) == {
        "rack/etc/allmende/watch/authorized_keys"
    }


def test_a_host_without_a_key_in_known_hosts_is_said_so(tmp_path: Path) -> None:
    root, env = watched(tmp_path)
    env["ALLMENDE_KNOWN_HOSTS"] = str(tmp_path / "none")
    watch_keys(load(root, env), SecretStore(root, env))
    files = watch_files(load(root, env), root, env, ["gateway"])
    known = files["gateway/etc/allmende/watch/known_hosts"].content.decode()
    assert f"# rack: no host key for it in {tmp_path / 'none'}" in known


def test_a_host_not_reached_over_ssh_is_skipped_not_asked(tmp_path: Path) -> None:
    root, _ = watched(tmp_path)
    rack = root / "hosts" / "rack.yaml"
    rack.write_text(rack.read_text().replace("ssh: {user: root}\n", ""))
    made = plan(load(root, {}), where="gateway")
    assert made.remotes == ()
    assert not [p for p in made.probes if p.kind == "backup"]
    assert "git: backup freshness is read from the inventory" in " ".join(made.skipped)


ADMIN = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl admin@laptop"
)
OLD = f"{FORCED} ssh-ed25519 AAAAold allmende-watch-gateway@rack"
NEW = f"{FORCED} ssh-ed25519 AAAAnew allmende-watch-gateway@rack"


def test_only_allmendes_lines_are_replaced_among_the_users_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    me = list(pwd.getpwuid(0))
    home = tmp_path / "home"
    home.mkdir()
    me[5] = str(home)
    monkeypatch.setattr(authorized.pwd, "getpwnam", lambda user: pwd.struct_passwd(me))
    keys = home / ".ssh" / "authorized_keys"
    mark = "allmende-watch-"
    assert authorized.main(["set", "root", mark, NEW]) == 0  # no ~/.ssh yet
    assert keys.read_text() == f"{NEW}\n"
    assert keys.stat().st_mode & 0o777 == 0o600 and keys.parent.stat().st_mode & 0o777 == 0o700
    keys.write_text(f"# the admins\n{ADMIN}\n{OLD}\n")
    keys.chmod(0o640)
    assert authorized.main(["show", "root", mark]) == 0
    assert capsys.readouterr().out == f"{OLD}\n"
    assert authorized.main(["set", "root", mark, NEW]) == 0
    assert keys.read_text() == f"# the admins\n{ADMIN}\n{NEW}\n"
    assert keys.stat().st_mode & 0o777 == 0o640  # its mode kept
    inode = keys.stat().st_ino
    assert authorized.main(["set", "root", mark, NEW]) == 0
    assert keys.stat().st_ino == inode  # unchanged: not written again
    assert authorized.main(["set", "root", mark]) == 0
    assert keys.read_text() == f"# the admins\n{ADMIN}\n"
    keys.unlink()
    keys.symlink_to(tmp_path / "elsewhere")
    assert authorized.main(["set", "root", mark, NEW]) == 1
    assert "symbolic link" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()


def test_apply_authorizes_only_when_the_users_file_differs(tmp_path: Path) -> None:
    root, env = watched(tmp_path)
    watch_keys(load(root, env), SecretStore(root, env))
    inventory = load(root, env)
    wanted = watch_files(inventory, root, env, ["rack"])
    record = {
        "/etc/allmende/watch/authorized_keys": wanted["rack/etc/allmende/watch/authorized_keys"]
    }
    line = next(
        x
        for x in record["/etc/allmende/watch/authorized_keys"].content.decode().splitlines()
        if not x.startswith("#")
    )
    rack = MemoryHost("rack")
    shown = {"out": b""}
    rack.answer(("python3", "-I", "-S", "-c"), lambda argv, given: Ran(0, shown["out"], b""))

    async def actions(changes: list[Change]) -> list[tuple[tuple[str, ...], ...]]:
        found = await authorize_actions(rack, inventory, changes, record)
        return [a.commands for a in found] + [a.undo for a in found]

    [commands, undo] = asyncio.run(actions([]))
    assert commands[0][-4:] == ("set", "root", "allmende-watch-", line)
    assert undo[0][-3:] == ("set", "root", "allmende-watch-")  # nothing of ours there before
    shown["out"] = f"{line}\n".encode()
    assert asyncio.run(actions([])) == []
    # The record goes (no watch host any more): the line goes too.
    gone = Change("delete", "rack", "/etc/allmende/watch/authorized_keys", "")
    found = asyncio.run(authorize_actions(rack, inventory, [gone], {}))
    assert [a.commands[0][-3:] for a in found] == [("set", "root", "allmende-watch-")]
    assert asyncio.run(authorize_actions(rack, inventory, [], {})) == []


def probe(service: str, host: str = "rack") -> Probe:
    return Probe(f"{service}/backup/{service}", "backup", service, host, service, 1, 5, 0)


def test_the_watch_host_reads_the_answer_once_for_all_services_of_a_host(tmp_path: Path) -> None:
    remote = Remote("rack", "127.0.0.1", 22, "root", "/k", "/kh")
    asked = []

    class Counting(Asker):
        async def _ask(self, remote: Remote, timeout: float) -> dict[str, object] | str:
            asked.append(remote.host)
            await asyncio.sleep(0.05)
            return {"wiki": {"state": "fresh", "detail": "fresh: last archive", "age": 2.5}}

    read = backup_reader(str(tmp_path), Plan("c", (), remotes=(remote,)), Counting("/"))

    async def both() -> list[tuple[str, str, float | None]]:
        return list(await asyncio.gather(read(probe("wiki")), read(probe("git"))))

    wiki, git = asyncio.run(both())
    assert asked == ["rack"]
    assert wiki == ("fresh", "fresh: last archive", 2.5)
    assert git[0] == "unreadable" and "rack has no backup job of git" in git[1]


def test_a_host_that_cannot_be_asked_says_why(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("not a key\n")
    known = tmp_path / "known_hosts"
    known.write_text("")
    closed = Remote("rack", "127.0.0.1", 1, "root", str(key), str(known))
    keyless = Remote("far", "127.0.0.1", 1, "root", "", "", missing="no key to ask it with yet")
    read = backup_reader("/", Plan("c", (), remotes=(closed, keyless)))
    state, detail, _ = asyncio.run(read(probe("wiki")))
    assert state == "unreadable" and detail.startswith("could not ask rack: "), detail
    assert "Connection refused" in detail, detail
    state, detail, _ = asyncio.run(read(probe("notes", "far")))
    assert detail == "could not ask far: no key to ask it with yet"


def test_a_watch_host_that_asks_other_hosts_gets_the_ssh_client(tmp_path: Path) -> None:
    root, env = watched(tmp_path)
    watch_keys(load(root, env), SecretStore(root, env))
    files = watch_files(load(root, env), root, env, ["gateway"])
    wanted = {p.removeprefix("gateway"): r for p, r in files.items()}
    wanted |= {"/etc/allmende/watch.json": b"", "/usr/local/lib/allmende/allmende.pyz": b""}
    gateway = MemoryHost("gateway", programs={("apt-get",): Ran(0, b"", b"")})
    [install] = asyncio.run(install_actions(gateway, wanted))
    assert "openssh-client" in install.commands[-1]
    assert install.reason.startswith("the watcher and asking other hosts need ")
