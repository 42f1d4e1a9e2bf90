"""Obtain one certificate: order it, publish the challenges, let the CA check them, collect it.

http-01 challenges are answered on every edge that serves the name (``http01``), dns-01 ones by
TXT records in the name's zone (``dns01``). The result is what HAProxy wants in one file: the
full chain the CA sent, then the new private key. A failed check says what the CA saw; for
http-01 also whether its requests reached the edges at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from allmende.connectors.base import Connector
from allmende.errors import CertificateFailed
from allmende.inventory.certjob import Cert, Job
from allmende.operations.certs import client, dns01, http01
from allmende.operations.certs.facts import Held, held


@dataclass(frozen=True)
class Issued:
    """A new certificate: the PEM file's content (chain, then key) and what it is."""

    pem: bytes
    facts: Held


async def _checked(session: client.Session, placed: object, chosen: list[client.Challenge]) -> str:
    for challenge in chosen:
        await asyncio.to_thread(client.answer, session, challenge)
    return await asyncio.to_thread(client.finish, session, placed)


async def _http01(
    session: client.Session,
    job: Job,
    cert: Cert,
    placed: object,
    chosen: list[client.Challenge],
    edges: Mapping[str, Connector],
) -> str:
    tokens = {c.token: c.validation for c in chosen}
    failure: CertificateFailed | None = None
    chain = ""
    serving = {e: edges[e] for e in cert.edges}
    async with http01.answering(serving, job.responder_port, tokens) as answered:
        try:
            chain = await _checked(session, placed, chosen)
        except CertificateFailed as exc:
            failure = exc
    if failure is None:
        return chain
    if failure.kind == "validation" and not answered.reached():
        raise CertificateFailed(
            f"{failure}. The CA's requests never reached the responder on "
            f"{', '.join(sorted(serving))}: does {cert.name} point at the edge, and is the "
            "edge's HTTP port (80) open to the internet (a router forwarding it)?",
            "validation",
        )
    raise failure


async def _dns01(
    session: client.Session,
    job: Job,
    cert: Cert,
    placed: object,
    chosen: list[client.Challenge],
    tsig: Mapping[str, bytes],
) -> str:
    update = job.update_of(cert.zone) if cert.zone else None
    if update is None:
        raise CertificateFailed(
            f"{cert.name} is checked over dns-01, but its zone "
            f"{cert.zone or '(none of the collective domains)'} says nowhere where updates "
            "go: give zones/<zone>.yaml an `update:`",
            "dns",
        )
    secret = tsig.get(update.zone)
    if secret is None:
        raise CertificateFailed(
            f"no TSIG key for the updates of {update.zone}: store it with `allmende secret "
            f"set dns/{update.zone}/tsig` (then apply, for the edges' timers)",
            "dns",
        )
    records: dict[str, list[str]] = {}
    for challenge in chosen:
        records.setdefault(challenge.token, []).append(challenge.validation)
    if not records:
        return await _checked(session, placed, chosen)
    async with dns01.published(update, secret, records):
        return await _checked(session, placed, chosen)


async def obtain(
    session: Callable[[], Awaitable[client.Session]],
    job: Job,
    cert: Cert,
    edges: Mapping[str, Connector],
    tsig: Mapping[str, bytes],
) -> Issued:
    """Obtain ``cert`` through the (lazily opened) ACME ``session``, answering its challenges
    on the opened ``edges`` or in its zone. Raise CertificateFailed."""
    opened = await session()
    key = client.new_certificate_key()
    placed = await asyncio.to_thread(client.order, opened, [cert.name], key)
    chosen = await asyncio.to_thread(client.pick, opened, placed, cert.challenge)
    if cert.challenge == "http-01":
        chain = await _http01(opened, job, cert, placed, chosen, edges)
    else:
        chain = await _dns01(opened, job, cert, placed, chosen, tsig)
    pem = chain.rstrip("\n").encode() + b"\n" + client.key_pem(key)
    found = held("", pem)
    if found.unreadable or cert.name not in found.names:
        raise CertificateFailed(
            f"the CA sent something that is no certificate for {cert.name}", "other"
        )
    return Issued(pem, found)
