"""The `up` verb, the main job: check, then plan and apply unless the check found errors, renew
the certificates that are due, then build the docs (with the findings) for serving."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from allmende.actions.backupinit import watch_keys
from allmende.actions.certs import ensure_account
from allmende.actions.check import check
from allmende.actions.docs import write
from allmende.checks.registry import Report
from allmende.inventory.inventory import Inventory
from allmende.inventory.secrets import SecretStore
from allmende.operations.certs.renew import Renewal

#: Why nothing was applied when the check found errors.
CHECK_FAILED = "the check found errors; fix them first"


@dataclass(frozen=True)
class Upped:
    """What ``up`` did: the inventory and its findings, whether every host is as planned
    (``applied``; True when applying was not asked for), why nothing was applied if the check
    stopped it, and the docs site's files."""

    inventory: Inventory
    report: Report
    applied: bool
    refused: str | None
    site: list[Path]
    #: How each certificate went, when renewing was asked.
    renewals: list[Renewal] = field(default_factory=list)


def up(
    root: Path,
    env: Mapping[str, str],
    out: Path,
    *,
    told: Callable[[Report], None],
    apply: Callable[[], bool] | None,
    renew: Callable[[], list[Renewal]] | None = None,
) -> Upped:
    """Check the inventory in ``root`` and tell the findings to ``told``; unless they hold an
    error, run ``apply`` (None: apply nothing), which plans, asks and applies and returns
    whether every host is as planned, and then ``renew``, which renews the certificates that
    are due (before the apply the ACME account key is made if there is none, so that the
    edges' timers get it, and the watch host's keys to the hosts it asks about backups); then
    write the docs site to ``out``. Raise InventoryError if the
    inventory does not load, UserError if the site cannot be written."""
    inventory, report = check(root, env)
    told(report)
    refused = None
    applied = True
    renewals: list[Renewal] = []
    if apply is not None:
        if report.errors:
            refused, applied = CHECK_FAILED, False
        else:
            if renew is not None:
                ensure_account(inventory, env)
            watch_keys(inventory, SecretStore(root, env))
            applied = apply()
            if applied and renew is not None:
                renewals = renew()
    return Upped(inventory, report, applied, refused, write(inventory, report, out), renewals)
