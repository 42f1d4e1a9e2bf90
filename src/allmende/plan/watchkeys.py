"""What the watch host needs to ask the other hosts how fresh their backups are, and what those
hosts need to answer it and nothing else.

For every host the watch host asks (``inventory.backups.asked_hosts``: reached over SSH, backing
a service up, not the watch host) whose key is in the secret store (``watch/<host>/ssh-key``,
made by ``allmende up`` or ``allmende backup init``):

- on the watch host, the private key (``/etc/allmende/watch/<host>.ssh-key``, mode 0600), and
  one ``known_hosts`` (``/etc/allmende/watch/known_hosts``) with the host keys the SSH connector
  trusts for these hosts (``ALLMENDE_KNOWN_HOSTS``, else ``~/.ssh/known_hosts``), so the watch
  host refuses an unknown or changed host key as apply does;
- on the asked host, the ``authorized_keys`` line of the public half, forced to run
  ``allmende backup freshness`` and nothing else (``inventory.sshkeys.forced``), recorded in
  ``/etc/allmende/watch/authorized_keys`` and put by an ``authorize`` action into the SSH user's
  ``~/.ssh/authorized_keys``, where allmende replaces only its own lines (their comment begins
  ``allmende-watch-``). When the record goes (no watch host any more), so do the lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import asyncssh

from allmende.connectors.base import Connector
from allmende.connectors.hostkeys import known_hosts_path
from allmende.inventory import backups
from allmende.inventory.hostpaths import WATCH_AUTHORIZED, WATCH_KNOWN_HOSTS, watch_key
from allmende.inventory.inventory import Inventory
from allmende.inventory.secrets import SecretStore
from allmende.inventory.sshkeys import forced, public_of
from allmende.onhost import command
from allmende.plan.changes import Action, Change
from allmende.render.output import Rendered, text
from allmende.render.watch import FRESHNESS_COMMAND


def known_lines(path: Path, address: str, port: int) -> list[str]:
    """Return the known_hosts lines for ``address``:``port`` with the keys ``path`` trusts
    (and the certificate authorities and revoked keys it names) for it; [] if none."""
    try:
        known = asyncssh.read_known_hosts(str(path))
    except (OSError, ValueError, asyncssh.Error):
        return []
    found = known.match(address, address, port)
    where = address if port == 22 else f"[{address}]:{port}"
    lines = []
    for marker, keys in (("", found[0]), ("@cert-authority ", found[1]), ("@revoked ", found[2])):
        for key in keys:
            lines.append(f"{marker}{where} {key.export_public_key().decode().strip()}")
    return lines


def watch_files(
    inventory: Inventory, root: Path, env: Mapping[str, str], hosts: Sequence[str]
) -> dict[str, Rendered]:
    """Return, keyed ``<host><path>``, the watch host's keys and known_hosts and each asked
    host's record of its ``authorized_keys`` line (see the module docstring), for ``hosts``.
    Raise SecretError if a stored key cannot be decrypted."""
    watcher = inventory.collective.watch.host
    asked = backups.asked_hosts(inventory)
    stored = [h for h in asked if backups.watch_key_secret(h) in inventory.secrets]
    wanted = [h for h in stored if h in hosts] + ([watcher] if watcher in hosts else [])
    if watcher is None or not stored or not wanted:
        return {}
    store = SecretStore(root, env)
    collective = inventory.file("collective")
    files: dict[str, Rendered] = {}
    known: list[str] = []
    trusted = known_hosts_path(env)
    for host in stored:
        secret = backups.watch_key_secret(host)
        sources: tuple[str, ...] = (
            collective,
            inventory.file("host", host),
            f"secrets/{secret}.age",
        )
        private = store.get(secret)
        if host in hosts:
            public = public_of(private, backups.watch_key_comment(inventory, host))
            line = forced(FRESHNESS_COMMAND, public)
            files[f"{host}{WATCH_AUTHORIZED}"] = text(
                line, sources, collective=inventory.collective.name
            )
        if watcher in hosts:
            files[f"{watcher}{watch_key(host)}"] = Rendered(private, sources, 0o600)
            model = inventory.hosts[host]
            assert model.ssh is not None
            found = known_lines(trusted, model.address or "", model.ssh.port)
            known += found or [f"# {host}: no host key for it in {trusted}"]
    if watcher in hosts:
        hosts_files = tuple(sorted({collective, *(inventory.file("host", h) for h in stored)}))
        files[f"{watcher}{WATCH_KNOWN_HOSTS}"] = text(
            "\n".join(known), hosts_files, collective=inventory.collective.name
        )
    return files


def _lines(rendered: Rendered | None) -> list[str]:
    if rendered is None:
        return []
    body = rendered.content.decode("utf-8").splitlines()
    return [line for line in body if line and not line.startswith("#")]


async def authorize_actions(
    connector: Connector,
    inventory: Inventory,
    changes: Sequence[Change],
    wanted: Mapping[str, Rendered],
) -> list[Action]:
    """Return the action that puts the host's watch key line (its record in ``wanted``) into
    the SSH user's ``authorized_keys``, or takes it out when the record goes, when the file
    there does not hold exactly that; [] where there is nothing to do. Raise UserError if the
    host cannot be asked."""
    host = connector.host
    model = inventory.hosts[host]
    leaving = any(c.path == WATCH_AUTHORIZED and c.kind == "delete" for c in changes)
    if model.ssh is None or (WATCH_AUTHORIZED not in wanted and not leaving):
        return []
    user, mark = model.ssh.user, backups.WATCH_KEY_MARK
    want = _lines(wanted.get(WATCH_AUTHORIZED))
    shown = await connector.run(command("authorized", "show", user, mark), what="watch key")
    have = shown.stdout.decode("utf-8", "replace").splitlines()
    if have == want:
        return []
    reason = (
        "the watch host's key may ask how fresh the backups are here"
        if want
        else "the watch host's key leaves"
    )
    return [
        Action(
            host,
            "authorize",
            "watch key",
            f"{reason} (~{user}/.ssh/authorized_keys)",
            (tuple(command("authorized", "set", user, mark, *want)),),
            (tuple(command("authorized", "set", user, mark, *have)),),
        )
    ]
