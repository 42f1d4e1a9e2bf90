"""The renewal as an edge host's timer runs it: ``allmende certs job``.

On the edge host, without the inventory: the job apply wrote (``/etc/allmende/certs/job.json``),
the account key and TSIG keys beside it, HAProxy through its master socket. Attempts are
recorded in the host's own state database (``ALLMENDE_STATE``, else
``/var/lib/allmende/state.sqlite``) and failures alerted to the job's channels, once per
incident, as is the first success after them.

This module, and everything it imports, uses the standard library and what Debian's
``python3-acme`` and ``python3-dnspython`` bring: it is what allmende's copy on a host runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from allmende.connectors.base import under
from allmende.connectors.local import LocalConnector
from allmende.errors import UserError
from allmende.inventory.certjob import Job, from_json
from allmende.inventory.hostpaths import ACME_ACCOUNT_KEY, CERTS_JOB, HOST_STATE, tsig_key

if TYPE_CHECKING:  # imported when the job runs: it needs the ACME library
    from allmende.operations.certs.renew import Renewal, Say

_MISSING_LIBRARY = (
    "this host lacks the ACME library the renewal needs ({name}): install Debian's "
    "python3-acme and python3-dnspython (apply does, where apt-get is)"
)


def read_job(root: str) -> tuple[Job, bytes, dict[str, bytes]]:
    """Return the job of this host, its account key and the TSIG keys it has (under ``root``).
    Raise UserError naming what is missing."""
    path = Path(under(root, CERTS_JOB))
    try:
        job = from_json(path.read_bytes())
    except FileNotFoundError:
        raise UserError(
            f"no certificate job on this host ({path}): is it an edge with `acme:` in "
            "allmende.yaml, and was the inventory applied here?"
        ) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the certificate job {path}: {exc}") from None
    key = Path(under(root, ACME_ACCOUNT_KEY))
    try:
        account = key.read_bytes()
    except FileNotFoundError:
        raise UserError(
            f"no ACME account key on this host ({key}): run `allmende certs renew` where the "
            "inventory is (it makes the account), then `allmende apply`"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot read {key}: {exc.strerror}") from None
    tsig = {}
    for update in job.updates:
        found = Path(under(root, tsig_key(update.zone)))
        if found.exists():
            tsig[update.zone] = found.read_bytes()
    return job, account, tsig


def job(env: Mapping[str, str], say: Say) -> list[Renewal]:
    """Renew what is due of this host's certificate job (see the module docstring); return
    how each certificate went. Raise UserError if the job cannot run at all."""
    root = env.get("ALLMENDE_HOST_ROOT") or "/"
    state = Path(env.get("ALLMENDE_STATE") or under(root, HOST_STATE))
    found, account, tsig = read_job(root)
    try:
        from allmende.operations.certs.renew import Secrets, renew
    except ImportError as exc:
        raise UserError(_MISSING_LIBRARY.format(name=exc.name)) from None
    host = LocalConnector(found.host, root)

    async def run() -> list[Renewal]:
        async with host:
            return await renew(
                found,
                Secrets(account, tsig),
                {found.host: host},
                state,
                trigger="timer",
                say=say,
                notify_timeout=float(env.get("ALLMENDE_NOTIFY_TIMEOUT") or 60),
            )

    return asyncio.run(run())
