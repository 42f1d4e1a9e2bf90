"""`allmende backup init` and `authorized-keys`: each repository's secrets and its creation.

For every chosen service: a passphrase (and, for an ``ssh://`` repository, an SSH key) is made
and kept in the secret store if there is none yet (``backup/<service>/passphrase``,
``backup/<service>/ssh-key``); the repository is created from the service's host
(``operations.repository.init``) and a copy of its key is kept in the secret store too
(``backup/<service>/repository-key``). For ``ssh://`` repositories the line for the
repository server's ``authorized_keys`` is returned, so the key can do nothing but append to
its own repository. The watch host's key to each other host that backs something up
(``watch/<host>/ssh-key``) is made here too, as by ``allmende up``.
"""

from __future__ import annotations

import asyncio
import secrets as random
from collections.abc import Callable
from dataclasses import dataclass

from allmende.actions.backup import Context, on_host
from allmende.connectors.base import Connector
from allmende.errors import UserError
from allmende.inventory import backups, sshkeys
from allmende.inventory.backupjob import Job
from allmende.inventory.backups import (
    key_export_secret,
    passphrase_secret,
    ssh_key_secret,
    watch_key_secret,
)
from allmende.inventory.inventory import Inventory
from allmende.inventory.secrets import SecretStore
from allmende.operations import repository


@dataclass(frozen=True)
class Initialised:
    """What ``init`` did for one service."""

    service: str
    created: bool
    authorized_key: str | None
    error: str = ""


def secrets_of(context: Context, job: Job) -> tuple[bytes, bytes | None]:
    """Return the service's passphrase and SSH key (None for a local repository), making and
    storing those that are missing."""
    store = context.store()
    name = passphrase_secret(job.service)
    if not store.exists(name):
        store.set(name, random.token_urlsafe(32).encode())
    key: bytes | None = None
    if job.remote:
        key_name = ssh_key_secret(job.service)
        if not store.exists(key_name):
            store.set(key_name, sshkeys.new_key(repository.key_comment(job)).private)
        key = store.get(key_name)
    return store.get(name), key


def authorized_keys(context: Context) -> dict[str, str]:
    """Return the ``authorized_keys`` line of every chosen ``ssh://`` repository (making the
    keys that are missing)."""
    lines = {}
    for service, job in context.jobs.items():
        if job.remote:
            _, key = secrets_of(context, job)
            assert key is not None
            public = sshkeys.public_of(key, repository.key_comment(job))
            lines[service] = repository.authorized_key(job, public)
    return lines


def watch_keys(inventory: Inventory, store: SecretStore) -> list[str]:
    """Make the watch host's key to every host it asks how fresh its backups are
    (``backups.asked_hosts``) where the secret store has none; return those hosts. Raise
    SecretError if the store cannot take one."""
    made = []
    for host in backups.asked_hosts(inventory):
        name = watch_key_secret(host)
        if not store.exists(name):
            store.set(name, sshkeys.new_key(backups.watch_key_comment(inventory, host)).private)
            made.append(host)
    return made


def init(context: Context, say: Callable[[str], None]) -> list[Initialised]:
    """Create the repository of every chosen service (see the module docstring), and the
    watch host's keys that are missing."""
    for host in watch_keys(context.inventory, context.store()):
        say(f"the watch host's key to ask {host} how fresh its backups are is made")
    lines = authorized_keys(context)
    done = []
    for service, job in context.jobs.items():
        passphrase, key = secrets_of(context, job)

        async def work(
            host: Connector, j: Job = job, p: bytes = passphrase, k: bytes | None = key
        ) -> tuple[bool, bytes]:
            return await repository.init(host, j, p, k)

        try:
            created, exported = asyncio.run(on_host(context, service, work))
        except UserError as exc:
            done.append(Initialised(service, False, lines.get(service), str(exc)))
            say(f"{service}: FAILED: {exc}")
            continue
        context.store().set(key_export_secret(service), exported)
        said = "created" if created else "already there"
        say(f"{service}: {job.repository} {said}; its key is kept as {key_export_secret(service)}")
        done.append(Initialised(service, created, lines.get(service)))
    return done
