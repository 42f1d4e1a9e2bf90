"""Bring one host's files to the plan: validate, keep the previous version, write atomically.

For one (opened, locked) host and its changes, in this order, so that anything that can fail
fails before a live file is touched:

1. check each file is still as the plan saw it (else: plan again);
2. copy each file about to be replaced or deleted to ``<path>.allmende-prev``;
3. write every new file to its temp beside the target (``.<name>.allmende-tmp``, fsync), with
   its mode (0600 under any ``secrets/`` directory); a full disk stops here;
4. validate the temps with the real tool where one exists (``haproxy -c -f`` for
   ``haproxy.cfg``); a rejected file stops here;
5. rename every temp over its target, delete what the plan deletes, and write the manifest.

Up to step 4 nothing live has changed and the temps are removed on failure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from allmende.connectors.base import Connector
from allmende.errors import UserError
from allmende.plan.changes import Change, sha256
from allmende.plan.observe import MANIFEST, file_mode
from allmende.render.output import Rendered

#: Programs that check a candidate file, by file name; the temp's real path is appended.
VALIDATORS: dict[str, tuple[str, ...]] = {"haproxy.cfg": ("haproxy", "-c", "-f")}


def new_manifest(
    old: bytes | None,
    host: str,
    wanted: Mapping[str, Rendered],
    deleted: Sequence[str],
    scoped: bool,
) -> bytes:
    """Return the manifest after the apply: ``host``'s section lists every file of ``wanted``
    (with sha256 and sources); with ``scoped`` (only one service applied) the other entries of
    the host are kept, except ``deleted``. Other hosts' sections are kept as they were."""
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
        entries[path] = {"sha256": sha256(rendered.content), "sources": list(rendered.sources)}
    hosts[host] = dict(sorted(entries.items()))
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


async def _check_unchanged(connector: Connector, changes: Sequence[Change]) -> None:
    for change in changes:
        found = await connector.stat(change.path)
        now = found.sha256 if found else None
        if now != change.before:
            raise UserError(
                f"{connector.host}:{change.path} changed since the plan was made; nothing was "
                "applied to this host: run apply again to see the new plan"
            )


async def _validate(connector: Connector, path: str, temp: str) -> None:
    validator = VALIDATORS.get(PurePosixPath(path).name)
    if validator is None:
        return
    ran = await connector.run([*validator, connector.real(temp)])
    if ran.exit == 127:
        raise UserError(
            f"{connector.host}: `{validator[0]}` is not installed there, so {path} cannot be "
            f"checked before it goes live; install it on the host. Nothing was replaced"
        )
    if ran.exit != 0:
        said = (ran.stderr + ran.stdout).decode(errors="replace").strip()
        said = said.replace(connector.real(temp), path)
        alerts = [line for line in said.splitlines() if "[ALERT]" in line]
        said = "\n".join(alerts) if alerts else said
        raise UserError(
            f"{connector.host}: `{' '.join(validator)}` rejects the new {path}, so nothing "
            f"on this host was replaced:\n{said[-2000:]}"
        )


async def apply_files(
    connector: Connector,
    changes: Sequence[Change],
    wanted: Mapping[str, Rendered],
    scoped: bool = False,
) -> None:
    """Apply one host's ``changes`` (from a plan of ``wanted``, its rendered files by path) on
    the opened, locked host, then rewrite the manifest. Raise UserError, having replaced
    nothing, if a file changed since the plan, the disk is full or a validator rejects a file."""
    await _check_unchanged(connector, changes)
    writes = [c for c in changes if c.kind != "delete"]
    deletes = [c for c in changes if c.kind == "delete"]
    for change in changes:
        if change.kind != "create":
            await connector.keep_previous(change.path)
    staged: list[tuple[str, str]] = []
    try:
        for change in writes:
            rendered = wanted[change.path]
            temp = await connector.write_temp(
                change.path, rendered.content, file_mode(change.path, rendered)
            )
            staged.append((temp, change.path))
        for temp, path in staged:
            await _validate(connector, path, temp)
    except UserError:
        for temp, _ in staged:
            await connector.remove(temp)
        raise
    for temp, path in staged:
        await connector.rename(temp, path)
    for change in deletes:
        await connector.remove(change.path)
    manifest = new_manifest(
        await connector.read(MANIFEST),
        connector.host,
        wanted,
        [c.path for c in deletes],
        scoped,
    )
    await connector.write_atomic(MANIFEST, manifest, 0o644)
