"""Getting a service's data back out of its repository: into a directory, or in place.

``to_directory`` extracts an archive under a directory of the host (``DIR/srv/wiki/data``
...), touching nothing live. ``in_place`` puts the service back as the archive has it: files
and dumps are first extracted to a scratch directory (an archive that does not extract changes
nothing), then the service is stopped, each volume is moved aside to
``<path>.before-restore-<time>`` and replaced by the archive's (as a btrfs subvolume again
where it was one and is backed up by ``snapshot``), each database dump is loaded
into the running database server (a PostgreSQL dump drops and recreates what it holds), and
the service is started again. A service backed up by ``dump`` gets its databases back from the
dumps (a SQLite database gets its file back, its copy made through SQLite's backup API, while
the service is stopped); its volume files were copied while it ran and are left as they are.
An Incus service backed up by ``snapshot`` gets each instance's own files back too, in the same
stop: the moment before is kept as its snapshot ``before-restore-<time>``, then its root file
system is replaced by the archive's (``operations.instances``).
"""

from __future__ import annotations

import secrets as random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from allmende import onhost
from allmende.connectors.base import Connector
from allmende.errors import UserError
from allmende.inventory.backupjob import Job, with_container
from allmende.inventory.hostpaths import SCRATCH
from allmende.operations import borg, instances
from allmende.operations.archives import archives
from allmende.operations.backup import borg_run, relative, server_of, start, stop

Say = Callable[[str], None]


#: Puts the copy ``$1`` back at ``$2`` as a new btrfs subvolume (a volume backed up by
#: ``snapshot`` must stay one, or the next backup cannot snapshot it).
PUT_INTO_SUBVOLUME = (
    'set -e; btrfs subvolume create "$2" >/dev/null; cp -a "$1/." "$2/"; '
    'rm -rf --one-file-system "$1"'
)


@dataclass
class Restored:
    """What a restore did."""

    service: str
    archive: str
    paths: list[str] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    aside: list[str] = field(default_factory=list)
    downtime: float | None = None


async def choose(host: Connector, job: Job, passphrase: bytes, archive: str | None) -> str:
    """Return ``archive`` if the repository has it, else (None) the latest. Raise UserError."""
    found = await archives(host, job, passphrase)
    names = [a.name for a in found]
    if archive is None:
        if not names:
            raise UserError(f"{job.service}: the repository holds no archive to restore")
        return names[-1]
    if archive not in names:
        known = ", ".join(names[-5:]) or "none"
        raise UserError(f"{job.service}: no archive `{archive}` (the latest: {known})")
    return archive


def scratch_dir(job: Job, what: str) -> str:
    """Return a new scratch directory's host path for one restore or drill."""
    return f"{SCRATCH}/allmende-{what}-{job.service}-{random.token_hex(4)}"


async def remove_tree(host: Connector, path: str) -> None:
    """Delete a scratch directory and everything in it."""
    await host.run(["rm", "-rf", "--one-file-system", host.real(path)], what="clean up")


async def extract(host: Connector, job: Job, passphrase: bytes, name: str, into: str) -> None:
    """Extract the whole archive ``name`` under the host directory ``into``."""
    await host.make_dir(into)
    await borg_run(host, job, borg.extract(job, name), passphrase, "borg extract", directory=into)


async def to_directory(
    host: Connector, job: Job, passphrase: bytes, archive: str | None, into: str, say: Say
) -> Restored:
    """Extract an archive (the latest if None) under ``into`` on the host. Raise UserError."""
    name = await choose(host, job, passphrase, archive)
    say(f"extracting {name} into {into}")
    await extract(host, job, passphrase, name, into)
    copies = [*job.paths, *(i.path for i in job.instances)]
    return Restored(job.service, name, paths=[f"{into.rstrip('/')}/{relative(p)}" for p in copies])


async def in_place(
    host: Connector, job: Job, passphrase: bytes, archive: str | None, say: Say
) -> Restored:
    """Put the service back as archive ``archive`` (the latest if None) has it (see the
    module docstring). Raise UserError; when the service was stopped it is started again."""
    name = await choose(host, job, passphrase, archive)
    scratch = scratch_dir(job, "restore")
    done = Restored(job.service, name)
    try:
        say(f"extracting {name}")
        await extract(host, job, passphrase, name, scratch)
        files = [] if job.dumps else [p for p in job.paths if await _has(host, scratch, p)]
        held = [i.path for i in job.instances if await _has(host, scratch, i.path)]
        if files or held:
            await _files(host, job, scratch, (files, held), done, say)
        files_of = [d for d in job.dumps if d.kind == "sqlite"]
        if files_of:
            await _sqlite(host, job, scratch, done, say)
        for dump in job.dumps:
            if dump in files_of:
                continue
            say(f"loading the dump of {dump.database}")
            await _load(host, job, scratch, dump.database)
            done.databases.append(dump.database)
    finally:
        await remove_tree(host, scratch)
    return done


async def _has(host: Connector, scratch: str, path: str) -> bool:
    return await host.succeeds(["test", "-e", host.real(f"{scratch}/{relative(path)}")])


async def _put_back(
    host: Connector,
    job: Job,
    pairs: list[tuple[str, str]],
    done: Restored,
    say: Say,
    copies: Sequence[tuple[instances.Place, str]] = (),
) -> None:
    """With the service stopped, move each live path of ``pairs`` (live host path, its copy in
    the scratch directory) aside to ``<path>.before-restore-<time>`` and its copy in, put each
    instance of ``copies`` back (``instances.put_back``), then start the service again."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    stopped: list[str] = []
    began = datetime.now(UTC)
    if job.control is not None:
        say("stopping the service")
        stopped = await stop(host, job)
    try:
        for live, copy in pairs:
            aside = f"{live}.before-restore-{stamp}"
            subvolume = job.consistency == "snapshot" and await host.succeeds(
                ["btrfs", "subvolume", "show", host.real(live)]
            )
            if await host.succeeds(["test", "-e", host.real(live)]):
                await host.run(["mv", host.real(live), host.real(aside)], what="move aside")
                done.aside.append(aside)
            put = ["sh", "-c", PUT_INTO_SUBVOLUME, "sh"] if subvolume else ["mv", "-T"]
            await host.run([*put, host.real(copy), host.real(live)], what="put back")
        if copies:
            done.aside += await instances.put_back(host, job, copies, stamp, say)
            done.instances += [place.instance.name for place, _ in copies]
    finally:
        if stopped:
            await start(host, job, stopped)
            done.downtime = (datetime.now(UTC) - began).total_seconds()
            say(f"started again after {done.downtime:.1f} s")


async def _files(
    host: Connector,
    job: Job,
    scratch: str,
    what: tuple[list[str], list[str]],
    done: Restored,
    say: Say,
) -> None:
    """Put each volume of ``what`` back as the archive has it, and each instance whose files
    it holds (by their paths in the archive) (``_put_back``)."""
    files, held = what
    found = await instances.places(host, job) if held else []  # before anything is stopped
    copies = [
        (p, f"{scratch}/{relative(p.instance.path)}") for p in found if p.instance.path in held
    ]
    pairs = [(p, f"{scratch}/{relative(p)}") for p in files]
    await _put_back(host, job, pairs, done, say, copies)
    done.paths += files


async def _sqlite(host: Connector, job: Job, scratch: str, done: Restored, say: Say) -> None:
    """Put each SQLite database's copy back in place of its file (``_put_back``)."""
    dumps = [d for d in job.dumps if d.kind == "sqlite"]
    pairs = [(d.command[0], f"{scratch}/{relative(d.path)}") for d in dumps]
    await _put_back(host, job, pairs, done, say)
    done.databases += [d.database for d in dumps]


async def _load(host: Connector, job: Job, scratch: str, database: str) -> None:
    """Load one dump from the scratch directory into its running server."""
    dump = next(d for d in job.dumps if d.database == database)
    source = host.real(f"{scratch}/{relative(dump.path)}")
    if not dump.load:
        raise UserError(
            f"{job.service}: a {dump.kind} database is restored with its files: extract the "
            f"archive with --to and put {relative(dump.path)} back while the service is stopped"
        )
    command = list(dump.load)
    if dump.find:
        command = with_container(dump.load, await server_of(host, dump))
    await host.run(onhost.command("dumps", "load", source, *command), what=f"load {database}")
