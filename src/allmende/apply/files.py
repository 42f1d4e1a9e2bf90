"""Bring one host's files to the plan: validate, keep the previous version, write atomically.

For one (opened, locked) host and its changes, in this order, so that anything that can fail
fails before a live file is touched:

1. check each file is still as the plan saw it (else: plan again);
2. create the missing directories (each one created is remembered) and write every new file
   to its temp beside the target (``.<name>.allmende-tmp``, fsync), with its mode and owner
   (0600 under any ``secrets/`` directory); a full disk stops here;
3. validate the temps with the real tool where one exists (``haproxy -c -f`` for
   ``haproxy.cfg``); a rejected file stops here;
4. copy each file about to be replaced or deleted to ``<path>.allmende-prev`` (remembering the
   previous copy there was), rename every temp over its target and delete what the plan
   deletes (``delete``, which apply runs once what leaves is down);
5. once what follows the files has worked (``apply.host``), write the manifest (mode 0600).

A host that has no key for the hashes of secret files yet gets the plan's before step 1
(``plan.digest``).

Up to step 3 nothing live has changed: on failure the temps and the created directories are
removed. A rollback after step 4 puts every file back, the previous copies as they were, and
removes the directories the apply created, so the host is as it was.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from allmende.connectors.base import PREVIOUS, Connector
from allmende.errors import CommandFailed, PlanChanged, ToolMissing, UserError
from allmende.inventory.hostpaths import HASH_KEY, MANIFEST, SECRETS
from allmende.plan.changes import Change, sensitive, sha256
from allmende.plan.digest import HostKey
from allmende.plan.observe import file_mode
from allmende.render.output import Rendered

#: Programs that check a candidate file, by file name; the temp's real path is appended.
VALIDATORS: dict[str, tuple[str, ...]] = {"haproxy.cfg": ("haproxy", "-c", "-f")}


def new_manifest(
    old: bytes | None,
    host: str,
    wanted: Mapping[str, Rendered],
    deleted: Sequence[str],
    scoped: bool,
    key: HostKey,
) -> bytes:
    """Return the manifest after the apply: ``host``'s section lists every file of ``wanted``
    (with sha256, or the hash keyed with the host's ``key`` for a file that carries secrets,
    and sources); with ``scoped`` (only one service applied) the other entries of the host are
    kept, except ``deleted``. Other hosts' sections are kept as they were, but that a sha256
    an older allmende recorded of a secret file is replaced by its keyed hash."""
    document: dict[str, object] = {"version": 1, "hosts": {}}
    if old is not None:
        try:
            loaded = json.loads(old)
            if isinstance(loaded, dict) and isinstance(loaded.get("hosts"), dict):
                document = loaded
        except ValueError:
            pass
    hosts = document["hosts"]
    assert isinstance(hosts, dict)
    entries = dict(hosts.get(host, {})) if scoped else {}
    for path in deleted:
        entries.pop(path, None)
    for path, rendered in wanted.items():
        plain = sha256(rendered.content)
        secret = sensitive(path, rendered.mode)
        entry = {"hmac": key.keyed(plain)} if secret else {"sha256": plain}
        entries[path] = {**entry, "sources": list(rendered.sources)}
    hosts[host] = dict(sorted(entries.items()))
    for section in hosts.values():
        for path, entry in section.items() if isinstance(section, dict) else ():
            secret = SECRETS in PurePosixPath(str(path)).parts[:-1]
            if secret and isinstance(entry, dict) and "sha256" in entry:
                entry["hmac"] = key.keyed(str(entry.pop("sha256")))
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


async def _check_unchanged(connector: Connector, changes: Sequence[Change], key: HostKey) -> None:
    found = await connector.stat_many([c.path for c in changes])
    for change, have in zip(changes, found, strict=True):
        now = key.shown(have.sha256, change.sensitive) if have else None
        if now != change.before:
            raise PlanChanged(
                f"{connector.host}:{change.path} changed since the plan was made; nothing was "
                "applied to this host: run apply again to see the new plan"
            )


async def _own_key(connector: Connector, key: HostKey) -> None:
    """Make sure the host keeps ``key`` for the hashes of its secret files: write it (mode
    0600) where the plan chose it, else check it is still the one there. Raise PlanChanged if
    the host's key changed since the plan."""
    found = await connector.read(HASH_KEY)
    if key.new and (found is None or len(found) != len(key.value)):
        await connector.write_atomic(HASH_KEY, key.value, 0o600)
    elif found != key.value:
        raise PlanChanged(
            f"{connector.host}: its key for the hashes of secret files ({HASH_KEY}) changed "
            "since the plan was made; nothing was applied to this host: run apply again"
        )


async def _validate(
    connector: Connector, path: str, temp: str, content: bytes, staged: Mapping[str, str]
) -> None:
    """Check the temp of ``path`` with its validator, if it has one. A file it names that is
    staged too (``staged``: host path -> temp) is checked in its new version: the check runs on
    a copy naming the other temps instead."""
    validator = VALIDATORS.get(PurePosixPath(path).name)
    if validator is None:
        return
    others = {p: t for p, t in staged.items() if p != path and p.encode() in content}
    checked = temp
    if others:
        text = content
        for other, other_temp in others.items():
            text = text.replace(other.encode(), connector.real(other_temp).encode())
        checked = await connector.write_temp(f"{path}-check", text, 0o600)
    try:
        await connector.run([*validator, connector.real(checked)], timeout=120.0)
    except ToolMissing:
        raise UserError(
            f"{connector.host}: `{validator[0]}` is not installed there, so {path} cannot be "
            f"checked before it goes live; install it on the host. Nothing was replaced"
        ) from None
    except CommandFailed as exc:
        said = exc.output.replace(connector.real(checked), path)
        for other, other_temp in others.items():
            said = said.replace(connector.real(other_temp), other)
        alerts = [line for line in said.splitlines() if "[ALERT]" in line]
        said = "\n".join(alerts) if alerts else said
        raise UserError(
            f"{connector.host}: `{' '.join(validator)}` rejects the new {path}, so nothing "
            f"on this host was replaced:\n{said[-2000:]}"
        ) from None
    finally:
        if checked != temp:
            await connector.remove(checked)


#: How many files are written to one host at the same time.
CONCURRENT = 16


async def _each(step: Callable[[str], Awaitable[object]], paths: Sequence[str]) -> None:
    """Run ``step`` for every path, ``CONCURRENT`` at a time, all of them even when some
    fail; then raise the first UserError."""
    gate = asyncio.Semaphore(CONCURRENT)

    async def one(path: str) -> None:
        async with gate:
            await step(path)

    results = await asyncio.gather(*(one(p) for p in paths), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


@dataclass
class Staged:
    """One host's changes written to temps, checked, and not yet live."""

    changes: Sequence[Change]
    temps: list[tuple[str, str]] = field(default_factory=list)
    manifest_before: bytes | None = None
    committed: list[Change] = field(default_factory=list)
    recorded: bool = False
    #: The directories this apply created, parents first.
    created: list[str] = field(default_factory=list)
    #: The previous versions (``.allmende-prev``) there were before this apply made new ones:
    #: host path of the file -> (content, mode, owner).
    previous: dict[str, tuple[bytes, int, tuple[int, int]]] = field(default_factory=dict)


async def stage(
    connector: Connector, changes: Sequence[Change], wanted: Mapping[str, Rendered], key: HostKey
) -> Staged:
    """Steps 1 to 4 on the opened, locked host: nothing live changes but that a host without a
    key for the hashes of secret files gets the plan's (``key``). Raise UserError, with every
    temp removed, if a file or the key changed since the plan, the disk is full or a validator
    rejects a file."""
    await _own_key(connector, key)
    await _check_unchanged(connector, changes, key)
    staged = Staged(changes)
    writes = [c.path for c in changes if c.kind != "delete"]
    # Directories first, parents before children (those of one depth at once), then the
    # files at once: over SSH each write is several round trips.
    directories = {d for p in writes for d in PurePosixPath(p).parents if len(d.parts) > 1}
    for depth in sorted({len(d.parts) for d in directories}):
        level = sorted(str(d) for d in directories if len(d.parts) == depth)

        async def make(path: str) -> None:
            if await connector.make_dir(path):
                staged.created.append(path)

        try:
            await _each(make, level)
        except UserError:
            await discard(connector, staged)
            raise

    async def write(path: str) -> None:
        rendered = wanted[path]
        mode = file_mode(path, rendered)
        temp = await connector.write_temp(path, rendered.content, mode, rendered.owner)
        staged.temps.append((temp, path))

    try:
        await _each(write, writes)
        staged.temps.sort(key=lambda pair: writes.index(pair[1]))
        temps = {path: temp for temp, path in staged.temps}
        for temp, path in staged.temps:
            await _validate(connector, path, temp, wanted[path].content, temps)
    except UserError:
        await discard(connector, staged)
        raise
    return staged


async def discard(connector: Connector, staged: Staged) -> None:
    """Remove the temps of a staged apply that will not go live, and the directories it
    created (with whatever came into them since)."""
    for temp, _ in staged.temps:
        await connector.remove(temp)
    await remove_created(connector, staged)


async def remove_created(connector: Connector, staged: Staged) -> None:
    """Remove every directory the apply created, deepest first: all in them is new."""
    for path in sorted(staged.created, key=lambda p: -len(PurePosixPath(p).parts)):
        await connector.remove_tree(path)


async def commit(connector: Connector, staged: Staged, deletes: bool = True) -> None:
    """Step 4: rename every temp over its target and (unless not ``deletes``: ``delete``
    does it later) delete what the plan deletes. Each change done is kept in
    ``staged.committed`` for ``rollback``."""
    staged.manifest_before = await connector.read(MANIFEST)
    replaced = [c.path for c in staged.changes if c.kind != "create"]
    for path in replaced:
        kept = await connector.read(path + PREVIOUS)
        found = await connector.stat(path + PREVIOUS) if kept is not None else None
        if kept is not None and found is not None:
            staged.previous[path] = (kept, found.mode, (found.uid, found.gid))
    await _each(connector.keep_previous, replaced)
    by_path = {c.path: c for c in staged.changes}
    temps = dict((path, temp) for temp, path in staged.temps)

    async def rename(path: str) -> None:
        await connector.rename(temps[path], path)
        staged.committed.append(by_path[path])

    await _each(rename, [path for _, path in staged.temps])
    if deletes:
        await delete(connector, staged)


async def delete(connector: Connector, staged: Staged) -> None:
    """Delete what the plan deletes and ``commit`` left (their previous versions are kept)."""
    for change in staged.changes:
        if change.kind == "delete" and change not in staged.committed:
            await connector.remove(change.path)
            staged.committed.append(change)


async def record(
    connector: Connector,
    staged: Staged,
    wanted: Mapping[str, Rendered],
    key: HostKey,
    scoped: bool = False,
) -> None:
    """Step 6, once everything that follows the files has worked: write the manifest. Until
    then it names the files of the last apply that finished, so that a plan after an apply
    that died half-way still brings up what that apply did not."""
    deleted = [c.path for c in staged.changes if c.kind == "delete"]
    manifest = new_manifest(staged.manifest_before, connector.host, wanted, deleted, scoped, key)
    await connector.write_atomic(MANIFEST, manifest, 0o600)
    staged.recorded = True


async def rollback(connector: Connector, staged: Staged) -> None:
    """Put back what ``commit`` changed: each replaced or deleted file from its previous
    version, each created file removed, the manifest as it was. Temps not yet renamed are
    removed."""
    done = {c.path for c in staged.committed}
    for temp, path in staged.temps:
        if path not in done:
            await connector.remove(temp)
    for change in reversed(staged.committed):
        if change.kind == "create":
            await connector.remove(change.path)
        else:
            await connector.rename(change.path + PREVIOUS, change.path)
    for path, (data, mode, owner) in staged.previous.items():
        temp = await connector.write_temp(path + PREVIOUS, data, mode, owner)
        await connector.rename(temp, path + PREVIOUS)
    for change in staged.changes:
        if change.kind != "create" and change.path not in staged.previous:
            await connector.remove(change.path + PREVIOUS)
    if staged.recorded and staged.manifest_before is not None:
        await connector.write_atomic(MANIFEST, staged.manifest_before, 0o600)
    await remove_created(connector, staged)
