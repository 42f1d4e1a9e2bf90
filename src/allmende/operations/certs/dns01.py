"""dns-01: the ``_acme-challenge`` TXT records, written with RFC 2136 updates signed by TSIG.

``published`` adds the records to the zone's primary (``Update.server``) and removes them again
when the block ends, whatever happened. Before the CA is asked to look, each record must be
answered by every server of ``Update.check`` (``address:port`` or ``name:port``; names are
resolved by the system): a CA that asks a secondary which has not caught up yet would fail the
check and count it against the name. dnspython builds and signs the messages.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from allmende.errors import CertificateFailed
from allmende.inventory.certjob import Update

#: How long a record may take to be answered by every server of ``check``, in seconds.
PROPAGATION_SECONDS = 120.0
#: The records' time to live: short, they live for minutes.
TTL = 60


def _keyring(update: Update, secret: bytes) -> dict[dns.name.Name, dns.tsig.Key]:
    text = secret.decode(errors="replace").strip()
    try:
        base64.b64decode(text, validate=True)
    except binascii.Error:
        raise CertificateFailed(
            f"the TSIG key of {update.zone} (secret dns/{update.zone}/tsig) is not base64 "
            "(store the `secret:` that tsig-keygen or keymgr printed)",
            "dns",
        ) from None
    ring: dict[dns.name.Name, dns.tsig.Key] = dns.tsigkeyring.from_text(
        {update.key: (update.algorithm, text)}
    )
    return ring


def _send(update: Update, secret: bytes, records: Mapping[str, Sequence[str]], add: bool) -> None:
    """Add (or delete) the TXT ``records`` (absolute name -> values) in one signed update.
    Raise CertificateFailed if the server refuses it or cannot be reached."""
    ring = _keyring(update, secret)
    message = dns.update.UpdateMessage(
        update.zone, keyring=ring, keyname=next(iter(ring)), keyalgorithm=update.algorithm
    )
    for name, values in records.items():
        owner = dns.name.from_text(name)
        for value in values:
            if add:
                message.add(owner, TTL, "TXT", f'"{value}"')
            else:
                message.delete(owner, "TXT", f'"{value}"')
    where = f"{update.server}:{update.port}"
    try:
        answer = dns.query.tcp(message, update.server, port=update.port, timeout=10)
    except (OSError, dns.exception.DNSException) as exc:
        raise CertificateFailed(
            f"the RFC 2136 update of {update.zone} at {where} failed: {exc or type(exc).__name__}",
            "dns",
        ) from None
    if answer.rcode() != dns.rcode.NOERROR:
        raise CertificateFailed(
            f"{where} refused the update of {update.zone}: {dns.rcode.to_text(answer.rcode())} "
            f"(does the key `{update.key}` may update it?)",
            "dns",
        )


def _servers(update: Update) -> list[tuple[str, int, str]]:
    """Return (address, port, as written) of every server of ``check``, names resolved."""
    found = []
    for entry in update.check:
        host, _, port = entry.rpartition(":")
        host = host.strip("[]")
        try:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
        except (OSError, ValueError) as exc:
            raise CertificateFailed(
                f"cannot find the nameserver {entry} of {update.zone}: {exc}", "dns"
            ) from None
        found.append((str(infos[0][4][0]), int(port), entry))
    return found


def _answers(address: str, port: int, name: str) -> set[str]:
    """Return the TXT values ``address:port`` answers for ``name`` (empty on any failure)."""
    query = dns.message.make_query(name, "TXT")
    try:
        response = dns.query.udp(query, address, port=port, timeout=2)
    except (OSError, dns.exception.DNSException):
        return set()
    values: set[str] = set()
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            for rdata in rrset:
                values.add(b"".join(rdata.strings).decode(errors="replace"))
    return values


def _visible(update: Update, records: Mapping[str, Sequence[str]], seconds: float) -> None:
    """Wait until every server of ``check`` answers every record. Raise CertificateFailed
    naming the servers that still do not after ``seconds``."""
    servers = _servers(update)
    deadline = time.monotonic() + seconds
    missing: list[str] = []
    while True:
        missing = [
            f"{name} at {shown}"
            for address, port, shown in servers
            for name, values in records.items()
            if not set(values) <= _answers(address, port, name)
        ]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    if missing:
        raise CertificateFailed(
            f"the TXT records were not answered within {seconds:.0f} s: {', '.join(missing)}",
            "dns",
        )


@contextlib.asynccontextmanager
async def published(
    update: Update,
    secret: bytes,
    records: Mapping[str, Sequence[str]],
    seconds: float = PROPAGATION_SECONDS,
) -> AsyncIterator[None]:
    """Add the TXT ``records`` (absolute name -> values) to the zone, wait until they are
    answered, and remove them again when the block ends. Raise CertificateFailed."""
    await asyncio.to_thread(_send, update, secret, records, True)
    try:
        await asyncio.to_thread(_visible, update, records, seconds)
        yield
    finally:
        with contextlib.suppress(CertificateFailed):
            await asyncio.to_thread(_send, update, secret, records, False)
