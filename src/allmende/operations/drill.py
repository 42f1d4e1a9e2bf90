"""Proving a backup restores: ``borg check``, then a restore drill of the latest archive.

The drill extracts the whole archive into a scratch directory on the service's host (every
chunk is decrypted and authenticated: a tampered archive does not extract), reads the manifest
the backup wrote into the archive and the file list it names (older manifests hold the list
themselves), and compares: every file's size and checksum, every link,
and for each database dump its checksum and row count per table. Files of a service backed up
by ``dump`` were copied while it ran, so a difference there is a note, not a failure; the
dumps are what must match. The scratch directory is removed afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from allmende import onhost
from allmende.connectors.base import Connector
from allmende.errors import UserError
from allmende.inventory.backupjob import Job
from allmende.inventory.hostpaths import backup_file_list, backup_manifest
from allmende.operations import borg
from allmende.operations.backup import borg_run, relative
from allmende.operations.restore import choose, extract, remove_tree, scratch_dir

Say = Callable[[str], None]
#: How many differences a drill names before it only counts them.
SHOWN = 10


@dataclass
class Drill:
    """What a verification found: the archive drilled, what matched, what did not."""

    service: str
    archive: str = ""
    files: int = 0
    databases: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the archive restores and matches its manifest."""
        return not self.problems


def compare_files(manifest: dict[str, object], found: dict[str, object]) -> list[str]:
    """Return every difference between the files and links a manifest records and those
    found: ``missing``, ``changed`` (size or checksum), ``unexpected``."""
    differences = []
    want_files = manifest.get("files") or {}
    have_files = found.get("files") or {}
    assert isinstance(want_files, dict) and isinstance(have_files, dict)
    for path in sorted(want_files.keys() | have_files.keys()):
        want, have = want_files.get(path), have_files.get(path)
        if have is None:
            differences.append(f"missing: {path}")
        elif want is None:
            differences.append(f"unexpected: {path}")
        elif list(want) != list(have):
            differences.append(f"changed: {path}")
    want_links, have_links = manifest.get("links") or {}, found.get("links") or {}
    assert isinstance(want_links, dict) and isinstance(have_links, dict)
    for path in sorted(want_links.keys() | have_links.keys()):
        if want_links.get(path) != have_links.get(path):
            differences.append(f"changed link: {path}")
    return differences


def compare_rows(database: str, want: dict[str, object], have: dict[str, object]) -> list[str]:
    """Return the differences between a dump as recorded and as restored."""
    differences = []
    if want.get("sha256") and want.get("sha256") != have.get("sha256"):
        differences.append(f"the dump of {database} differs from the one made")
    want_rows = want.get("rows") or {}
    have_rows = have.get("rows") or {}
    assert isinstance(want_rows, dict) and isinstance(have_rows, dict)
    for table in sorted(want_rows.keys() | have_rows.keys()):
        if want_rows.get(table) != have_rows.get(table):
            differences.append(
                f"{database}.{table}: {have_rows.get(table, 'no')} rows restored, "
                f"{want_rows.get(table, 'none')} recorded"
            )
    return differences


async def verify(
    host: Connector, job: Job, passphrase: bytes, say: Say, *, verify_data: bool = False
) -> Drill:
    """Check the repository, then drill the latest archive (see the module docstring).
    Return the Drill; Borg failing to read the repository or archive is a problem in it.
    Raise UserError only when the host cannot do the drill at all."""
    drill = Drill(job.service)
    say("borg check" + (" --verify-data" if verify_data else ""))
    try:
        await borg_run(host, job, borg.check(job, verify_data), passphrase, "borg check")
    except UserError as exc:
        drill.problems.append(f"borg check fails: {exc}")
    try:
        drill.archive = await choose(host, job, passphrase, None)
    except UserError as exc:
        drill.problems.append(str(exc))
        return drill
    scratch = scratch_dir(job, "drill")
    try:
        say(f"restore drill of {drill.archive}")
        try:
            await extract(host, job, passphrase, drill.archive, scratch)
        except UserError as exc:
            drill.problems.append(f"the archive does not restore: {exc}")
            return drill
        await _compare(host, job, scratch, drill)
    finally:
        await remove_tree(host, scratch)
    return drill


async def _compare(host: Connector, job: Job, scratch: str, drill: Drill) -> None:
    raw = await host.read(f"{scratch}/{relative(backup_manifest(job.service))}")
    if raw is None:
        drill.problems.append("the archive holds no manifest to compare with")
        return
    manifest = json.loads(raw)
    if manifest.get("error"):
        drill.problems.append(f"the backup recorded a failure: {manifest['error']}")
    ours = {relative(backup_manifest(job.service)), relative(backup_file_list(job.service))}
    if "file_list" in manifest:  # where the backup wrote it, which only allmende chooses
        listed = await host.read(f"{scratch}/{relative(backup_file_list(job.service))}")
        try:
            recorded = json.loads(listed or b"")
            manifest = {**manifest, "files": recorded["files"], "links": recorded["links"]}
        except (ValueError, KeyError, TypeError):
            drill.problems.append("the archive's file list is missing or cannot be read")
            return
    tops = ["/" + p for p in manifest.get("paths", [])]
    spec = {"root": host.real(scratch), "paths": tops, "exclude": [], "cache": None}
    ran = await host.run(onhost.command("hashes", json.dumps(spec)), what="hash the drill")
    found = json.loads(ran.stdout)
    found["files"] = {
        p: v
        for p, v in found["files"].items()
        if p not in ours and not any(p == d["path"] for d in manifest.get("dumps", {}).values())
    }
    differences = compare_files(manifest, found)
    drill.files = len(found["files"])
    if differences:
        shown = differences[:SHOWN] + (
            [f"... and {len(differences) - SHOWN} more"] if len(differences) > SHOWN else []
        )
        if manifest.get("consistency") == "dump":
            drill.notes += [f"copied while running: {d}" for d in shown]
        else:
            drill.problems += shown
    for database, want in sorted(manifest.get("dumps", {}).items()):
        path = host.real(f"{scratch}/{want['path']}")
        ran = await host.run(
            onhost.command("dumps", "count", want["kind"], path), ok=None, what="count rows"
        )
        if ran.exit != 0:
            drill.problems.append(f"the dump of {database} cannot be read back")
            continue
        have = json.loads(ran.stdout)
        drill.databases[database] = have["rows"]
        drill.problems += compare_rows(database, want, have)
