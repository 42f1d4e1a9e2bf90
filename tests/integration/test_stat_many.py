"""`stat_many` against a real sshd on 127.0.0.1 and on the local machine: one program run on the
host gives what `stat` gives file by file, including its errors.

The SSH host's root (ALLMENDE_REMOTE_ROOT) and the local one are temp directories.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from tests.integration.conftest import Sshd

from allmende.connectors.base import Connector, FileStat, Ran
from allmende.connectors.local import LocalConnector
from allmende.connectors.ssh import SshConnector
from allmende.errors import UserError

#: Every byte value, NUL and newlines included, over several of the program's 1 MiB blocks.
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


def populate(root: Path) -> None:
    for path, (content, mode) in FILES.items():
        local = root / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(content)
        local.chmod(mode)


def ssh_env(sshd: Sshd, root: Path) -> dict[str, str]:
    return {
        "ALLMENDE_SSH_KEY": str(sshd.client_key),
        "ALLMENDE_KNOWN_HOSTS": str(sshd.known_hosts),
        "ALLMENDE_REMOTE_ROOT": str(root),
        "ALLMENDE_SSH_TIMEOUT": "5",
    }


class Counting(SshConnector):
    """The SSH connector to the test sshd, counting the programs it runs (and able to run
    another program in place of one)."""

    def __init__(self, sshd: Sshd, root: Path) -> None:
        super().__init__("rack", "127.0.0.1", "root", sshd.port, ssh_env(sshd, root))
        self.runs: list[str] = []
        self.instead: dict[str, str] = {}

    async def run(self, argv: Sequence[str], input: bytes | None = None) -> Ran:
        self.runs.append(argv[0])
        program = self.instead.get(argv[0], argv[0])
        return await super().run([program, *argv[1:]], input=input)


async def one_by_one(host: Connector, paths: Sequence[str]) -> list[FileStat | None]:
    return [await host.stat(p) for p in paths]


def expected(paths: Sequence[str]) -> list[FileStat | None]:
    found: list[FileStat | None] = []
    for path in paths:
        if path in FILES:
            content, mode = FILES[path]
            found.append(FileStat(mode, 0, 0, hashlib.sha256(content).hexdigest()))
        else:
            found.append(None)
    return found


PATHS = [*sorted(FILES), *ABSENT, "/srv/wiki/compose.yaml"]


def test_over_ssh_one_program_agrees_with_stat(sshd: Sshd, tmp_path: Path) -> None:
    populate(tmp_path)

    async def go() -> None:
        host = Counting(sshd, tmp_path)
        async with host:
            many = await host.stat_many(PATHS)
            assert host.runs == ["python3"]
            assert many == await one_by_one(host, PATHS)
            assert many == expected(PATHS)
            assert await host.stat_many([]) == []
            assert host.runs == ["python3"]

    asyncio.run(go())


def test_over_ssh_a_directory_is_the_error_stat_gives(sshd: Sshd, tmp_path: Path) -> None:
    populate(tmp_path)
    os.mkfifo(tmp_path / "srv/wiki/fifo")

    async def go() -> None:
        host = Counting(sshd, tmp_path)
        async with host:
            for odd in ("/srv/wiki", "/srv/wiki/fifo"):
                with pytest.raises(UserError) as single:
                    await host.stat(odd)
                with pytest.raises(UserError) as many:
                    await host.stat_many(["/srv/wiki/compose.yaml", odd, "/srv/nothing"])
                assert str(many.value) == str(single.value)
                assert str(many.value) == (
                    f"rack (root@127.0.0.1:{sshd.port}): {odd} is not a regular file"
                )

    asyncio.run(go())


def test_without_python3_on_the_host_each_file_is_hashed_over_sftp(
    sshd: Sshd, tmp_path: Path
) -> None:
    populate(tmp_path)

    async def go() -> None:
        host = Counting(sshd, tmp_path)
        async with host:
            host.instead = {"python3": "allmende-no-such-python3"}
            assert await host.stat_many(PATHS) == expected(PATHS)
            assert host.runs == ["python3"]
            with pytest.raises(UserError, match="/srv/wiki is not a regular file"):
                await host.stat_many(["/srv/wiki/compose.yaml", "/srv/wiki"])

    asyncio.run(go())


def test_many_files_at_once_share_one_sftp_session(sshd: Sshd, tmp_path: Path) -> None:
    """sshd allows 10 sessions per connection (MaxSessions): 30 concurrent reads and stats on
    a fresh connector must not each start their own SFTP session."""
    many = tmp_path / "srv/many"
    many.mkdir(parents=True)
    for i in range(30):
        (many / str(i)).write_text(f"{i}\n")
    paths = [f"/srv/many/{i}" for i in range(30)]

    async def go() -> None:
        async with Counting(sshd, tmp_path) as host:
            read = await asyncio.gather(*(host.read(p) for p in paths))
            assert read == [f"{i}\n".encode() for i in range(30)]
        async with Counting(sshd, tmp_path) as host:
            found = await asyncio.gather(*(host.stat(p) for p in paths))
            assert [f.sha256 if f else None for f in found] == [
                hashlib.sha256(f"{i}\n".encode()).hexdigest() for i in range(30)
            ]

    asyncio.run(go())


def test_a_broken_python3_is_a_clear_error(sshd: Sshd, tmp_path: Path) -> None:
    populate(tmp_path)

    async def go() -> None:
        host = Counting(sshd, tmp_path)
        async with host:
            host.instead = {"python3": "false"}
            with pytest.raises(
                UserError, match=r"rack: `false -I -c <program of \d+ lines>` failed \(exit 1\)"
            ):
                await host.stat_many(["/srv/wiki/compose.yaml"])

    asyncio.run(go())


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A temp directory others may enter (pytest's own tmp_path is 0700 to root)."""
    directory = Path(tempfile.mkdtemp(prefix="allmende-stat-many-"))
    directory.chmod(0o711)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


class AsNobody(SshConnector):
    """The SSH connector's program, run on this machine as uid 65534 (so that root's files
    are unreadable), without SSH."""

    async def run(self, argv: Sequence[str], input: bytes | None = None) -> Ran:
        python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
        assert python is not None
        done = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, *argv[1:]],
            input=input,
            capture_output=True,
            check=False,
        )
        return Ran(done.returncode, done.stdout, done.stderr)


def test_an_unreadable_file_is_the_error_sftp_gives(world_readable_dir: Path) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to read as another user")
    if shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") is None:
        pytest.skip("no python3 outside root's home")
    root = world_readable_dir
    (root / "srv/wiki").mkdir(parents=True)
    (root / "srv/wiki").chmod(0o755)
    (root / "srv/wiki/public").write_text("x\n")
    (root / "srv/wiki/public").chmod(0o644)
    (root / "srv/wiki/secret").write_text("x\n")
    (root / "srv/wiki/secret").chmod(0o600)
    (root / "srv/closed").mkdir()
    (root / "srv/closed").chmod(0o700)
    host = AsNobody("rack", "127.0.0.1", "root", 22, {"ALLMENDE_REMOTE_ROOT": str(root)})

    found = asyncio.run(host.stat_many(["/srv/wiki/public", "/srv/wiki/nothing"]))
    assert found[0] is not None and found[0].mode == 0o644 and found[1] is None
    for path in ("/srv/wiki/secret", "/srv/closed/file"):
        with pytest.raises(UserError) as caught:
            asyncio.run(host.stat_many(["/srv/wiki/public", path]))
        # what SshConnector.stat says when SFTP answers "Permission denied"
        said = f"rack (root@127.0.0.1:22): cannot read {path}: Permission denied"
        assert str(caught.value) == said


def test_the_local_connector_agrees_with_stat(tmp_path: Path) -> None:
    populate(tmp_path)
    host = LocalConnector("gateway", str(tmp_path))
    # the local connector's stat calls a path below a file unreadable, SFTP calls it absent
    paths = [p for p in PATHS if "below-a-file" not in p]

    async def go() -> None:
        many = await host.stat_many(paths)
        assert many == await one_by_one(host, paths)
        assert [(s.mode, s.sha256) if s else None for s in many] == [
            (s.mode, s.sha256) if s else None for s in expected(paths)
        ]
        with pytest.raises(UserError) as single:
            await host.stat("/srv/wiki")
        with pytest.raises(UserError) as caught:
            await host.stat_many(["/srv/nothing", "/srv/wiki", "/srv"])
        assert str(caught.value) == str(single.value)
        said = f"gateway (local, root {tmp_path}): /srv/wiki is not a regular file"
        assert str(caught.value) == said

    asyncio.run(go())


def test_the_local_connector_passes_input(tmp_path: Path) -> None:
    ran = asyncio.run(LocalConnector("gateway").run(["cat"], input=b"one\x00two\n"))
    assert (ran.exit, ran.stdout) == (0, b"one\x00two\n")
