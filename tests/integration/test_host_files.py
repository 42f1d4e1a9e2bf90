"""The connectors' file operations against a real sshd on 127.0.0.1 and on the local machine:
the same answers one by one and many at once, the same errors, and no symbolic link followed.

Over SSH each operation goes to the file helper (python3 on the host) or, where the host has
none, over SFTP; both are tested, and the local connector alike. The SSH host's root
(ALLMENDE_REMOTE_ROOT) and the local one are temp directories.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.integration.conftest import Sshd

from allmende.connectors.base import PREVIOUS, Connector, FileStat
from allmende.connectors.local import LocalConnector
from allmende.connectors.ssh import SshConnector
from allmende.errors import UserError

#: Every byte value, NUL and newlines included, over several 1 MiB blocks.
BINARY = bytes(range(256)) * 12289

#: Path -> (content, mode) of the files every test host has.
FILES: dict[str, tuple[bytes, int]] = {
    "/srv/wiki/compose.yaml": (b"services: {}\n", 0o644),
    "/srv/wiki/secrets/db-password": (b"hunter2", 0o600),
    "/srv/wiki/data.bin": (BINARY, 0o640),
    "/srv/wiki/empty": (b"", 0o644),
    "/srv/with space/compose file.yaml": (b"a b\n", 0o644),
    "/srv/new\nline/compose.yaml": (b"line\n", 0o644),
    "/srv/m\u00fcsik/\u97f3\u697d \U0001f3b5.yaml": ("m\u00fcsik\n".encode(), 0o755),
}
ABSENT = ["/srv/nothing", "/srv/wiki/compose.yaml/below-a-file", "/nowhere/at/all"]
PATHS = [*sorted(FILES), *ABSENT, "/srv/wiki/compose.yaml"]
#: What the links of ``plant`` point at: a file and a directory outside allmende's paths.
OUTSIDE = "/etc/allmende-test"
SHADOW = b"root:$y$j9T$secret-hash:19000:0:99999:7:::\n"


def populate(root: Path) -> None:
    for path, (content, mode) in FILES.items():
        local = root / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(content)
        local.chmod(mode)


def plant(root: Path) -> Path:
    """Plant the links a container that mounts /srv/wiki or /srv/pad could plant: the secret
    file, and the secrets directory of pad, pointing outside (within the root); return the
    directory they point at."""
    outside = root / OUTSIDE.lstrip("/")
    outside.mkdir(parents=True)
    (outside / "shadow").write_bytes(SHADOW)
    secret = root / "srv/wiki/secrets/db-password"
    secret.unlink()
    secret.symlink_to(outside / "shadow")
    (root / "srv/pad").mkdir(parents=True)
    (root / "srv/pad/secrets").symlink_to(outside)
    (root / "srv/wiki/plans").symlink_to("/etc")  # relative to nothing: an absolute target
    return outside


def ssh_env(sshd: Sshd, root: Path) -> dict[str, str]:
    return {
        "ALLMENDE_SSH_KEY": str(sshd.client_key),
        "ALLMENDE_KNOWN_HOSTS": str(sshd.known_hosts),
        "ALLMENDE_REMOTE_ROOT": str(root),
        "ALLMENDE_SSH_TIMEOUT": "5",
    }


def expected(paths: Sequence[str]) -> list[FileStat | None]:
    found: list[FileStat | None] = []
    for path in paths:
        if path in FILES:
            content, mode = FILES[path]
            found.append(FileStat(mode, 0, 0, hashlib.sha256(content).hexdigest()))
        else:
            found.append(None)
    return found


Way = Callable[[Path], Connector]


@pytest.fixture(params=["local", "ssh", "sftp"])
def way(request: pytest.FixtureRequest) -> Way:
    """How the host is reached: this machine, SSH with the file helper, SSH without python3."""
    if request.param == "local":
        return lambda root: LocalConnector("gateway", str(root))
    sshd: Sshd = request.getfixturevalue("sshd")

    def ssh(root: Path) -> Connector:
        host = SshConnector("rack", "127.0.0.1", "root", sshd.port, ssh_env(sshd, root))
        if request.param == "sftp":
            host.python = ("allmende-no-such-python3",)
        return host

    return ssh


def run(way: Way, root: Path, work: Callable[[Connector], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        async with way(root) as host:
            return await work(host)

    return asyncio.run(go())


def where(host: Connector) -> str:
    return f"{host.host} ({host.where})"


def test_many_at_once_agree_with_one_by_one(way: Way, tmp_path: Path) -> None:
    populate(tmp_path)

    async def work(host: Connector) -> None:
        many = await host.stat_many(PATHS)
        assert many == [await host.stat(p) for p in PATHS]
        assert [(s.mode, s.sha256) if s else None for s in many] == [
            (s.mode, s.sha256) if s else None for s in expected(PATHS)
        ]
        assert await host.stat_many([]) == []
        assert [await host.read(p) for p in sorted(FILES)] == [FILES[p][0] for p in sorted(FILES)]

    run(way, tmp_path, work)


def test_a_directory_or_a_fifo_is_no_regular_file(way: Way, tmp_path: Path) -> None:
    populate(tmp_path)
    os.mkfifo(tmp_path / "srv/wiki/fifo")

    async def work(host: Connector) -> None:
        for odd in ("/srv/wiki", "/srv/wiki/fifo"):
            said = f"{where(host)}: {odd} is not a regular file"
            for attempt in (
                host.stat(odd),
                host.read(odd),  # a FIFO is never opened: this does not hang
                host.stat_many(["/srv/wiki/compose.yaml", odd, "/srv/nothing"]),
            ):
                with pytest.raises(UserError) as caught:
                    await asyncio.wait_for(attempt, 10)
                assert str(caught.value) == said

    run(way, tmp_path, work)


def test_a_linked_file_is_neither_read_nor_copied(way: Way, tmp_path: Path) -> None:
    populate(tmp_path)
    outside = plant(tmp_path)
    path = "/srv/wiki/secrets/db-password"

    async def work(host: Connector) -> None:
        said = f"{where(host)}: {path} is a symbolic link: allmende follows no link on a host"
        for attempt in (
            host.read(path),
            host.stat(path),
            host.stat_many(["/srv/wiki/compose.yaml", path]),
            host.keep_previous(path),
        ):
            with pytest.raises(UserError) as caught:
                await attempt
            assert str(caught.value).startswith(said)
            assert "hunter" not in str(caught.value) and "secret-hash" not in str(caught.value)

    run(way, tmp_path, work)
    assert not (tmp_path / f"srv/wiki/secrets/db-password{PREVIOUS}").exists()
    assert (outside / "shadow").read_bytes() == SHADOW


def test_nothing_is_written_or_made_through_a_linked_directory(way: Way, tmp_path: Path) -> None:
    populate(tmp_path)
    outside = plant(tmp_path)

    async def work(host: Connector) -> None:
        prefix = f"{where(host)}: /srv/pad/secrets is a symbolic link"
        for attempt in (
            host.write_temp("/srv/pad/secrets/db-password", b"new", 0o600),
            host.write_atomic("/srv/pad/secrets/db-password", b"new", 0o600),
            host.make_dir("/srv/pad/secrets"),
            host.make_dir("/srv/pad/secrets/deeper/still"),
            host.rename("/srv/pad/secrets/x", "/srv/pad/secrets/y"),
            host.remove("/srv/pad/secrets/shadow"),
            host.remove_dir("/srv/pad/secrets/below"),
            host.read("/srv/pad/secrets/shadow"),
            host.stat("/srv/pad/secrets/shadow"),
        ):
            with pytest.raises(UserError) as caught:
                await attempt
            assert str(caught.value).startswith(prefix)
        with pytest.raises(UserError, match="/srv/wiki/plans is a symbolic link"):
            await host.write_atomic("/srv/wiki/plans/passwd", b"x", 0o644)
        assert await host.list_files("/srv/pad") == []

    run(way, tmp_path, work)
    assert sorted(p.name for p in outside.iterdir()) == ["shadow"]
    assert (outside / "shadow").read_bytes() == SHADOW


def test_a_link_planted_where_the_temp_goes_is_replaced_not_followed(
    way: Way, tmp_path: Path
) -> None:
    populate(tmp_path)
    outside = plant(tmp_path)
    (tmp_path / "srv/wiki/.compose.yaml.allmende-tmp").symlink_to(outside / "shadow")

    async def work(host: Connector) -> None:
        await host.write_atomic("/srv/wiki/compose.yaml", b"services: {new: {}}\n", 0o644)

    run(way, tmp_path, work)
    assert (tmp_path / "srv/wiki/compose.yaml").read_bytes() == b"services: {new: {}}\n"
    assert (outside / "shadow").read_bytes() == SHADOW
    assert not (tmp_path / "srv/wiki/.compose.yaml.allmende-tmp").exists()


def test_files_are_written_created_and_removed_as_before(way: Way, tmp_path: Path) -> None:
    async def work(host: Connector) -> None:
        assert await host.make_dir("/var/lib/allmende/apply.lock") is True
        assert await host.make_dir("/var/lib/allmende/apply.lock") is False
        await host.write_atomic("/srv/new/secrets/token", b"t0ken", 0o600)
        found = await host.stat("/srv/new/secrets/token")
        assert found is not None and found.mode == 0o600
        await host.keep_previous("/srv/new/secrets/token")
        assert await host.read(f"/srv/new/secrets/token{PREVIOUS}") == b"t0ken"
        assert await host.list_files("/srv") == [
            "/srv/new/secrets/token",
            f"/srv/new/secrets/token{PREVIOUS}",
        ]
        await host.remove("/srv/new/secrets/token")
        await host.remove("/srv/new/secrets/token")
        await host.remove_dir("/var/lib/allmende/apply.lock")
        await host.remove_dir("/var/lib/allmende/apply.lock")
        assert await host.read("/srv/new/secrets/token") is None

    run(way, tmp_path, work)


def test_many_files_at_once_over_one_connection(sshd: Sshd, tmp_path: Path) -> None:
    """sshd allows 10 sessions per connection (MaxSessions): 30 concurrent reads, stats and
    writes on a fresh connector share one helper (or one SFTP session)."""
    many = tmp_path / "srv/many"
    paths = [f"/srv/many/{i}" for i in range(30)]

    async def go(python: tuple[str, ...]) -> None:
        many.mkdir(parents=True, exist_ok=True)
        for i in range(30):
            (many / str(i)).write_text(f"{i}\n")

        def connect() -> SshConnector:
            host = SshConnector("rack", "127.0.0.1", "root", sshd.port, ssh_env(sshd, tmp_path))
            host.python = python
            return host

        async with connect() as host:
            read = await asyncio.gather(*(host.read(p) for p in paths))
            assert read == [f"{i}\n".encode() for i in range(30)]
        async with connect() as host:
            found = await asyncio.gather(*(host.stat(p) for p in paths))
            assert [f.sha256 if f else None for f in found] == [
                hashlib.sha256(f"{i}\n".encode()).hexdigest() for i in range(30)
            ]
        async with connect() as host:
            await asyncio.gather(*(host.write_atomic(p, b"new\n", 0o644) for p in paths))
        assert {(many / str(i)).read_bytes() for i in range(30)} == {b"new\n"}

    asyncio.run(go(("python3",)))
    asyncio.run(go(("allmende-no-such-python3",)))


def test_a_broken_python3_is_a_clear_error(sshd: Sshd, tmp_path: Path) -> None:
    populate(tmp_path)

    async def go() -> None:
        host = SshConnector("rack", "127.0.0.1", "root", sshd.port, ssh_env(sshd, tmp_path))
        host.python = ("false",)
        async with host:
            with pytest.raises(UserError) as caught:
                await host.stat_many(["/srv/wiki/compose.yaml"])
        assert str(caught.value).startswith(
            f"rack (root@127.0.0.1:{sshd.port}): cannot start its file helper (python3): exit 1"
        )

    asyncio.run(go())


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A temp directory others may enter (pytest's own tmp_path is 0700 to root)."""
    directory = Path(tempfile.mkdtemp(prefix="allmende-host-files-"))
    directory.chmod(0o711)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def test_an_unreadable_file_is_the_error_sftp_gives(sshd: Sshd, world_readable_dir: Path) -> None:
    """The helper run as uid 65534 over SSH: root's private files are unreadable to it."""
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if shutil.which("setpriv") is None or python is None:
        pytest.skip("needs setpriv, and python3 outside root's home, to read as another user")
    root = world_readable_dir
    (root / "srv/wiki").mkdir(parents=True)
    (root / "srv/wiki").chmod(0o755)
    (root / "srv/wiki/public").write_text("x\n")
    (root / "srv/wiki/public").chmod(0o644)
    (root / "srv/wiki/secret").write_text("x\n")
    (root / "srv/wiki/secret").chmod(0o600)
    (root / "srv/closed").mkdir()
    (root / "srv/closed").chmod(0o700)

    async def go() -> None:
        host = SshConnector("rack", "127.0.0.1", "root", sshd.port, ssh_env(sshd, root))
        host.python = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python)
        async with host:
            found = await host.stat_many(["/srv/wiki/public", "/srv/wiki/nothing"])
            assert found[0] is not None and found[0].mode == 0o644 and found[1] is None
            for path in ("/srv/wiki/secret", "/srv/closed/file"):
                with pytest.raises(UserError) as caught:
                    await host.stat_many(["/srv/wiki/public", path])
                said = f"rack (root@127.0.0.1:{sshd.port}): cannot read {path}: Permission denied"
                assert str(caught.value) == said

    asyncio.run(go())


def test_the_local_connector_passes_input() -> None:
    ran = asyncio.run(LocalConnector("gateway").run(["cat"], input=b"one\x00two\n"))
    assert (ran.exit, ran.stdout) == (0, b"one\x00two\n")
