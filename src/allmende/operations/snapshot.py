"""``consistency: snapshot``: copy read-only snapshots while the service runs.

Each volume must be a btrfs subvolume (``btrfs subvolume create``): it is snapshotted read-only
beside itself (``<path>.allmende-snapshot``). On an Incus host each component's instance is
snapshotted by Incus too (``operations.instances``), its files archived at
``/srv/<service>/<component>.rootfs``. Borg (and the hashing of the manifest) run in a mount
namespace of their own in which each snapshot is bound over its path, so the archive holds the
volumes' paths with the snapshots' content. The snapshots are deleted afterwards, whatever
happened. A volume on another file system, or one that is not a subvolume, or an instance whose
snapshot is no directory, fails the run before anything is taken, saying which and what to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from allmende.connectors.base import Connector
from allmende.errors import CommandFailed, UserError
from allmende.inventory.backupjob import Job
from allmende.operations import instances

#: Where a volume's snapshot is, beside it.
SUFFIX = ".allmende-snapshot"
#: Binds each snapshot over its path (pairs after the count), then runs the command.
BIND = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do mount --bind "$1" "$2" || exit 1; shift 2; '
    'n=$((n - 1)); done; exec "$@"'
)


@dataclass
class Snapshots:
    """The snapshots taken for one run: the volumes' (volume, snapshot), as host paths, and
    the instances' (the snapshot's files where they really are, the host path the archive
    has them at)."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    binds: list[tuple[str, str]] = field(default_factory=list)
    held: bool = False

    def wrapper(self, host: Connector) -> Callable[[list[str]], list[str]]:
        """Return ``wrap`` bound to the host."""
        return lambda argv: self.wrap(host, argv)

    def wrap(self, host: Connector, argv: Sequence[str]) -> list[str]:
        """Return ``argv`` run where each volume's path shows its snapshot."""
        if not self.pairs and not self.binds:
            return list(argv)
        bound = [host.real(p) for pair in self.pairs for p in (pair[1], pair[0])]
        bound += [p for files, path in self.binds for p in (files, host.real(path))]
        return [
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", BIND, "sh", str(len(self.pairs) + len(self.binds)), *bound, *argv,
        ]  # fmt: skip


async def _file_system(host: Connector, path: str) -> str:
    ran = await host.run(["stat", "-f", "-c", "%T", host.real(path)], what="file system")
    return ran.stdout.decode().strip() or "an unknown file system"


async def hold(host: Connector, job: Job, paths: Sequence[str]) -> Snapshots:
    """Snapshot each of ``paths`` (existing volumes) read-only, then each of the job's
    instances (their files shown at their paths in the archive). Raise UserError, holding
    none, if one cannot be (see the module docstring)."""
    found = await instances.places(host, job) if job.instances else []
    taken = await take(host, job, paths)
    if not found:
        return taken
    try:
        taken.held = True
        taken.binds = await instances.take(host, job, found)
        for _, path in taken.binds:
            await host.make_dir(path)
    except UserError:
        await drop(host, job, taken)
        raise
    return taken


async def take(host: Connector, job: Job, paths: Sequence[str]) -> Snapshots:
    """Snapshot each of ``paths`` (existing volumes) read-only. Raise UserError, taking none,
    if one cannot be: not on btrfs, not a subvolume, no ``btrfs`` program."""
    wrong = []
    for path in paths:
        kind = await _file_system(host, path)
        if kind != "btrfs":
            wrong.append(f"{path} is on {kind}")
        elif not await host.succeeds(["btrfs", "subvolume", "show", host.real(path)]):
            wrong.append(f"{path} is on btrfs but not a subvolume of its own")
    if wrong or not (paths or job.instances):
        raise UserError(
            f"{job.service}: `consistency: snapshot` needs each volume to be a btrfs subvolume "
            f"({'; '.join(wrong) or 'no volume exists yet'}): nothing was backed up; make "
            "them subvolumes (`btrfs subvolume create`, then move the data in), or use "
            "`consistency: stop` (or `dump` for a database)"
        )
    taken = Snapshots()
    try:
        for path in paths:
            snapshot = path + SUFFIX
            if await host.succeeds(["test", "-e", host.real(snapshot)]):
                await host.run(
                    ["btrfs", "subvolume", "delete", host.real(snapshot)], what="old snapshot"
                )
            await host.run(
                ["btrfs", "subvolume", "snapshot", "-r", host.real(path), host.real(snapshot)],
                what=f"snapshot {path}",
            )
            taken.pairs.append((path, snapshot))
    except CommandFailed:
        await drop(host, job, taken)
        raise
    return taken


async def drop(host: Connector, job: Job, taken: Snapshots) -> list[str]:
    """Delete the snapshots of a run, whatever is left of them; return what could not be
    deleted (the next run replaces an instance's). Raise UserError if a volume's cannot."""
    left = []
    if taken.held:
        left = await instances.release(host, job)
        for _, path in taken.binds:
            with contextlib.suppress(UserError):
                await host.remove_dir(path)
        taken.held, taken.binds = False, []
    for _, snapshot in taken.pairs:
        await host.run(["btrfs", "subvolume", "delete", host.real(snapshot)], what="drop snapshot")
    taken.pairs.clear()
    return left
