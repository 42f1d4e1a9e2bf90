"""One backup run of one service, on its host: consistent, complete, and described.

In order, on the (opened) host:

1. containers a killed run left stopped are started again (``hostpaths.stopped_file``);
2. a named pipe is made for each database dump, one for the file list and one for the
   manifest; special files in the volumes (devices, pipes, links to them) are left out of the
   archive, since Borg reads pipes;
3. ``stop``: the service's running containers are stopped (their ids kept in the stopped file);
   ``snapshot``: each volume is snapshotted read-only, and on an Incus host each instance too,
   and the copy reads the snapshots (``operations.snapshot``, ``operations.instances``);
4. at the same time: each dump is streamed into its pipe and counted (``onhost.dumps``), the
   volumes' files are hashed (``onhost.hashes``, unchanged files from a cache) and their list
   (sizes and checksums) written by the hashing straight into its pipe, and ``borg create``
   reads the volumes, then each dump, then the file list (the same bytes while nothing
   changed, so stored once), then the manifest (what the archive holds, row counts per table),
   written into its pipe once the dumps and hashes are done;
5. the containers are started again as soon as Borg is done, whether it succeeded or not (the
   downtime is reported);
6. a dump that failed makes the run fail, and its archive is deleted (an append-only repository
   only marks it; it was never the last good backup);
7. old archives are pruned by ``keep``.

Nothing here decides whether to run, records or alerts: ``actions.backup`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath

from allmende import onhost
from allmende.connectors.base import Connector
from allmende.errors import CommandFailed, CommandTimedOut, ToolMissing, UserError
from allmende.inventory.backupjob import Dump, Job, with_container
from allmende.inventory.hostpaths import (
    CACHE_DIR,
    backup_file_list,
    backup_manifest,
    hash_cache,
    stopped_file,
)
from allmende.operations import borg, snapshot

Say = Callable[[str], None]
#: What a command of the copy runs through (``operations.snapshot``), as an argument list.
Wrap = Callable[[list[str]], list[str]]

#: The version of the manifest's format: 1 held the file list itself, 2 names the archive's
#: member that holds it (``file_list``).
MANIFEST_VERSION = 2


@dataclass
class Result:
    """What one run made: the archive, Borg's figures, how long the service was down."""

    service: str
    archive: str = ""
    seconds: float = 0.0
    downtime: float | None = None
    stats: dict[str, float] = field(default_factory=dict)
    files: int = 0
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def facts(self) -> dict[str, object]:
        """Return what is recorded in the state database about the run."""
        return {
            "seconds": round(self.seconds, 3),
            "downtime": None if self.downtime is None else round(self.downtime, 3),
            "files": self.files,
            "rows": self.rows,
            "notes": self.notes,
            **{k: v for k, v in self.stats.items()},
        }


def archive_name(service: str, when: datetime | None = None) -> str:
    """Return the name of a new archive: ``<service>-<UTC time to the millisecond>`` (two runs
    within one second are two archives)."""
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    return f"{borg.archive_prefix(service)}{moment.isoformat(timespec='milliseconds')[:23]}"


def relative(path: str) -> str:
    """Return a host path as Borg stores it (without the leading ``/``)."""
    return path.lstrip("/")


async def borg_run(
    host: Connector,
    job: Job,
    argv: Sequence[str],
    passphrase: bytes,
    doing: str,
    *,
    directory: str = "/",
    timeout: float | None = None,
    wrap: Wrap = list,
) -> bytes:
    """Run a Borg command of ``job`` in ``directory`` (a host path) with the passphrase on its
    standard input (and through ``wrap``, as a snapshot needs); return its output. Raise
    UserError saying what a failure means."""
    try:
        ran = await host.run(
            wrap(borg.in_dir(host.real(directory), argv)),
            input=passphrase,
            ok=borg.OK,
            timeout=timeout,
            secrets=[passphrase.decode(errors="replace")] if passphrase else [],
            env=borg.environment(job, host.real),
            what=doing,
        )
    except ToolMissing:
        raise
    except CommandFailed as exc:
        raise borg.failure(exc, job.service, doing) from None
    return ran.stdout


async def start_again(host: Connector, job: Job, say: Say) -> None:
    """Start the containers a previous run stopped and could not start (it was killed)."""
    left = await host.read(stopped_file(job.service))
    if left is None or job.control is None:
        return
    ids = [line for line in left.decode().split() if line]
    say(f"starting {len(ids)} container(s) a previous run left stopped")
    for command in job.control.start:
        await host.run([*command, *ids] if job.control.find else list(command), what="start")
    await host.remove(stopped_file(job.service))


async def stop(host: Connector, job: Job) -> list[str]:
    """Stop the service's running containers; return their ids (the engine's own names where
    it has no ids), kept in the stopped file until they run again."""
    assert job.control is not None
    ids: list[str] = []
    if job.control.find:
        ran = await host.run(list(job.control.find), what="find the running containers")
        ids = ran.stdout.decode().split()
        if not ids:
            return []
    await host.write_atomic(stopped_file(job.service), "\n".join(ids or ["all"]).encode(), 0o600)
    for command in job.control.stop:
        await host.run([*command, *ids] if job.control.find else list(command), what="stop")
    return ids or ["all"]


async def start(host: Connector, job: Job, ids: list[str]) -> None:
    """Start again what ``stop`` stopped."""
    assert job.control is not None
    for command in job.control.start:
        await host.run([*command, *ids] if job.control.find else list(command), what="start")
    await host.remove(stopped_file(job.service))


async def survey(
    host: Connector, paths: Sequence[str], wrap: Wrap = list
) -> tuple[list[str], list[str]]:
    """Return those of ``paths`` (host paths) that exist, and the special files under them
    and the links to such files, as Borg stores their paths: one ``find`` run (through
    ``wrap``, where snapshots show)."""
    if not paths:
        return [], []
    relative_paths = [relative(p) for p in paths]
    types = ["-type", "p", "-o", "-type", "b", "-o", "-type", "c"]
    # Only links are followed to see what they lead to: ``-xtype`` alone would stat every file.
    xtypes = ["-o", "-type", "l", "(", "-xtype", "p", "-o", "-xtype", "b", "-o", "-xtype", "c", ")"]
    ran = await host.run(
        wrap(
            borg.in_dir(
                host.real("/"), ["find", *relative_paths, "(", *types, *xtypes, ")", "-print0"]
            )
        ),
        ok=(0, 1),
        what="look for special files",
    )
    said = ran.stderr.decode(errors="replace")
    missing = {p for p in relative_paths if f"'{p}': No such file or directory" in said}
    found = sorted(p for p in ran.stdout.decode(errors="replace").split("\0") if p)
    return [p for p, r in zip(paths, relative_paths, strict=True) if r not in missing], found


async def existing(host: Connector, paths: Sequence[str]) -> list[str]:
    """Return those of ``paths`` (host paths) that exist on the host."""
    return (await survey(host, paths))[0]


#: A shell function that lets go of whatever waits to open the named pipe ``$1``: a writer
#: blocked opening it (which then gets EPIPE writing, and ends) and a reader blocked opening it
#: (which then reads its end).
LET_GO = (
    'let_go() { dd if="$1" iflag=nonblock of=/dev/null count=0 status=none; '
    'dd if=/dev/null of="$1" oflag=nonblock conv=notrunc count=0 status=none 2>/dev/null; }; '
)
#: Makes fresh named pipes (mode 0600) at its arguments, letting go first of what a killed
#: run left waiting at the old ones (which would otherwise wait for ever).
MAKE_PIPES = (
    LET_GO + 'for p do if [ -p "$p" ]; then let_go "$p"; fi; rm -f -- "$p" || exit 1; done; '
    'exec mkfifo -m 0600 -- "$@"'
)


async def make_pipes(host: Connector, pipes: Sequence[str]) -> None:
    """Make a fresh named pipe (mode 0600) at each host path, replacing what was there and
    letting go of any program that a killed run left waiting at it."""
    for directory in sorted({str(PurePosixPath(p).parent) for p in pipes}):
        await host.make_dir(directory)
    await host.run(
        ["sh", "-c", MAKE_PIPES, "sh", *(host.real(p) for p in pipes)], what="make named pipes"
    )


async def let_go(host: Connector, pipe: str) -> None:
    """Let go of whatever waits to open a named pipe (``LET_GO``)."""
    await host.run(
        ["sh", "-c", LET_GO + 'let_go "$1"', "sh", host.real(pipe)], ok=None, what="let go"
    )


async def drain(host: Connector, pipe: str, writer: Awaitable[object]) -> None:
    """Read a named pipe and discard what comes until ``writer`` is done, so that a writer
    waiting for Borg (which failed) can finish; a writer that never opened it leaves the
    reader waiting, which is then let go of. Nothing is left running."""
    reading = asyncio.ensure_future(
        host.run(
            ["dd", f"if={host.real(pipe)}", "of=/dev/null", "status=none"], ok=None, timeout=600
        )
    )
    await asyncio.gather(writer, return_exceptions=True)
    while not reading.done():  # the reader may not have opened the pipe yet
        await let_go(host, pipe)
        await asyncio.wait([reading], timeout=0.2)
    await reading


def stats_file(job: Job, database: str) -> str:
    """Return where the counts of one dump are written while it streams."""
    return f"{CACHE_DIR}/backup/{job.service}.{database}.stats.json"


async def run(host: Connector, job: Job, passphrase: bytes, say: Say = lambda line: None) -> Result:
    """Back up ``job``'s service once on the opened host (see the module docstring). Return
    the Result. Raise UserError (the containers started again, the repository as before but
    for a partial archive of a failed dump, which is deleted) if anything fails."""
    result = Result(job.service)
    began = time.monotonic()
    await start_again(host, job, say)
    name = archive_name(job.service)
    pipes = [d.path for d in job.dumps] + [
        backup_file_list(job.service),
        backup_manifest(job.service),
    ]
    await host.make_dir(f"{CACHE_DIR}/backup")
    await make_pipes(host, pipes)
    paths, found_special = await survey(host, job.paths)
    relative_paths = [relative(p) for p in paths]
    special = [s for s in found_special if f"/{s}" not in pipes]
    excludes = [borg.path_pattern(p) for p in job.exclude]
    stopped: list[str] | None = None
    stop_started = 0.0
    taken = snapshot.Snapshots()
    try:
        if job.consistency == "snapshot":
            say("taking read-only snapshots" + (" of the volumes" if not job.instances else ""))
            taken = await snapshot.hold(host, job, paths)
            if taken.binds:  # the instances' files, as the snapshots have them
                copies = [path for _, path in taken.binds]
                special += (await survey(host, copies, taken.wrapper(host)))[1]
                relative_paths += [relative(p) for p in copies]
        excludes += [borg.full_pattern(s) for s in special]
        if special:
            shown = ", ".join(special[:5])
            result.notes.append(f"left out {len(special)} special file(s): {shown}")
        if job.control is not None and job.consistency == "stop":
            say("stopping the service")
            stop_started = time.monotonic()
            stopped = await stop(host, job)
            if not stopped:
                result.notes.append("the service was not running: nothing was stopped")
        say(f"archiving {len(relative_paths)} path(s) and {len(job.dumps)} dump(s) as {name}")
        outcome = await _archive(
            host, job, passphrase, name, (relative_paths, excludes, pipes), taken.wrapper(host)
        )
    finally:
        if taken.pairs or taken.held:
            for left in await snapshot.drop(host, job, taken):
                say(left)
                result.notes.append(left)
        if stopped:
            await start(host, job, stopped)
            result.downtime = time.monotonic() - stop_started
            say(f"started again after {result.downtime:.1f} s")
        for pipe in pipes:
            await host.remove(pipe)
    created, manifest, failed = outcome
    result.archive = name
    result.stats = borg.parse_stats(created)
    files, dumps = manifest.get("files", 0), manifest.get("dumps", {})
    assert isinstance(files, int) and isinstance(dumps, dict)
    result.files = files
    result.rows = {db: d["rows"] for db, d in dumps.items()}
    if failed:
        say(f"a dump failed: deleting the archive {name}")
        await borg_run(host, job, borg.delete(job, name), passphrase, "delete the partial archive")
        raise UserError(f"{job.service}: the backup failed: " + "; ".join(failed))
    if job.keep:
        say("pruning old archives")
        await borg_run(host, job, borg.prune(job), passphrase, "prune")
    result.seconds = time.monotonic() - began
    return result


async def _archive(
    host: Connector,
    job: Job,
    passphrase: bytes,
    name: str,
    what: tuple[list[str], list[str], list[str]],
    wrap: Wrap,
) -> tuple[bytes, dict[str, object], list[str]]:
    """Run the dumps, the hashing and ``borg create`` together on ``what`` (the paths, the
    exclude patterns, the pipes: the dumps', the file list's, the manifest's), Borg and the
    hashing through ``wrap``; return Borg's answer, the manifest and what failed among the
    dumps and the hashing. Raise UserError if Borg fails."""
    paths, excludes, pipes = what
    writers = [asyncio.create_task(_dump(host, job, dump.database)) for dump in job.dumps]
    hashing = asyncio.create_task(_hashes(host, job, paths, pipes[-2], wrap))

    async def manifest() -> dict[str, object]:
        document: dict[str, object] = {
            "version": MANIFEST_VERSION,
            "service": job.service,
            "archive": name,
            "consistency": job.consistency,
            "paths": paths,
            "file_list": relative(pipes[-2]),
        }
        try:
            dumps = await asyncio.gather(*writers)
            counts = await hashing
            document.update(
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                files=counts["files"],
                links=counts["links"],
                dumps={
                    d.database: {"path": relative(d.path), "kind": d.kind, **stats}
                    for d, stats in zip(job.dumps, dumps, strict=True)
                },
            )
        except UserError as exc:
            document["error"] = str(exc)
        finally:
            # Borg waits for the manifest, whatever happened.
            text = json.dumps(document, sort_keys=True).encode()
            await host.run(
                ["dd", f"of={host.real(pipes[-1])}", "status=none"], input=text, what="manifest"
            )
        return document

    written = asyncio.create_task(manifest())
    create = borg.create(job, name, [*paths, *(relative(p) for p in pipes)], excludes)
    try:
        created = await borg_run(host, job, create, passphrase, "borg create", wrap=wrap)
    except UserError:
        for pipe, task in zip(pipes, [*writers, hashing, written], strict=True):
            if not task.done():
                await drain(host, pipe, task)
        await asyncio.gather(written, return_exceptions=True)
        raise
    document = await written
    dumps = document.get("dumps", {})
    assert isinstance(dumps, dict)
    failed = [f"dump of {db}: {d['error']}" for db, d in dumps.items() if d.get("exit")]
    if "error" in document:
        failed.append(str(document["error"]))
    return created, document, failed


async def _dump(host: Connector, job: Job, database: str) -> dict[str, object]:
    """Stream one dump into its pipe (``onhost.dumps``); return its counts, or what failed."""
    dump = next(d for d in job.dumps if d.database == database)
    command = list(dump.command)
    spec: dict[str, object] = {
        "kind": dump.kind,
        "fifo": host.real(dump.path),
        "stats": host.real(stats_file(job, database)),
    }
    try:
        if dump.kind == "sqlite":
            spec["file"] = host.real(command[0])
        elif dump.find:
            command = with_container(dump.command, await server_of(host, dump))
        spec["command"] = command
        await host.run(
            onhost.command("dumps", "write", json.dumps(spec)), ok=(0, 1), what=f"dump {database}"
        )
    except UserError as exc:
        # Borg waits for this pipe: give it an empty dump (unless it was read), and say why.
        with contextlib.suppress(CommandTimedOut):
            await host.run(
                ["dd", f"of={host.real(dump.path)}", "status=none"], input=b"", timeout=10
            )
        return {"exit": 1, "error": str(exc), "rows": {}, "bytes": 0, "sha256": ""}
    data = await host.read(stats_file(job, database))
    await host.remove(stats_file(job, database))
    if data is None:
        return {"exit": 1, "error": "the dump left no counts", "rows": {}, "bytes": 0}
    found_stats: dict[str, object] = json.loads(data)
    return found_stats


async def server_of(host: Connector, dump: Dump) -> str:
    """Return the id of the running container that serves a dump's database. Raise
    UserError if none runs."""
    ran = await host.run(list(dump.find), what=f"find the server of {dump.database}")
    found = ran.stdout.decode().split()
    if not found:
        raise UserError(f"the database server of {dump.database} is not running")
    return found[0]


async def _hashes(
    host: Connector, job: Job, paths: list[str], pipe: str, wrap: Wrap
) -> dict[str, int]:
    """Write the checksums of the files under ``paths`` into the named pipe ``pipe`` (host
    paths; ``onhost.hashes``); return how many files and links they are. Raise UserError if
    the hashing fails (Borg, waiting for that pipe, then gets an empty list)."""
    spec = {
        "root": host.real("/"),
        "paths": [f"/{p}" for p in paths],
        "exclude": list(job.exclude),
        "cache": host.real(hash_cache(job.service)),
        "out": host.real(pipe),
    }
    try:
        ran = await host.run(
            wrap(onhost.command("hashes", json.dumps(spec))), what="hash the files"
        )
    except UserError:
        # Borg waits for the list, whatever happened: give it an empty one (unless it was read).
        with contextlib.suppress(CommandTimedOut):
            await host.run(["dd", f"of={host.real(pipe)}", "status=none"], input=b"", timeout=10)
        raise
    counts = json.loads(ran.stdout)
    return {"files": int(counts["files"]), "links": int(counts["links"])}
