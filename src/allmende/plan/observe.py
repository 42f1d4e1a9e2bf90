"""Read what each host has and compare it with what render wants, all hosts at once.

Files are compared by sha256 and mode first (all of a host's files in one ``stat_many``); only
a file whose content differs is read in full for its diff. Deletes come from the manifest
allmende keeps on each host (``/var/lib/allmende/manifest.json``, written by apply): a file
listed there for this host, under a path allmende manages, that render no longer wants and that
still exists.

Manifest format (mode 0600)::

    {"version": 1,
     "hosts": {"<host>": {"/srv/wiki/compose.yaml": {"sha256": "...", "sources": ["..."]},
                          "/srv/wiki/secrets/db": {"hmac": "hmac-sha256:...", "sources": [...]}}}}

A file that carries secrets is recorded by its keyed hash (``digest``), never its sha256; the
host's key (``hostpaths.HASH_KEY``) is read with the manifest.

Hosts are keyed by name so that two inventory hosts on one machine do not see each other's
files. Each host is observed concurrently; one that cannot be reached (or whose manifest is
broken) is reported in ``Plan.failed`` and the others are still planned.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import TypeVar

from allmende.connectors.base import Connector
from allmende.errors import UserError
from allmende.inventory.hostpaths import HASH_KEY, MANAGED, MANIFEST
from allmende.plan.changes import Action, Change, Plan, file_change, sensitive, sha256
from allmende.plan.digest import HostKey, host_key
from allmende.render.output import Rendered

log = logging.getLogger(__name__)


def file_mode(path: str, rendered: Rendered) -> int:
    """Return the mode a rendered file is written with: under any ``secrets/`` directory the
    renderer's if others cannot read it (0400, 0440 for an image's group), else 0600; elsewhere
    the renderer's."""
    if "secrets" in PurePosixPath(path).parts[:-1] and rendered.mode & 0o007:
        return 0o600
    return rendered.mode


def wanted_by_host(
    files: Mapping[str, Rendered], hosts: Sequence[str]
) -> dict[str, dict[str, Rendered]]:
    """Given render's files (``<host>/<path without leading slash>``), return each host's files
    by absolute host path; every host in ``hosts`` is present, files of other hosts and
    non-host outputs (``dns/``, ``kubernetes/``) are left out. Modes follow ``file_mode``."""
    result: dict[str, dict[str, Rendered]] = {host: {} for host in hosts}
    for name, rendered in files.items():
        host, _, rest = name.partition("/")
        if host in result and rest:
            result[host]["/" + rest] = replace(rendered, mode=file_mode("/" + rest, rendered))
    return result


def manifest_entries(data: bytes | None, host: str) -> dict[str, tuple[str, ...]]:
    """Given the manifest's bytes (None: no manifest yet), return the files it lists for
    ``host`` with the inventory files each came from. Raise UserError if it is malformed."""
    if data is None:
        return {}
    try:
        document = json.loads(data)
        files = document["hosts"].get(host, {}) if document.get("version") == 1 else None
        if not isinstance(files, dict):
            raise ValueError("not a version 1 manifest")
        return {str(path): tuple(entry.get("sources", ())) for path, entry in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(
            f"{host}: the manifest {MANIFEST} is not one allmende wrote ({exc}); "
            "move it away and apply again to rewrite it"
        ) from None


def manifest_hashes(data: bytes, host: str) -> dict[str, str]:
    """Return the hash the manifest records for each of ``host``'s files: its sha256, or the
    keyed hash of a file that carries secrets ({} if it is not readable: ``manifest_entries``
    reports that)."""
    try:
        files = json.loads(data)["hosts"].get(host, {})
        return {
            str(p): str(e.get("hmac") or e.get("sha256"))
            for p, e in files.items()
            if isinstance(e, dict)
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


@dataclass(frozen=True)
class Recorded:
    """What a host says about the last apply: its manifest (None: none yet) and its key for
    the hashes of secret files."""

    manifest: bytes | None
    key: HostKey


def managed(path: str) -> bool:
    """Return whether ``path`` lies where allmende may delete files."""
    pure = PurePosixPath(path)
    return pure.is_absolute() and ".." not in pure.parts and path.startswith(MANAGED)


async def observe_host(
    connector: Connector,
    wanted: Mapping[str, Rendered],
    source: str | None = None,
) -> tuple[list[Change], Recorded]:
    """Return the changes that bring one (opened) host to ``wanted``, and what it records of
    the last apply: its manifest (None: none yet), where deletes come from, and its key. With
    ``source`` (an inventory file such as ``services/wiki.yaml``), deletes are limited to
    files that came from it. Files that carry secrets are compared by hash only, never read.
    Raise UserError if the host cannot be read."""
    host = connector.host
    key = host_key(await connector.read(HASH_KEY))
    paths = sorted(wanted)
    stats = await connector.stat_many(paths)
    differing = [
        p
        for p, s in zip(paths, stats, strict=True)
        if s and s.sha256 != sha256(wanted[p].content) and not sensitive(p, s.mode, wanted[p].mode)
    ]
    contents = dict(
        zip(differing, await asyncio.gather(*(connector.read(p) for p in differing)), strict=True)
    )
    changes: list[Change] = []
    for path, have in zip(paths, stats, strict=True):
        want = wanted[path]
        change = file_change(
            host,
            path,
            want.content,
            want.mode,
            have.sha256 if have else None,
            have.mode if have else None,
            contents.get(path),
            key=key,
            owner=want.owner,
            have_owner=(have.uid, have.gid) if have else None,
        )
        if change is not None:
            changes.append(change)
    manifest = await connector.read(MANIFEST)
    listed = manifest_entries(manifest, host)
    gone = []
    for path, sources in sorted(listed.items()):
        if path in wanted or (source is not None and source not in sources):
            continue
        if not managed(path):
            log.warning("%s: the manifest lists %s, outside what allmende manages", host, path)
            continue
        gone.append(path)
    for path, have in zip(gone, await connector.stat_many(gone), strict=True):
        if have is not None:
            content = None if sensitive(path, have.mode) else await connector.read(path)
            change = file_change(host, path, None, None, have.sha256, have.mode, content, key=key)
            if change is not None:
                changes.append(change)
    return changes, Recorded(manifest, key)


#: Given an opened host, its file changes, its wanted files and what it records of the last
#: apply: the actions that follow.
Actor = Callable[
    [Connector, list[Change], Mapping[str, Rendered], Recorded], Awaitable[list[Action]]
]


T = TypeVar("T")


async def each_counted(
    hosts: Sequence[str],
    work: Callable[[str], Awaitable[T]],
    tally: Callable[[int, int], None] | None,
) -> list[T]:
    """Run ``work`` on every host concurrently and return the results in the hosts' order,
    telling ``tally`` how many of how many are done: none at first, then as each ends."""
    ended = 0
    if tally is not None:
        tally(0, len(hosts))

    async def counted(host: str) -> T:
        nonlocal ended
        result = await work(host)
        ended += 1
        if tally is not None:
            tally(ended, len(hosts))
        return result

    return await asyncio.gather(*(counted(h) for h in hosts))


async def observe(
    wanted: Mapping[str, Mapping[str, Rendered]],
    open_connector: Callable[[str], Connector],
    source: str | None = None,
    act: Actor | None = None,
    tally: Callable[[int, int], None] | None = None,
) -> Plan:
    """Observe every host in ``wanted`` concurrently and return the Plan, with the actions
    ``act`` finds on each host, telling ``tally`` how many hosts of how many are read as each
    is done. A host that cannot be reached or read is put in ``Plan.failed`` with the reason;
    the others are planned."""

    async def one(host: str) -> tuple[list[Change], list[Action], HostKey] | str:
        try:
            async with open_connector(host) as connector:
                found, recorded = await observe_host(connector, wanted[host], source)
                actions = await act(connector, found, wanted[host], recorded) if act else []
                return found, actions, recorded.key
        except UserError as exc:
            return str(exc)

    hosts = sorted(wanted)
    results = await each_counted(hosts, one, tally)
    changes: list[Change] = []
    actions: list[Action] = []
    failed: dict[str, str] = {}
    reached: list[str] = []
    keys: dict[str, HostKey] = {}
    for host, result in zip(hosts, results, strict=True):
        if isinstance(result, str):
            failed[host] = result
        else:
            reached.append(host)
            changes.extend(result[0])
            actions.extend(result[1])
            keys[host] = result[2]
    return Plan(tuple(changes), tuple(reached), failed, tuple(actions), keys)
