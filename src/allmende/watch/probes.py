"""One try of one probe: HTTP(S), a TCP connect, a TLS certificate, a DNS answer.

The HTTP client is aiohttp, chosen by measurement (``bench/watch.py``): one session per edge
address, whose resolver sends every name to that edge, so that the URL keeps the route's name
(the Host header and the TLS server name both) while the connection goes where the inventory
says; certificates are not checked there (that is the ``tls`` probe's business), redirects
are not followed (a login page's 302 is a good sign), every probe opens a new connection as a
visitor would. A ``tls`` probe verifies the chain against the system's certificate authorities
(``SSL_CERT_FILE`` names others) for its name, after STARTTLS where the port wants it, and
reads how many days the certificate has left. A ``dns`` probe asks every nameserver of the
zone, over UDP (TCP when the answer is truncated), for the name's A and AAAA records.

Every function returns an ``Outcome`` and raises nothing for what a target does wrong; a try
that takes longer than its probe's ``timeout`` is cut off there.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import aiohttp.abc

from allmende.inventory.watchspec import Probe


@dataclass(frozen=True)
class Outcome:
    """How one try went: ``up``, ``degraded`` or ``down``, in words (``detail``), how long it
    took, and what it measured (``value``: the HTTP status, a certificate's days left, a
    backup's age in hours)."""

    state: str
    detail: str = ""
    latency: float | None = None
    value: float | None = None


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer in time"
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "…"


class PinnedResolver(aiohttp.abc.AbstractResolver):
    """Resolves every name to one address: the edge a session's probes go through."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.family = socket.AF_INET6 if ":" in address else socket.AF_INET

    async def resolve(  # type: ignore[override]
        self, host: str, port: int = 0, family: int = socket.AF_INET
    ) -> list[dict[str, Any]]:
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": self.family,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


class Sessions:
    """The HTTP sessions of one watcher: one per edge address, one for names as written."""

    def __init__(self) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def for_probe(self, probe: Probe) -> aiohttp.ClientSession:
        key = "" if probe.address == probe.name else probe.address
        session = self._sessions.get(key)
        if session is None or session.closed:
            resolver = PinnedResolver(probe.address) if key else None
            connector = aiohttp.TCPConnector(
                limit=0, force_close=True, ssl=False, resolver=resolver, use_dns_cache=False
            )
            session = aiohttp.ClientSession(
                connector=connector, trust_env=False, auto_decompress=False
            )
            self._sessions[key] = session
        return session

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


#: How much of an answer's body is read to find ``contains``.
BODY_LIMIT = 1 << 20


async def http(probe: Probe, sessions: Sessions) -> Outcome:
    """GET the probe's path from its name through its address; up when the status is the one
    expected (any below 400 if none) and the body holds ``contains``."""
    host = f"[{probe.name}]" if ":" in probe.name else probe.name
    url = f"{probe.scheme}://{host}:{probe.port}{probe.path or '/'}"
    started = time.monotonic()
    try:
        async with sessions.for_probe(probe).get(
            url,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=probe.timeout),
            headers={"Host": probe.name, "User-Agent": "allmende-watch"},
        ) as answer:
            status = answer.status
            body = await answer.content.read(BODY_LIMIT) if probe.contains else b""
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        return Outcome("down", _why(exc), time.monotonic() - started)
    latency = time.monotonic() - started
    if probe.status and status != probe.status:
        return Outcome("down", f"answered {status}, expected {probe.status}", latency, status)
    if not probe.status and status >= 400:
        return Outcome("down", f"answered {status}", latency, status)
    if probe.contains and probe.contains.encode() not in body:
        return Outcome("down", f"the answer does not contain {probe.contains!r}", latency, status)
    return Outcome("up", f"answered {status}", latency, status)


async def tcp(probe: Probe) -> Outcome:
    """Up when the address accepts a connection."""
    started = time.monotonic()
    try:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that comes as the connection is made, and the watcher would never stop.
        async with asyncio.timeout(probe.timeout):
            _, writer = await asyncio.open_connection(probe.address, probe.port)
    except (OSError, TimeoutError) as exc:
        return Outcome("down", _why(exc), time.monotonic() - started)
    latency = time.monotonic() - started
    await _close(writer)
    return Outcome("up", "accepts connections", latency)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, asyncio.TimeoutError, ssl.SSLError):
        async with asyncio.timeout(1):
            await writer.wait_closed()


_STARTTLS: dict[str, tuple[tuple[bytes | None, bytes], ...]] = {
    # What to send (None: only read the greeting) and what the answer starts with.
    "smtp": ((None, b"220"), (b"EHLO allmende-watch\r\n", b"250"), (b"STARTTLS\r\n", b"220")),
    "imap": ((None, b"* OK"), (b"a1 STARTTLS\r\n", b"a1 OK")),
    "pop3": ((None, b"+OK"), (b"STLS\r\n", b"+OK")),
}


async def _starttls(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: str
) -> None:
    """Speak ``protocol`` up to the point where TLS starts. Raise OSError if it refuses."""
    for send, expect in _STARTTLS[protocol]:
        if send is not None:
            writer.write(send)
            await writer.drain()
        while True:  # multi-line answers (SMTP's 250-...) end at the line without a dash
            line = await reader.readline()
            if not line:
                raise OSError(f"{protocol}: the server closed the connection")
            if protocol == "smtp" and line[3:4] == b"-":
                continue
            if protocol == "imap" and expect.startswith(b"a1") and line.startswith(b"* "):
                continue
            break
        if not line.startswith(expect):
            said = line.decode(errors="replace").strip()
            raise OSError(f"{protocol}: expected {expect.decode()}, got {said!r}")


async def _handshake(probe: Probe, context: ssl.SSLContext) -> tuple[bytes, asyncio.StreamWriter]:
    """Connect and shake hands; return the peer's certificate (DER) and the open writer."""
    name = probe.name or None
    if probe.starttls:
        reader, writer = await asyncio.open_connection(probe.address, probe.port)
        try:
            await _starttls(reader, writer, probe.starttls)
            await writer.start_tls(context, server_hostname=name)
        except BaseException:
            await _close(writer)
            raise
    else:
        _, writer = await asyncio.open_connection(
            probe.address, probe.port, ssl=context, server_hostname=name or probe.address
        )
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        await _close(writer)
        raise OSError("no certificate")
    return der, writer


def not_after(der: bytes) -> datetime:
    """Return when a certificate (DER) expires, in UTC."""
    from cryptography import x509

    certificate = x509.load_der_x509_certificate(der)
    moment = getattr(certificate, "not_valid_after_utc", None)
    if moment is None:  # cryptography before 42
        moment = certificate.not_valid_after.replace(tzinfo=UTC)
    return moment


async def tls(
    probe: Probe, warn_days: int, now: Callable[[], datetime] | None = None, trust: str = ""
) -> Outcome:
    """Up when the certificate is valid for the name and has ``warn_days`` or more left;
    degraded when it has fewer; down when it has expired, does not verify (against the
    system's CAs, and ``trust``: PEM of a private CA), or there is no handshake."""
    started = time.monotonic()
    verifying = ssl.create_default_context()
    if trust:
        verifying.load_verify_locations(cadata=trust)
    verifying.check_hostname = bool(probe.name)
    problem = ""
    try:
        async with asyncio.timeout(probe.timeout):
            try:
                der, writer = await _handshake(probe, verifying)
            except ssl.SSLCertVerificationError as exc:
                problem = exc.verify_message or str(exc)
                lenient = ssl.create_default_context()
                lenient.check_hostname = False
                lenient.verify_mode = ssl.CERT_NONE
                der, writer = await _handshake(probe, lenient)
            await _close(writer)
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        return Outcome("down", f"no TLS handshake: {_why(exc)}", time.monotonic() - started)
    latency = time.monotonic() - started
    expires = not_after(der)
    left = (expires - (now() if now else datetime.now(UTC))).total_seconds() / 86400
    when = expires.strftime("%Y-%m-%d %H:%M UTC")
    if left <= 0:
        return Outcome("down", f"the certificate expired on {when}", latency, left)
    if problem:
        name = probe.name or probe.address
        return Outcome("down", f"the certificate is not valid for {name}: {problem}", latency, left)
    if left < warn_days:
        return Outcome(
            "degraded", f"the certificate expires in {left:.0f} days ({when})", latency, left
        )
    return Outcome(
        "up", f"valid for {probe.name or 'its chain'}, {left:.0f} days left", latency, left
    )


def _server(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


async def _addresses_of(name: str, timeout: float) -> list[str]:
    """Return the addresses a nameserver's name resolves to (the system's resolver)."""
    import dns.asyncresolver
    import dns.exception

    resolver = dns.asyncresolver.Resolver()
    found: list[str] = []
    for kind in ("A", "AAAA"):
        with contextlib.suppress(dns.exception.DNSException):
            answer = await resolver.resolve(name, kind, lifetime=timeout)
            found += [r.to_text() for r in answer]
    if not found:
        raise OSError(f"the nameserver {name} has no address")
    return found


async def _ask(name: str, address: str, port: int, timeout: float) -> tuple[set[str], bool]:
    """Return the A and AAAA data a nameserver answers for ``name``, and whether it answered
    with authority."""
    import dns.asyncquery
    import dns.flags
    import dns.message
    import dns.rcode
    import dns.rdatatype

    found: set[str] = set()
    authoritative = True
    for kind in ("A", "AAAA"):
        query = dns.message.make_query(name, kind)
        response, _ = await dns.asyncquery.udp_with_fallback(
            query, address, port=port, timeout=timeout
        )
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise OSError(f"answered {dns.rcode.to_text(response.rcode())}")
        authoritative &= bool(response.flags & dns.flags.AA)
        wanted = dns.rdatatype.from_text(kind)
        found |= {r.to_text() for rrset in response.answer if rrset.rdtype == wanted for r in rrset}
    return found, authoritative


async def dns(probe: Probe) -> Outcome:
    """Up when every nameserver answers the expected addresses for the name, with authority."""
    import dns.exception

    started = time.monotonic()
    wrong: list[str] = []
    expected = set(probe.expect)
    for server in probe.nameservers:
        host, port = _server(server)
        try:
            async with asyncio.timeout(probe.timeout):
                addresses = [host] if _is_ip(host) else await _addresses_of(host, probe.timeout)
                for address in addresses:
                    found, authoritative = await _ask(probe.name, address, port, probe.timeout)
                    if found != expected:
                        shown = ", ".join(sorted(found)) or "nothing"
                        wrong.append(f"{server} answers {shown}")
                    elif not authoritative:
                        wrong.append(f"{server} answers without authority")
        except (OSError, TimeoutError, dns.exception.DNSException) as exc:
            wrong.append(f"{server}: {_why(exc)}")
    latency = time.monotonic() - started
    if wrong:
        want = ", ".join(sorted(expected))
        return Outcome("down", f"{'; '.join(wrong)} (expected {want})", latency)
    return Outcome(
        "up", f"{len(probe.nameservers)} nameservers answer {', '.join(sorted(expected))}", latency
    )


def _is_ip(text: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
    except OSError:
        return False
    return True


#: Reads a backed-up service's freshness: (state, detail, age in hours or None).
BackupReader = Callable[[Probe], Awaitable[tuple[str, str, float | None]]]


async def backup(probe: Probe, reader: BackupReader | None) -> Outcome:
    """Up when the service's last archive is as fresh as its schedule wants."""
    if reader is None:
        return Outcome("down", "no way to read the repository here")
    started = time.monotonic()
    try:
        async with asyncio.timeout(probe.timeout):
            state, detail, age = await reader(probe)
    except (OSError, TimeoutError) as exc:
        return Outcome(
            "down", f"the repository cannot be read: {_why(exc)}", time.monotonic() - started
        )
    return Outcome("up" if state == "fresh" else "down", detail, time.monotonic() - started, age)
