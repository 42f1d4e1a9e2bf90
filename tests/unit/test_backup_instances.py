"""`consistency: snapshot` on an Incus host, against an in-memory host answering ``incus``:
which instances' snapshots can be read as files, and what is said of those that cannot."""

from __future__ import annotations

import asyncio
import json

import pytest

from allmende.connectors.base import Ran
from allmende.errors import UserError
from allmende.inventory.backupjob import Instance, Job
from allmende.operations import instances
from tests.memory import MemoryHost

JOB = Job(
    "wiki", "box", "/srv/borg/wiki", "snapshot", "daily",
    instances=(
        Instance("app", "wiki-app", "/srv/wiki/app.rootfs"),
        Instance("db", "wiki-db", "/srv/wiki/db.rootfs"),
        Instance("vm", "wiki-vm", "/srv/wiki/vm.rootfs"),
        Instance("gone", "wiki-gone", "/srv/wiki/gone.rootfs"),
    ),
)  # fmt: skip


def box(pools: dict[str, str]) -> MemoryHost:
    host = MemoryHost("box")

    def about(pool: str, kind: str = "container") -> Ran:
        body = {"type": kind, "expanded_devices": {"root": {"pool": pool, "type": "disk"}}}
        return Ran(0, json.dumps(body).encode(), b"")

    host.answer(["incus", "query", "/1.0/instances/wiki-app"], about("fast"))
    host.answer(["incus", "query", "/1.0/instances/wiki-db"], about("plain"))
    host.answer(["incus", "query", "/1.0/instances/wiki-vm"], about("plain", "virtual-machine"))
    host.answer(
        ["incus", "query", "/1.0/instances/wiki-gone"],
        Ran(1, b"", b"Error: Instance not found"),
    )
    for pool, driver in pools.items():
        answer = Ran(0, json.dumps({"driver": driver}).encode(), b"")
        host.answer(["incus", "query", f"/1.0/storage-pools/{pool}"], answer)
    return host


def test_only_containers_on_directory_pools_are_read_and_every_other_is_named() -> None:
    host = box({"fast": "zfs", "plain": "dir"})
    with pytest.raises(UserError) as caught:
        asyncio.run(instances.places(host, JOB))
    said = str(caught.value)
    assert "wiki-app is on the zfs pool fast" in said
    assert "wiki-vm is a virtual machine" in said
    assert "there is no instance wiki-gone (apply the inventory first)" in said
    assert "wiki-db" not in said and "nothing was backed up" in said
    assert not [c for c in host.ran if c[:2] == ("incus", "snapshot")], "nothing was taken"


def test_instances_on_dir_and_btrfs_pools_are_snapshotted_and_released() -> None:
    host = box({"fast": "btrfs", "plain": "dir"})
    job = Job("wiki", "box", "/srv/borg/wiki", "snapshot", "daily", instances=JOB.instances[:2])
    host.answer(["incus", "snapshot", "create"], Ran(0, b"", b""))
    host.answer(["test", "-d"], Ran(0, b"", b""))
    host.answer(["incus", "snapshot", "delete", "wiki-app"], Ran(0, b"", b""))
    host.answer(
        ["incus", "snapshot", "delete", "wiki-db"], Ran(1, b"", b"Error: device or resource busy")
    )

    async def go() -> tuple[list[tuple[str, str]], list[str]]:
        found = await instances.places(host, job)
        return await instances.take(host, job, found), await instances.release(host, job)

    binds, left = asyncio.run(go())
    shown = "/var/lib/incus/storage-pools/{}/containers-snapshots/wiki-{}/allmende-backup/rootfs"
    assert binds == [
        (shown.format("fast", "app"), "/srv/wiki/app.rootfs"),
        (shown.format("plain", "db"), "/srv/wiki/db.rootfs"),
    ]
    taken = ("incus", "snapshot", "create", "wiki-app", "allmende-backup", "--reuse")
    assert taken in host.ran
    busy = "Error: device or resource busy"
    assert left == [f"the snapshot allmende-backup of wiki-db is left: {busy}"]
