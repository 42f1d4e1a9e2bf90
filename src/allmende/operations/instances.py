"""``consistency: snapshot`` on an Incus host: each container's own files, from a snapshot.

A job's ``instances`` (one per component, ``inventory.backups``) are backed up with their
service's volumes:

1. ``places`` asks Incus where each one's files are: the pool of its root disk, and that pool's
   driver. Only a container on a ``dir`` or ``btrfs`` pool shows a snapshot as a directory; any
   other (ZFS, LVM, Ceph, a virtual machine's disk image), or an instance that does not exist,
   fails the run before anything is taken, saying which and what to do;
2. ``take`` has Incus take the snapshot ``allmende-backup`` of each (replacing one a killed run
   left; on a ``dir`` pool Incus copies the container's files, a ``btrfs`` pool snapshots
   them at once) and returns, for each, the snapshot's root file system and where
   the archive has it (``/srv/<service>/<component>.rootfs``): ``operations.snapshot`` binds
   one over the other where Borg and the hashing run, so an archive holds the files under a
   path that names the component and not the pool;
3. ``release`` deletes the snapshots, whatever happened; one that cannot be is said, and the
   next run replaces it.

``put_back`` restores in place: with the service stopped, each instance whose files the
archive holds is snapshotted as ``before-restore-<time>`` (``allmende rollback SERVICE --to``
that snapshot undoes the restore), then its root file system is replaced by the archive's.

Incus keeps its files where it has them (``/var/lib/incus``), whatever directory stands in for
``/`` (``Connector.real``, in tests): those paths are used as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from allmende.connectors.base import Connector
from allmende.errors import UserError
from allmende.inventory.backupjob import Instance, Job
from allmende.inventory.hostpaths import incus_rootfs, incus_snapshot_rootfs

Say = Callable[[str], None]
#: The snapshot a backup reads, replaced at every backup.
BACKUP = "allmende-backup"
#: The start of the name of the snapshot a restore in place keeps of the moment before.
BEFORE_RESTORE = "before-restore"
#: The pool drivers whose snapshots are plain directories on the host.
DIRECTORY_POOLS = ("dir", "btrfs")
#: Puts the copy ``$2`` in place of the directory ``$1``, or leaves ``$1`` as it was.
REPLACE = (
    'set -e; old="$1.allmende-old"; rm -rf --one-file-system "$old"; mv "$1" "$old"; '
    'if mv "$2" "$1"; then rm -rf --one-file-system "$old"; '
    'else rm -rf --one-file-system "$1"; mv "$old" "$1"; exit 1; fi'
)


@dataclass(frozen=True)
class Place:
    """An instance and the storage pool its files are on."""

    instance: Instance
    pool: str


async def _query(host: Connector, path: str) -> dict[str, Any] | None:
    """Return what Incus's API answers at ``path``, or None where it has nothing there."""
    ran = await host.run(["incus", "query", path], ok=None, timeout=60.0, what="ask Incus")
    if ran.exit != 0:
        said = ran.stderr.decode(errors="replace").strip()
        if "not found" in said.lower():
            return None
        raise UserError(f"{host.host}: `incus query {path}` failed (exit {ran.exit}): {said}")
    try:
        answer = json.loads(ran.stdout)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise UserError(f"{host.host}: `incus query {path}` answered what cannot be read")
    return answer


async def places(host: Connector, job: Job) -> list[Place]:
    """Return where each of the job's instances keeps its files. Raise UserError naming every
    instance whose snapshot cannot be read as files (see the module docstring)."""
    found, wrong = [], []
    drivers: dict[str, str] = {}
    for instance in job.instances:
        about = await _query(host, f"/1.0/instances/{instance.name}")
        if about is None:
            wrong.append(f"there is no instance {instance.name} (apply the inventory first)")
            continue
        pool = str((about.get("expanded_devices") or {}).get("root", {}).get("pool") or "")
        if pool and pool not in drivers:
            answer = await _query(host, f"/1.0/storage-pools/{pool}") or {}
            drivers[pool] = str(answer.get("driver") or "")
        if about.get("type", "container") != "container":
            wrong.append(f"{instance.name} is a virtual machine, whose disk is an image")
        elif drivers.get(pool) not in DIRECTORY_POOLS:
            driver = drivers.get(pool) or "unknown"
            wrong.append(f"{instance.name} is on the {driver} pool {pool or '(none)'}")
        else:
            found.append(Place(instance, pool))
    if wrong:
        raise UserError(
            f"{job.service}: `consistency: snapshot` reads each instance's files from an Incus "
            f"snapshot, which only a container on a {' or '.join(DIRECTORY_POOLS)} pool shows "
            f"as a directory ({'; '.join(wrong)}): nothing was backed up; put its root disk on "
            "such a pool, or use `consistency: stop`"
        )
    return found


async def take(host: Connector, job: Job, found: Sequence[Place]) -> list[tuple[str, str]]:
    """Take the snapshot ``BACKUP`` of each instance; return (the snapshot's root file system,
    where the archive has it) for each. Raise UserError if one cannot be taken or read (the
    caller releases those taken: ``release``)."""
    binds = []
    for place in found:
        name = place.instance.name
        await host.run(
            ["incus", "snapshot", "create", name, BACKUP, "--reuse"], what=f"snapshot {name}"
        )
        files = incus_snapshot_rootfs(place.pool, name, BACKUP)
        if not await host.succeeds(["test", "-d", files]):
            raise UserError(
                f"{job.service}: the snapshot of {name} shows no files at {files}: nothing was "
                "backed up; use `consistency: stop`"
            )
        binds.append((files, place.instance.path))
    return binds


async def release(host: Connector, job: Job) -> list[str]:
    """Delete the snapshots ``take`` took (those there are); return what could not be done."""
    problems = []
    for instance in job.instances:
        ran = await host.run(
            ["incus", "snapshot", "delete", instance.name, BACKUP], ok=None, what="release"
        )
        said = ran.stderr.decode(errors="replace").strip()
        if ran.exit != 0 and "not found" not in said.lower():
            problems.append(f"the snapshot {BACKUP} of {instance.name} is left: {said}")
    return problems


async def put_back(
    host: Connector, job: Job, copies: Sequence[tuple[Place, str]], stamp: str, say: Say
) -> list[str]:
    """With the service stopped, put each instance of ``copies`` (its place, the host path of
    the archive's copy of its files) back as the copy has it, after keeping the moment before
    as its snapshot ``before-restore-<stamp>``. Return what was kept, as said to the user.
    Raise UserError (an instance not yet replaced is left as it was)."""
    kept = []
    for place, copy in copies:
        name = place.instance.name
        before = f"{BEFORE_RESTORE}-{stamp}"
        say(f"keeping {name} as its snapshot {before}, then putting its files back")
        await host.run(["incus", "snapshot", "create", name, before], what=f"snapshot {name}")
        kept.append(f"{name}'s snapshot {before} (`allmende rollback {job.service} --to {before}`)")
        await host.run(
            ["sh", "-c", REPLACE, "sh", incus_rootfs(place.pool, name), host.real(copy)],
            what=f"put back the files of {name}",
        )
    return kept
