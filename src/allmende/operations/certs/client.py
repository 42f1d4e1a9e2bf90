"""The ACME protocol, through certbot's ``acme`` library: account, order, challenges, certificate.

Everything here blocks (the library speaks HTTP with ``requests``): callers run it in a thread.
Every failure of the library or the network is translated into ``CertificateFailed`` with its
``kind`` (``unreachable``, ``rejected``, ``rate_limited``, ``validation``, ``other``) and, for
a rate limit, the CA's ``Retry-After``. The code works with the ``acme`` of the virtual
environment and with Debian's ``python3-acme`` (2.1), which an edge's timer uses: it builds
its CSR with ``cryptography`` and uses only the calls both have.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import os
import pathlib
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from acme import challenges, client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from josepy.jwk import JWKRSA

from allmende import version
from allmende.errors import CertificateFailed

#: How long the CA may take to check the challenges and issue, in seconds.
VALIDATION_SECONDS = 120
#: ACME error types (RFC 8555 section 6.7) that mean the CA will not issue for the name.
REJECTED = ("rejectedIdentifier", "unsupportedIdentifier", "caa", "malformed", "badCSR")
_PREFIX = "urn:ietf:params:acme:error:"


def new_account_key() -> bytes:
    """Return a new ACME account key (RSA 2048, the key type every CA takes) as PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_certificate_key() -> ec.EllipticCurvePrivateKey:
    """Return a new key for a certificate: ECDSA P-256."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Return a certificate key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def csr_pem(key: ec.EllipticCurvePrivateKey, names: Sequence[str]) -> bytes:
    """Return a CSR for ``names`` (all of them as subject alternative names) as PEM."""
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


class _Network(client.ClientNetwork):
    """The library's network, remembering the ``Retry-After`` of a 429 or 503 answer."""

    retry_after: str | None = None

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        response = super()._send_request(method, url, *args, **kwargs)
        if response.status_code in (429, 503):
            self.retry_after = response.headers.get("Retry-After")
        return response


def retry_time(value: str | None, now: datetime.datetime | None = None) -> datetime.datetime | None:
    """Given a ``Retry-After`` header (seconds, or an HTTP date), return when that is."""
    if not value:
        return None
    now = now or datetime.datetime.now(datetime.UTC)
    if value.strip().isdigit():
        return now + datetime.timedelta(seconds=int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def explain(
    exc: BaseException, directory: str, retry_after: str | None = None
) -> CertificateFailed:
    """Translate an exception of the library (or of requests under it) into CertificateFailed,
    saying what happened in words."""
    if isinstance(exc, CertificateFailed):
        return exc
    if isinstance(exc, requests.exceptions.SSLError):
        return CertificateFailed(
            f"the ACME directory {directory} does not prove its identity ({_reason(exc)}): "
            "for a private CA give its certificate as `acme.trust`",
            "unreachable",
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return CertificateFailed(
            f"cannot reach the ACME directory {directory}: {_reason(exc)}", "unreachable"
        )
    if isinstance(exc, errors.ValidationError):
        return CertificateFailed(
            "the CA could not check " + "; ".join(_failed(a) for a in exc.failed_authzrs),
            "validation",
        )
    if isinstance(exc, errors.TimeoutError):
        return CertificateFailed(
            f"the CA did not finish checking and issuing within {VALIDATION_SECONDS} s", "other"
        )
    if isinstance(exc, messages.Error):
        code = (exc.typ or "").removeprefix(_PREFIX)
        said = exc.detail or exc.title or code or str(exc)
        if code == "rateLimited":
            return CertificateFailed(
                f"the CA's rate limit: {said}", "rate_limited", retry_time(retry_after)
            )
        if code in REJECTED:
            return CertificateFailed(f"the CA refuses the name: {said} ({code})", "rejected")
        if code == "serverInternal" or code == "badNonce":
            return CertificateFailed(f"the CA failed: {said} ({code})", "unreachable")
        return CertificateFailed(f"the CA says: {said} ({code or 'no error type'})", "other")
    if isinstance(exc, errors.Error):
        return CertificateFailed(f"the ACME exchange failed: {exc}", "other")
    raise exc


def _reason(exc: BaseException) -> str:
    """Return the innermost reason of a requests error (``Connection refused``)."""
    seen = exc
    while seen.__context__ is not None and seen.__context__ is not seen:
        seen = seen.__context__
    text = str(seen) or type(seen).__name__
    if "Errno" in text and "]" in text:
        return text[text.rindex("]") + 1 :].strip() or text
    return text[-200:]


def _failed(authzr: messages.AuthorizationResource) -> str:
    """Return which name failed and what the CA said about its challenge."""
    name = authzr.body.identifier.value
    said = [
        f"{c.chall.typ}: {c.error.detail or c.error.typ}"
        for c in authzr.body.challenges
        if c.error is not None
    ]
    return f"{name} ({'; '.join(said) or 'no reason given'})"


@contextlib.contextmanager
def trusted(pem: str) -> Iterator[str | bool]:
    """Yield what ``requests`` verifies the directory's HTTPS with: a file holding ``pem``
    (removed afterwards), or True for the system's CAs."""
    if not pem:
        yield True
        return
    handle, path = tempfile.mkstemp(prefix="allmende-acme-", suffix=".pem")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(pem)
        yield path
    finally:
        pathlib.Path(path).unlink()


@dataclass
class Session:
    """An open ACME account: the library's client and the account's key."""

    acme: client.ClientV2
    key: JWKRSA
    network: _Network
    directory: str


def open_account(directory: str, account_key: bytes, email: str, verify: str | bool) -> Session:
    """Reach the directory and log in to the account of ``account_key``, registering it (terms
    of service agreed) if the CA does not know it yet. Raise CertificateFailed."""
    loaded = serialization.load_pem_private_key(account_key, password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise CertificateFailed("the ACME account key is not an RSA key", "other")
    key = JWKRSA(key=loaded)
    network = _Network(key, user_agent=f"allmende/{version()}", verify_ssl=verify, timeout=30)  # type: ignore[arg-type]
    try:
        found = client.ClientV2.get_directory(directory, network)
        acme = client.ClientV2(found, network)
        registration = (
            messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True)
            if email
            else messages.NewRegistration(terms_of_service_agreed=True)
        )
        try:
            acme.new_account(registration)
        except errors.ConflictError as known:
            network.account = messages.RegistrationResource(
                uri=known.location, body=messages.Registration()
            )
    except Exception as exc:  # the library's and requests' errors, translated
        raise explain(exc, directory, network.retry_after) from None
    return Session(acme, key, network, directory)


@dataclass(frozen=True)
class Challenge:
    """One challenge of an order to answer: for ``domain``, its type, what to publish (the
    http-01 token and key authorization, or the dns-01 record name and value)."""

    domain: str
    kind: str
    token: str
    validation: str
    body: messages.ChallengeBody
    response: challenges.ChallengeResponse


def order(session: Session, names: Sequence[str], key: ec.EllipticCurvePrivateKey) -> Any:
    """Place an order for ``names``; return it. Raise CertificateFailed."""
    try:
        return session.acme.new_order(csr_pem(key, names))
    except Exception as exc:
        raise explain(exc, session.directory, session.network.retry_after) from None


def pick(session: Session, placed: Any, kind: str) -> list[Challenge]:
    """Return the challenges of type ``kind`` to answer for every authorization of the order
    that is not valid yet. Raise CertificateFailed if the CA offers none of that type."""
    wanted = challenges.HTTP01 if kind == "http-01" else challenges.DNS01
    found = []
    for authorization in placed.authorizations:
        body = authorization.body
        if body.status == messages.STATUS_VALID:
            continue
        domain = body.identifier.value
        offered = [c for c in body.challenges if isinstance(c.chall, wanted)]
        if not offered:
            raise CertificateFailed(f"the CA offers no {kind} challenge for {domain}", "rejected")
        chosen = offered[0]
        response, validation = chosen.chall.response_and_validation(session.key)
        if kind == "http-01":
            token = chosen.chall.encode("token")
        else:
            token = chosen.chall.validation_domain_name(domain)
        found.append(Challenge(domain, kind, token, validation, chosen, response))
    return found


def answer(session: Session, chosen: Challenge) -> None:
    """Tell the CA that ``chosen`` is ready to be checked. Raise CertificateFailed."""
    try:
        session.acme.answer_challenge(chosen.body, chosen.response)
    except Exception as exc:
        raise explain(exc, session.directory, session.network.retry_after) from None


def finish(session: Session, placed: Any) -> str:
    """Wait until the CA checked every challenge, finalise the order and return the full chain
    as PEM. Raise CertificateFailed."""
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=VALIDATION_SECONDS)
    try:
        done = session.acme.poll_and_finalize(placed, deadline)
    except Exception as exc:
        raise explain(exc, session.directory, session.network.retry_after) from None
    chain: str = done.fullchain_pem
    return chain
