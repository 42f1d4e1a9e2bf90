"""The named pipes a backup streams its dumps and manifest through leave nothing waiting: a
failed run drains them, and a run after a killed one lets go of what waits at the old ones;
an unchanged file's checksum comes from the cache, a changed one's never does."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from tests.integration.backup_site import Site, make_site, need_borg
from tests.integration.test_backup_local import FILES, passphrase

from allmende.actions import backup
from allmende.connectors.local import LocalConnector
from allmende.operations.backup import drain, make_pipes

WAIT = 10.0


@pytest.fixture
def site(tmp_path: Path) -> Site:
    need_borg()
    made = make_site(tmp_path, str(tmp_path / "repo" / "{service}"), {"files": FILES})
    made.on_host("/srv/files/data").mkdir(parents=True)
    made.on_host("/srv/files/data/a.txt").write_text("alpha\n")
    return made


def _waiting_at_a_pipe(*processes: subprocess.Popen[bytes]) -> None:
    """Wait until each process waits to open a named pipe, as a killed run leaves them."""
    deadline = time.monotonic() + WAIT
    while not all(
        Path(f"/proc/{p.pid}/wchan").read_text() == "wait_for_partner" for p in processes
    ):
        assert time.monotonic() < deadline, "the programs never opened their pipes"
        time.sleep(0.02)


def test_a_new_run_lets_go_of_what_a_killed_one_left_waiting_at_its_pipes(
    tmp_path: Path,
) -> None:
    host = LocalConnector("box", str(tmp_path))
    asyncio.run(make_pipes(host, ["/dumps/a.sql", "/dumps/manifest.json"]))
    writer = subprocess.Popen(
        ["dd", f"of={tmp_path}/dumps/a.sql", "status=none"], stdin=subprocess.PIPE
    )
    reader = subprocess.Popen(["dd", f"if={tmp_path}/dumps/manifest.json", "status=none"],
                              stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        assert writer.stdin is not None
        writer.stdin.write(b"left from a killed run")
        writer.stdin.close()
        _waiting_at_a_pipe(writer, reader)
        asyncio.run(make_pipes(host, ["/dumps/a.sql", "/dumps/manifest.json"]))
        writer.wait(WAIT)  # let go: it ended (its write found no reader, or the old pipe)
        assert reader.wait(WAIT) == 0  # let go: it read an end
        fresh = tmp_path / "dumps/a.sql"
        assert fresh.is_fifo() and fresh.stat().st_mode & 0o777 == 0o600
    finally:
        for process in (writer, reader):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_a_drain_ends_when_the_writer_never_opened_its_pipe(tmp_path: Path) -> None:
    host = LocalConnector("box", str(tmp_path))

    async def go() -> None:
        await make_pipes(host, ["/dumps/a.sql"])
        failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        failed.set_result(None)  # a writer that gave up before it opened the pipe
        await asyncio.wait_for(drain(host, "/dumps/a.sql", failed), WAIT)

    asyncio.run(go())


def test_a_drain_reads_what_a_late_writer_writes(tmp_path: Path) -> None:
    host = LocalConnector("box", str(tmp_path))

    async def go() -> None:
        await make_pipes(host, ["/dumps/a.sql"])
        writing = asyncio.ensure_future(
            host.run(["dd", f"of={tmp_path}/dumps/a.sql", "status=none"], input=b"x" * 200_000)
        )
        await asyncio.wait_for(drain(host, "/dumps/a.sql", writing), WAIT)
        assert writing.result().exit == 0

    asyncio.run(go())


def test_a_file_changed_behind_the_cache_gets_its_new_checksum(site: Site) -> None:
    site.init()
    [first] = site.run()
    assert first.ok, first.message
    page = site.on_host("/srv/files/data/a.txt")
    before = page.stat()
    page.write_text("ALPHA\n")  # the same size, and its modification time put back
    os.utime(page, ns=(before.st_atime_ns, before.st_mtime_ns))
    [second] = site.run()
    assert second.ok, second.message
    manifest = site.borg(
        "extract", "--stdout", f"{site.directory}/repo/files::{second.value.archive}",
        "srv/files/dumps/allmende-files.json", passphrase=passphrase(site),
    )  # fmt: skip
    recorded = json.loads(manifest)["files"]["srv/files/data/a.txt"]
    assert recorded == [6, hashlib.sha256(b"ALPHA\n").hexdigest()]
    [verified] = backup.verify(site.context(), site.say)
    assert verified.ok, verified.message
