"""What an edge host needs to renew its certificates on its own, besides render's job file.

The collective's ACME account key (``acme/account-key``) and the TSIG key of every zone its
dns-01 certificates are updated in (``dns/<zone>/tsig``), decrypted from the secret store now,
in memory, and written by apply with mode 0600 (``/etc/allmende/certs/account.pem``,
``/etc/allmende/certs/tsig/<zone>.key``); a key that is not in the store yet (before the first
``allmende certs renew`` or ``allmende up`` made the account) is left out, and the timer's run
fails saying so. And allmende itself (``plan.backupfiles.program``), which the timer runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from allmende.inventory import certificates
from allmende.inventory.hostpaths import ACME_ACCOUNT_KEY, PROGRAM, tsig_key
from allmende.inventory.inventory import Inventory
from allmende.inventory.secrets import SecretStore
from allmende.plan.backupfiles import program
from allmende.render.output import Rendered


def cert_files(
    inventory: Inventory, root: Path, env: Mapping[str, str], hosts: Sequence[str]
) -> dict[str, Rendered]:
    """Return, keyed ``<host><path>``, the account key, the TSIG keys and allmende's zip
    application of every edge host among ``hosts`` whose timer renews certificates (only the
    keys that are stored). Raise SecretError if a stored secret cannot be decrypted."""
    files: dict[str, Rendered] = {}
    store: SecretStore | None = None
    for host in hosts:
        job = certificates.job(inventory, host)
        if job is None:
            continue
        store = store or SecretStore(root, env)
        source = inventory.file("collective")
        wanted = [(certificates.ACCOUNT_SECRET, ACME_ACCOUNT_KEY)] + [
            (certificates.tsig_secret(u.zone), tsig_key(u.zone)) for u in job.updates
        ]
        for secret, path in wanted:
            if secret in inventory.secrets:
                files[f"{host}{path}"] = Rendered(
                    store.get(secret), (source, f"secrets/{secret}.age"), 0o600
                )
        files[f"{host}{PROGRAM}"] = Rendered(program(), (source,), 0o755)
    return files


def merged(files: Mapping[str, Rendered], more: Mapping[str, Rendered]) -> dict[str, Rendered]:
    """Return ``files`` with ``more`` added; a file in both (allmende's zip application, on a
    host that backs up and renews) keeps its content and gets the sources of both."""
    result = dict(files)
    for path, made in more.items():
        had = result.get(path)
        if had is not None and had.content == made.content:
            made = Rendered(had.content, tuple(sorted({*had.sources, *made.sources})), had.mode)
        result[path] = made
    return result
