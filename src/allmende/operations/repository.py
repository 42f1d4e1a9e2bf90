"""Creating a service's repository, and the forced command that keeps it append-only.

``init`` puts the repository's secrets on the service's host (the same files apply writes:
``hostpaths.backup_passphrase``, ``backup_ssh_key``, mode 0600), runs ``borg init`` there and
returns ``borg key export`` of the new repository, for the secret store. ``authorized_key``
is the line the repository server's ``authorized_keys`` needs for an ``ssh://`` repository:
the host's key may run only ``borg serve --append-only --restrict-to-path <repository>``
(``inventory.sshkeys.forced``), so a host that is broken into cannot delete or overwrite what
it backed up.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from allmende.connectors.base import Connector
from allmende.errors import UserError
from allmende.inventory.backupjob import Job
from allmende.inventory.hostpaths import backup_passphrase, backup_ssh_key
from allmende.inventory.sshkeys import forced
from allmende.operations import borg
from allmende.operations.backup import borg_run


def repository_path(repository: str) -> str:
    """Return the path on the server of an ``ssh://`` repository. Raise UserError."""
    path = urlsplit(repository).path
    if not path:
        raise UserError(f"{repository}: an ssh:// repository needs a path")
    return path[3:] if path.startswith("/./") else path


def authorized_key(job: Job, public: str) -> str:
    """Return the ``authorized_keys`` line that lets ``public`` only serve the job's
    repository (append-only when the job says so)."""
    serve = ["borg", "serve", "--restrict-to-path", repository_path(job.repository)]
    if job.append_only:
        serve.insert(2, "--append-only")
    return forced(serve, public)


def key_comment(job: Job) -> str:
    """Return the comment of a service's backup key: what it is for, where."""
    return f"allmende-backup-{job.service}@{job.host}"


async def init(
    host: Connector, job: Job, passphrase: bytes, ssh_key: bytes | None
) -> tuple[bool, bytes]:
    """Put the repository's secrets on the host and create the repository; return whether it
    was created now (False: it existed) and its exported key. Raise UserError."""
    await host.write_atomic(backup_passphrase(job.service), passphrase + b"\n", 0o600)
    if ssh_key is not None:
        await host.write_atomic(backup_ssh_key(job.service), ssh_key, 0o600)
    created = True
    try:
        await borg_run(host, job, borg.init(job), passphrase, "borg init", timeout=300)
    except UserError as exc:
        if "a repository already exists there" not in str(exc):
            raise
        created = False
    exported = await borg_run(
        host, job, ["borg", "key", "export", job.repository], passphrase, "borg key export"
    )
    return created, exported
