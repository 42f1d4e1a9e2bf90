"""Plans from desired against observed files, with a fake connector (our own logic only)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from allmende.connectors.base import Connector
from allmende.errors import CommandFailed, CommandTimedOut, ToolMissing, UserError
from allmende.inventory.hostpaths import HASH_KEY, MANIFEST
from allmende.plan.changes import HIDDEN, Change, Plan, file_change, sha256, unified_diff
from allmende.plan.digest import HostKey
from allmende.plan.observe import manifest_entries, observe, wanted_by_host
from allmende.render.output import Rendered
from tests.memory import MemoryHost


def rendered(text: str, mode: int = 0o644, source: str = "services/wiki.yaml") -> Rendered:
    return Rendered(text.encode(), (source,), mode)


def manifest(host: str, **paths: str) -> tuple[bytes, int]:
    files = {path: {"sha256": "", "sources": [source]} for path, source in paths.items()}
    return json.dumps({"version": 1, "hosts": {host: files}}).encode(), 0o644


def run_plan(
    wanted: dict[str, dict[str, Rendered]], hosts: dict[str, MemoryHost], source: str | None = None
) -> Plan:
    return asyncio.run(observe(wanted, hosts.__getitem__, source))


def test_create_update_unchanged_and_mode() -> None:
    host = MemoryHost(
        "rack",
        {
            "/srv/a/compose.yaml": (b"same\n", 0o644),
            "/srv/b/compose.yaml": (b"old\n", 0o644),
            "/srv/c/compose.yaml": (b"same\n", 0o600),
        },
    )
    wanted = {
        "rack": {
            "/srv/a/compose.yaml": rendered("same\n"),
            "/srv/b/compose.yaml": rendered("new\n"),
            "/srv/c/compose.yaml": rendered("same\n"),
            "/srv/d/compose.yaml": rendered("fresh\n"),
        }
    }
    plan = run_plan(wanted, {"rack": host})
    assert [(c.kind, c.path) for c in plan.changes] == [
        ("update", "/srv/b/compose.yaml"),
        ("update", "/srv/c/compose.yaml"),
        ("create", "/srv/d/compose.yaml"),
    ]
    update, mode, create = plan.changes
    assert update.diff.endswith("-old\n+new\n")
    assert mode.diff == "" and mode.shown_diff() == HIDDEN + "mode 0600 -> 0644\n"
    assert create.diff.startswith("--- /dev/null\n+++ rack:/srv/d/compose.yaml (rendered)\n")
    assert host.reads == [HASH_KEY, "/srv/b/compose.yaml", MANIFEST], "only differing files"
    assert host.closed and plan.hosts == ("rack",)


def test_deletes_come_from_the_manifest_only_under_managed_paths() -> None:
    files = {
        "/srv/gone/compose.yaml": (b"bye\n", 0o644),
        "/etc/passwd": (b"root\n", 0o644),
        MANIFEST: manifest(
            "rack",
            **{
                "/srv/gone/compose.yaml": "services/gone.yaml",
                "/srv/absent/compose.yaml": "services/gone.yaml",
                "/etc/passwd": "services/gone.yaml",
                "/srv/kept/compose.yaml": "services/kept.yaml",
            },
        ),
    }
    files["/srv/kept/compose.yaml"] = (b"k\n", 0o644)
    wanted = {"rack": {"/srv/kept/compose.yaml": rendered("k\n")}}
    plan = run_plan(wanted, {"rack": MemoryHost("rack", files)})
    assert [(c.kind, c.path) for c in plan.changes] == [("delete", "/srv/gone/compose.yaml")]
    assert plan.changes[0].diff.endswith("-bye\n")
    narrowed = run_plan(wanted, {"rack": MemoryHost("rack", files)}, source="services/kept.yaml")
    assert narrowed.changes == ()


def test_the_manifest_of_another_host_on_the_same_machine_is_ignored() -> None:
    files = {
        "/srv/x/compose.yaml": (b"x\n", 0o644),
        MANIFEST: manifest("other", **{"/srv/x/compose.yaml": "s"}),
    }
    assert run_plan({"rack": {}}, {"rack": MemoryHost("rack", files)}).changes == ()


def test_a_broken_manifest_fails_that_host_only() -> None:
    hosts = {
        "rack": MemoryHost("rack", {MANIFEST: (b"{not json", 0o644)}),
        "edge": MemoryHost("edge", {}),
    }
    plan = run_plan({"rack": {}, "edge": {"/srv/a": rendered("a\n")}}, hosts)
    assert (
        "rack: the manifest /var/lib/allmende/manifest.json is not one allmende wrote"
        in (plan.failed["rack"])
    )
    assert plan.hosts == ("edge",) and len(plan.changes) == 1


def test_an_unreachable_host_does_not_stop_the_others() -> None:
    hosts = {"down": MemoryHost("down", {}, down=True), "up": MemoryHost("up", {})}
    plan = run_plan({"down": {"/srv/a": rendered("a\n")}, "up": {"/srv/a": rendered("a\n")}}, hosts)
    assert plan.failed == {"down": "down (memory): connection refused"}
    assert [(c.host, c.kind) for c in plan.changes] == [("up", "create")]


def test_sensitive_files_never_show_their_diff_nor_a_plain_hash() -> None:
    key = HostKey(b"k" * 32)
    value = b"PASSWORD=hunter2\n"
    change = file_change("rack", "/srv/a/.env", value, 0o600, sha256(b"x"), 0o600, b"x", key=key)
    assert change is not None and change.sensitive
    assert "PASSWORD" not in change.shown_diff() and change.diff == ""
    assert change.as_json()["diff"] == HIDDEN
    assert change.after == key.keyed(sha256(value)) and change.after.startswith("hmac-sha256:")
    assert change.before == key.keyed(sha256(b"x"))
    plan = Plan((change,), ("rack",), keys={"rack": key})
    shown = json.dumps(plan.as_json())
    assert "PASSWORD" not in shown and sha256(value) not in shown and sha256(b"x") not in shown
    other = file_change("rack", "/srv/a/.env", value, 0o600, None, None, key=HostKey(b"o" * 32))
    assert other is not None and other.after != change.after  # another host, another hash


def test_a_host_without_a_key_gets_one_and_the_same_checksum_each_plan() -> None:
    wanted = {"rack": {"/srv/a/secrets/token": Rendered(b"t0ken", ("services/a.yaml",), 0o600)}}

    def planned() -> Plan:
        return run_plan(wanted, {"rack": MemoryHost("rack")})

    first, second = planned(), planned()
    assert first.keys["rack"].new and first.keys["rack"].value != second.keys["rack"].value
    assert first.changes[0].after != second.changes[0].after  # keyed with two new keys
    assert first.checksum == second.checksum  # which the checksum leaves out
    keyed = MemoryHost("rack", {HASH_KEY: (b"k" * 32, 0o600)})
    third = run_plan(wanted, {"rack": keyed})
    assert not third.keys["rack"].new
    assert third.changes[0].after == HostKey(b"k" * 32).keyed(sha256(b"t0ken"))
    assert third.checksum != first.checksum
    assert "hunter" not in repr(third) and "kkkk" not in repr(third)


def test_checksum_covers_hashes_and_modes_not_diffs() -> None:
    one = Change("update", "rack", "/srv/a", "diff 1", "b1", "a1", 0o644, 0o644)
    same = Change("update", "rack", "/srv/a", "other diff", "b1", "a1", 0o644, 0o644)
    other = Change("update", "rack", "/srv/a", "diff 1", "b1", "a2", 0o644, 0o644)
    moded = Change("update", "rack", "/srv/a", "diff 1", "b1", "a1", 0o644, 0o600)
    checksum = Plan((one,), ("rack",)).checksum
    assert checksum == Plan((same,), ("rack",)).checksum
    assert checksum != Plan((other,), ("rack",)).checksum
    assert checksum != Plan((moded,), ("rack",)).checksum
    assert len(checksum) == 64 and Plan((), ()).checksum != checksum


def test_unified_diff_text_binary_and_missing_newline() -> None:
    assert unified_diff("h:/p", b"\xff\xfe", b"x") == "Binary files differ: h:/p\n"
    text = unified_diff("h:/p", b"a\nb", b"a\nc\n")
    assert "-b\n\\ No newline at end of file\n+c\n" in text
    assert unified_diff("h:/p", b"same\n", b"same\n") == ""


def test_wanted_by_host_keeps_host_files_only() -> None:
    files = {
        "rack/srv/a/compose.yaml": rendered("a"),
        "edge/etc/haproxy/haproxy.cfg": rendered("h"),
        "dns/example.org.zone": rendered("z"),
        "kubernetes/wiki.yaml": rendered("k"),
    }
    assert {h: sorted(f) for h, f in wanted_by_host(files, ["rack", "idle"]).items()} == {
        "rack": ["/srv/a/compose.yaml"],
        "idle": [],
    }


@pytest.mark.parametrize(
    "data", [b"[]", b'{"version": 2, "hosts": {}}', b'{"version": 1, "hosts": {"rack": []}}']
)
def test_manifest_entries_refuse_what_allmende_did_not_write(data: bytes) -> None:
    with pytest.raises(UserError, match="not one allmende wrote"):
        manifest_entries(data, "rack")


def test_local_connector_under_a_root(tmp_path: Path) -> None:
    from allmende.connectors.local import LocalConnector

    (tmp_path / "srv/wiki").mkdir(parents=True)
    (tmp_path / "srv/wiki/compose.yaml").write_bytes(b"x\n")

    async def go() -> None:
        async with LocalConnector("here", str(tmp_path)) as host:
            assert await host.read("/srv/wiki/compose.yaml") == b"x\n"
            assert await host.read("/srv/none") is None
            found = await host.stat("/srv/wiki/compose.yaml")
            assert found is not None and found.sha256 == sha256(b"x\n")
            assert await host.list_files("/srv") == ["/srv/wiki/compose.yaml"]
            with pytest.raises(UserError, match="not a regular file"):
                await host.stat("/srv/wiki")
            ran = await host.run(["sh", "-c", "echo hi; exit 4"], ok=(0, 4))
            assert (ran.exit, ran.stdout) == (4, b"hi\n")
            await executor_reads_exit_statuses_alike(host)

    asyncio.run(go())


async def executor_reads_exit_statuses_alike(host: Connector) -> None:
    """What every connector's ``run`` does with a failure, a missing program, a run too long
    and a secret in the command (the SSH tests call this over a real sshd too)."""
    with pytest.raises(CommandFailed) as failed:
        await host.run(
            ["sh", "-c", "echo the password is hunter2 >&2; exit 5", "hunter2"],
            secrets=["hunter2"],
            what="up wiki",
        )
    error = failed.value
    assert not isinstance(error, ToolMissing)
    assert (error.host, error.exit) == (host.host, 5)
    assert str(error).startswith(f"{host.host}: up wiki: `sh -c")
    assert "the password is ***" in str(error) and "hunter2" not in str(error)
    assert error.output == "the password is ***"
    with pytest.raises(ToolMissing, match=f"{host.host}: `no-such-program-here` is not installed"):
        await host.run(["no-such-program-here", "--version"])
    assert not await host.succeeds(["no-such-program-here"])
    assert not await host.succeeds(["false"])
    assert await host.succeeds(["true"])
    started = time.monotonic()
    with pytest.raises(CommandTimedOut, match="did not finish within 1 s"):
        await host.run(["sleep", "30"], timeout=1)
    assert time.monotonic() - started < 10


def test_a_secret_file_readable_by_its_group_still_shows_no_diff() -> None:
    path = "/srv/board/secrets/board-db-password"
    old, key = sha256(b"old-value"), HostKey(b"k" * 32)
    change = file_change("rack", path, b"new-value", 0o440, old, 0o440, b"old-value", key=key)
    assert change is not None and change.sensitive
    assert "new-value" not in change.shown_diff() and "old-value" not in change.shown_diff()
    assert "new-value" not in json.dumps(change.as_json())
