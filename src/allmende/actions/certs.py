"""The `certs` verbs from the inventory: list every certificate, renew them.

``listing`` reads each certificate where it is served: the PEM file on every edge host that
terminates its names (through the connectors), and for a route passed through, the backend's
own certificate, fetched through the edge with its name (TLS, not verified: it is only looked
at). With the recorded attempts it says when each is renewed next. ``renew`` is
``operations.certs.due.renew_due``, which `allmende up` runs too.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
from collections.abc import Collection, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from allmende.actions.plan import Seams
from allmende.apply.verify import edge_address
from allmende.connectors.base import Connector
from allmende.errors import UserError
from allmende.inventory import certificates, derive
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.operations.certs.due import account_key, renew_due
from allmende.operations.certs.facts import Held, held, next_attempt, renew_at
from allmende.operations.certs.renew import Renewal, Say
from allmende.state import store


@dataclass(frozen=True)
class Listed:
    """One certificate as `allmende certs` shows it."""

    name: str
    #: ``terminated`` (allmende keeps it) or ``passthrough`` (the backend holds its own).
    kind: str
    challenge: str
    #: Where it is served: ``edge (address:port)`` for each edge host.
    where: tuple[str, ...]
    services: tuple[str, ...]
    found: tuple[Held, ...]
    #: When it is renewed next: a time, ``now`` (it is due) or what keeps it from it.
    next_renewal: str
    last_failure: str = ""
    covers: tuple[str, ...] = field(default_factory=tuple)


def _https(inventory: Inventory, edge: str) -> str:
    config = inventory.collective.edge
    port = config.https_port if config is not None else 443
    return f"{edge} ({edge_address(inventory, edge)}:{port})"


def _peer(address: str, port: int, name: str) -> bytes | None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((address, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        return tls.getpeercert(binary_form=True)


async def _passthrough(inventory: Inventory, edge: str, name: str) -> Held:
    """Return the certificate the backend behind ``edge`` presents for ``name``."""
    config = inventory.collective.edge
    port = config.https_port if config is not None else 443
    try:
        der = await asyncio.to_thread(_peer, edge_address(inventory, edge), port, name)
    except (OSError, ssl.SSLError) as exc:
        return Held(edge, unreadable=f"no TLS answer: {exc}")
    if der is None:
        return Held(edge, unreadable="no certificate")
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    return held(edge, pem)


def _when(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


async def _read(
    inventory: Inventory, env: Mapping[str, str], seams: Seams, unreachable: dict[str, str]
) -> dict[tuple[str, str], Held]:
    """Return what each edge serves for each terminated certificate, by (name, edge); put
    the edges that cannot be reached into ``unreachable``, with why."""
    found: dict[tuple[str, str], Held] = {}
    wanted = certificates.certificates(inventory)
    for edge in sorted({e for c in wanted for e in c.edges}):
        try:
            async with seams.connect(inventory, edge, env) as connector:
                for cert in wanted:
                    if edge in cert.edges:
                        found[(cert.name, edge)] = await _held(connector, cert.pem)
        except UserError as exc:
            unreachable[edge] = str(exc)
            for cert in wanted:
                if edge in cert.edges:
                    found[(cert.name, edge)] = Held(edge, unreadable="edge not reached")
    return found


async def _held(connector: Connector, path: str) -> Held:
    try:
        return held(connector.host, await connector.read(path))
    except UserError as exc:
        return Held(connector.host, unreadable=str(exc))


def _history(env: Mapping[str, str]) -> dict[str, list[store.CertAttempt]]:
    path = store.default_path(env)
    if not path.exists():
        return {}
    found: dict[str, list[store.CertAttempt]] = {}
    with closing(store.open_store(path)) as db:
        for attempt in store.cert_attempts(db, limit=100000):
            found.setdefault(attempt.certificate, []).append(attempt)
    return found


@dataclass(frozen=True)
class Listing:
    """Every certificate, and the edge hosts that could not be read (with why)."""

    certificates: list[Listed]
    unreachable: dict[str, str]


def listing(root: Path, env: Mapping[str, str], seams: Seams | None = None) -> Listing:
    """Return every certificate of the inventory in ``root``: those the edges terminate (read
    on each edge), then those passed through (fetched through the edge). Raise
    InventoryError if the inventory does not load."""
    seams = seams or Seams()
    inventory = load(root, env)
    acme = inventory.collective.acme
    before = acme.renew_before_days if acme is not None else 30
    unreachable: dict[str, str] = {}
    found = asyncio.run(_read(inventory, env, seams, unreachable))
    history = _history(env)
    now = datetime.datetime.now(datetime.UTC)
    result = []
    for cert in certificates.certificates(inventory):
        on = tuple(found[(cert.name, e)] for e in cert.edges)
        attempts = history.get(cert.name, [])
        waits, why = next_attempt(attempts)
        due_at = renew_at(on, before)
        if acme is None:
            upcoming = "never: allmende.yaml has no `acme:`"
        elif waits is not None and waits > now:
            upcoming = f"{_when(waits)} (waiting after {why})"
        elif due_at is None or due_at <= now:
            upcoming = "now (due)"
        else:
            upcoming = _when(due_at)
        failed = attempts[0].detail if attempts and attempts[0].ok is False else ""
        result.append(
            Listed(
                cert.name,
                "terminated",
                cert.challenge,
                tuple(_https(inventory, e) for e in cert.edges),
                cert.services,
                on,
                upcoming,
                failed,
                cert.covers,
            )
        )
    result += asyncio.run(_passthroughs(inventory))
    return Listing(result, unreachable)


async def _passthroughs(inventory: Inventory) -> list[Listed]:
    routed: dict[str, set[str]] = {}
    for name, service in sorted(inventory.services.items()):
        for route in service.routes:
            if route.tls == "passthrough":
                routed.setdefault(route.domain, set()).add(name)
    listed = []
    edges = derive.domain_edges(inventory)
    for domain, services in sorted(routed.items()):
        on = [await _passthrough(inventory, e, domain) for e in edges.get(domain, ())]
        listed.append(
            Listed(
                domain,
                "passthrough",
                "",
                tuple(_https(inventory, e) for e in edges.get(domain, ())),
                tuple(sorted(services)),
                tuple(on),
                "by the backend itself",
            )
        )
    return listed


def renew(
    root: Path,
    env: Mapping[str, str],
    names: Collection[str] = (),
    *,
    force: bool = False,
    trigger: str = "renew",
    say: Say = lambda line: None,
    seams: Seams | None = None,
) -> list[Renewal]:
    """Renew the certificates of the inventory in ``root`` that are due (``names`` only, if
    given; all of them with ``force``). Raise InventoryError, or UserError for an unknown
    name or an account key that cannot be kept."""
    seams = seams or Seams()
    inventory = load(root, env)
    return asyncio.run(
        renew_due(
            inventory,
            env,
            names=names,
            force=force,
            trigger=trigger,
            connect=seams.connect,
            say=say,
        )
    )


def ensure_account(inventory: Inventory, env: Mapping[str, str]) -> bool:
    """Make the collective's ACME account key in the secret store if certificates are to be
    kept (``acme:`` and a terminated route) and there is none; return whether one was made.
    Raise SecretError if the store cannot take it."""
    if certificates.job(inventory) is None or certificates.ACCOUNT_SECRET in inventory.secrets:
        return False
    account_key(inventory.root, env)
    return True
