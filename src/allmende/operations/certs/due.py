"""Renew the collective's certificates from the inventory: what `allmende certs renew`,
`allmende up` and the watcher call.

The job covers every certificate of every edge (``inventory.certificates.job``); the secrets
come from the secret store: the ACME account key (``acme/account-key``, made and stored there on
first use: one account per collective) and each zone's TSIG key (``dns/<zone>/tsig``). Every edge
host the certificates need is reached through ``connect`` (SSH, or this machine); a
certificate whose edge cannot be reached fails with that reason. Attempts are recorded in the
state database of this machine (``ALLMENDE_STATE``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from allmende import connectors
from allmende.connectors.base import Connector
from allmende.errors import UserError
from allmende.inventory import certificates
from allmende.inventory.certjob import Job
from allmende.inventory.inventory import Inventory
from allmende.inventory.secrets import SecretStore
from allmende.operations.certs import client
from allmende.operations.certs.renew import Renewal, Say, Secrets, renew
from allmende.state import store

Connect = Callable[[Inventory, str, Mapping[str, str]], Connector]


def account_key(root: Path, env: Mapping[str, str], say: Say = lambda line: None) -> bytes:
    """Return the collective's ACME account key from the secret store, making and storing a
    new one if there is none yet. Raise SecretError if the store cannot give or take it."""
    secrets = SecretStore(root, env)
    if secrets.exists(certificates.ACCOUNT_SECRET):
        return secrets.get(certificates.ACCOUNT_SECRET)
    key = client.new_account_key()
    secrets.set(certificates.ACCOUNT_SECRET, key)
    say(
        f"a new ACME account key is in the secret store ({certificates.ACCOUNT_SECRET}): "
        "commit it, and apply so that the edges' timers have it"
    )
    return key


def secrets_of(inventory: Inventory, env: Mapping[str, str], job: Job, say: Say) -> Secrets:
    """Return the account key and the TSIG keys the job needs (those stored)."""
    store_ = SecretStore(inventory.root, env)
    tsig = {
        u.zone: store_.get(name)
        for u in job.updates
        if store_.exists(name := certificates.tsig_secret(u.zone))
    }
    return Secrets(account_key(inventory.root, env, say), tsig)


async def renew_due(
    inventory: Inventory,
    env: Mapping[str, str],
    *,
    names: Collection[str] = (),
    force: bool = False,
    trigger: str = "watch",
    connect: Connect = connectors.connect,
    say: Say = lambda line: None,
) -> list[Renewal]:
    """Renew every certificate of the inventory that is due (only ``names`` if given; all of
    them with ``force``), on every edge that serves it; return how each went (empty without
    ``acme:``). A certificate that failed lately waits its backoff, and the CA's rate limit
    always. ``trigger`` is recorded with each attempt (``watch``, ``up``, ``renew``).

    Raise UserError for an unknown name, SecretError if the account key cannot be read or
    stored; every failure of a certificate itself is in its Renewal (and alerted)."""
    job = certificates.job(inventory)
    if job is None:
        if names:
            raise UserError("no certificates to renew: allmende.yaml has no `acme:` section")
        return []
    chosen = set(names) or {c.name for c in job.certificates}
    needed = sorted({e for c in job.certificates if c.name in chosen for e in c.edges})
    secrets = secrets_of(inventory, env, job, say)
    async with contextlib.AsyncExitStack() as stack:
        opened: dict[str, Connector] = {}
        for edge in needed:
            try:
                opened[edge] = await stack.enter_async_context(connect(inventory, edge, env))
            except UserError as exc:
                say(f"{edge}: cannot be reached: {exc}")
        return await renew(
            job,
            secrets,
            opened,
            store.default_path(env),
            trigger=trigger,
            names=names,
            force=force,
            say=say,
            notify_timeout=float(env.get("ALLMENDE_NOTIFY_TIMEOUT") or 60),
        )
