"""The per-host apply lock (allmende.apply.lock): when a lock left behind is taken over."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from allmende.apply.lock import APPLY_LOCK as LOCK
from allmende.apply.lock import HOLDER, alive, dead_here, host_lock
from allmende.connectors.local import LocalConnector
from allmende.errors import UserError


def gone_pid() -> int:
    """Return the pid of a process that ran and is gone (reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not alive(child.pid)
    return child.pid


def holder(pid: object, machine: str | None = None) -> bytes:
    return json.dumps(
        {
            "who": "alex",
            "pid": pid,
            "since": time.time(),
            "from": socket.gethostname() if machine is None else machine,
        }
    ).encode()


def test_alive() -> None:
    assert alive(os.getpid())
    assert not alive(gone_pid())


def test_an_apply_from_this_machine_whose_process_is_gone_is_dead() -> None:
    assert dead_here(holder(gone_pid()))


def test_an_apply_still_running_here_is_not_dead() -> None:
    assert not dead_here(holder(os.getpid()))


def test_an_apply_from_another_machine_is_never_judged_by_pid() -> None:
    # The pid means nothing here: the other machine's apply may well be running.
    assert not dead_here(holder(gone_pid(), machine="laptop-of-sam"))


@pytest.mark.parametrize(
    "data",
    [
        None,
        b"",
        b"not json",
        b"[1, 2]",
        b'"a string"',
        b"{}",
        json.dumps({"from": socket.gethostname()}).encode(),
        json.dumps({"from": socket.gethostname(), "pid": "twelve"}).encode(),
        json.dumps({"from": socket.gethostname(), "pid": None}).encode(),
        json.dumps({"from": socket.gethostname(), "pid": [1]}).encode(),
        b"\xff\xfe garbage",
    ],
)
def test_garbage_is_not_a_dead_holder(data: bytes | None) -> None:
    assert dead_here(data) is False


def test_a_pid_too_large_for_the_system_is_no_running_apply() -> None:
    # No process can have it: the holder is not running, so its lock is taken over.
    assert dead_here(holder(2**40)) is True


def test_a_lock_left_by_a_dead_apply_here_is_taken_over(tmp_path: Path) -> None:
    connector = LocalConnector("rack", str(tmp_path))
    lock = tmp_path / LOCK.lstrip("/")
    lock.mkdir(parents=True)
    (tmp_path / HOLDER.lstrip("/")).write_bytes(holder(gone_pid()))

    async def take() -> dict[str, object]:
        async with host_lock(connector, "sam", os.getpid()):
            data = (tmp_path / HOLDER.lstrip("/")).read_bytes()
            result: dict[str, object] = json.loads(data)
            return result

    taken = asyncio.run(take())
    assert taken["who"] == "sam"
    assert taken["pid"] == os.getpid()
    assert not lock.exists()


def test_a_lock_held_by_a_running_apply_here_is_refused(tmp_path: Path) -> None:
    connector = LocalConnector("rack", str(tmp_path))
    lock = tmp_path / LOCK.lstrip("/")
    lock.mkdir(parents=True)
    (tmp_path / HOLDER.lstrip("/")).write_bytes(holder(os.getpid()))

    async def take() -> None:
        async with host_lock(connector, "sam", os.getpid()):
            pytest.fail("the lock was taken from a running apply")

    with pytest.raises(UserError, match=r"rack: another apply is running there, held by alex"):
        asyncio.run(take())
    assert json.loads((tmp_path / HOLDER.lstrip("/")).read_bytes())["who"] == "alex"
