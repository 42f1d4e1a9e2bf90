"""What a host needs to back up its services on its own, besides render's job files.

- each backed-up service's repository passphrase and, for an ``ssh://`` repository, its SSH
  key, decrypted from the secret store now, in memory, and written by apply with mode 0600
  (``/etc/allmende/backup/<service>.passphrase`` and ``.ssh-key``); a service whose secrets
  are not in the store yet (before ``allmende backup init``) gets none, and its timer's run
  fails saying so;
- allmende itself, as one zip application (``/usr/local/lib/allmende/allmende.pyz``) holding
  allmende's modules and click, the one library its backup job needs (everything else it uses
  is Python's standard library): the host's ``python3`` runs it, nothing is installed there.
  The archive is built reproducibly (sorted entries, fixed times), so it changes on a host only
  when allmende does. The watch host (``watch.host``) gets it too: its unit runs the watcher
  from it.
"""

from __future__ import annotations

import importlib.util
import io
import zipfile
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

from allmende.inventory import backups
from allmende.inventory.backups import passphrase_secret, ssh_key_secret
from allmende.inventory.hostpaths import PROGRAM, backup_passphrase, backup_ssh_key
from allmende.inventory.inventory import Inventory
from allmende.inventory.secrets import SecretStore
from allmende.render.output import Rendered

#: What the zip application runs: allmende's command line.
MAIN = "from allmende.cli.main import run\nrun()\n"
#: The packages the zip application carries.
PACKAGES = ("allmende", "click")
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"cannot find the package {name}")
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def program() -> bytes:
    """Return allmende's zip application (see the module docstring)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in PACKAGES:
            base = _package_dir(name)
            for path in sorted(base.rglob("*")):
                if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
                    continue
                entry = zipfile.ZipInfo(f"{name}/{path.relative_to(base).as_posix()}", _EPOCH)
                entry.compress_type = zipfile.ZIP_DEFLATED
                entry.external_attr = 0o644 << 16
                archive.writestr(entry, path.read_bytes())
        main = zipfile.ZipInfo("__main__.py", _EPOCH)
        main.external_attr = 0o644 << 16
        archive.writestr(main, MAIN)
    return b"#!/usr/bin/python3 -I\n" + buffer.getvalue()


def backup_files(
    inventory: Inventory,
    root: Path,
    env: Mapping[str, str],
    hosts: Sequence[str],
    service: str | None = None,
) -> dict[str, Rendered]:
    """Return, keyed ``<host><path>``, the passphrase and SSH key files of every backed-up
    service on ``hosts`` (only ``service`` if given) whose secrets are stored, and allmende's
    zip application on each host that backs something up. Raise SecretError if a stored
    secret cannot be decrypted."""
    files: dict[str, Rendered] = {}
    store = SecretStore(root, env)
    on_host: dict[str, list[str]] = {}
    for name in backups.backed_up(inventory):
        host = inventory.services[name].host
        if host not in hosts:
            continue
        on_host.setdefault(host, []).append(inventory.file("service", name))
        if service is not None and name != service:
            continue
        source = inventory.file("service", name)
        for secret, path in (
            (passphrase_secret(name), backup_passphrase(name)),
            (ssh_key_secret(name), backup_ssh_key(name)),
        ):
            if secret in inventory.secrets:
                value = store.get(secret)
                if path.endswith(".passphrase"):
                    value = value.rstrip(b"\n") + b"\n"
                files[f"{host}{path}"] = Rendered(value, (source, f"secrets/{secret}.age"), 0o600)
    watcher = inventory.collective.watch.host
    if watcher is not None and watcher in hosts:  # the watch host's unit runs allmende too
        on_host.setdefault(watcher, []).append(inventory.file("collective"))
    for host, sources in on_host.items():
        files[f"{host}{PROGRAM}"] = Rendered(program(), tuple(sorted(sources)), 0o755)
    return files
