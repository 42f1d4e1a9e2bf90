"""Certificates for every route the edges terminate: ACME issuance and renewal.

``renew_due`` (in ``due``) is the entry point from the inventory, for `allmende certs renew`,
`allmende up` and the watcher::

    await renew_due(inventory, env, names=(), force=False, trigger="watch",
                    connect=connectors.connect, say=print) -> list[Renewal]

``renew.renew`` is the run itself, which an edge host's timer calls with its own job
(``actions.certshost``). ``client`` speaks ACME (certbot's ``acme``), ``http01`` and ``dns01``
answer the challenges, ``install`` puts certificates on an edge and reloads HAProxy, ``facts``
says what a certificate is and when it is due. Only ``due`` imports the inventory's models:
the rest runs on an edge host from allmende's copy there, with Debian's ``python3-acme``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from allmende.operations.certs.due import renew_due as renew_due


def __getattr__(name: str) -> Any:
    """Import ``renew_due`` when it is asked for (it needs the inventory's models)."""
    if name == "renew_due":
        from allmende.operations.certs.due import renew_due

        return renew_due
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
