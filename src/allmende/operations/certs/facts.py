"""What a certificate on an edge is, whether it is due, and when a failed one may be tried again.

Pure functions over PEM bytes, times and the recorded attempts, with ``cryptography`` (of the
virtual environment, or Debian's on an edge host, 38 and later) and the standard library.

Due: a name whose PEM is missing on an edge that serves it, holds a self-signed stand-in, does
not name it, or expires within ``renew_before_days``. After a failed attempt the next one waits
``BACKOFF`` (10 minutes), doubled for every further failure in a row up to ``BACKOFF_MAX`` (a
day), and never before the CA's ``Retry-After`` of a rate limit; a forced renewal skips the
first wait but never the CA's.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from allmende.state.store import CertAttempt

#: The first wait after a failed attempt, and the longest.
BACKOFF = datetime.timedelta(minutes=10)
BACKOFF_MAX = datetime.timedelta(days=1)
_BEGIN, _END = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"


@dataclass(frozen=True)
class Held:
    """The certificate one edge serves for a name (``missing``: no file there)."""

    edge: str
    serial: str = ""
    not_after: datetime.datetime | None = None
    issuer: str = ""
    self_signed: bool = False
    names: tuple[str, ...] = ()
    missing: bool = False
    unreadable: str = ""

    def days_left(self, now: datetime.datetime) -> float | None:
        """Return the days until it expires (negative: expired), or None without one."""
        if self.not_after is None:
            return None
        return (self.not_after - now).total_seconds() / 86400


def _name(name: x509.Name) -> str:
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
        found = name.get_attributes_for_oid(oid)
        if found:
            return str(found[0].value)
    return name.rfc4514_string()


def leaf(pem: bytes) -> x509.Certificate:
    """Return the first certificate of a PEM file (the leaf of a chain). Raise ValueError."""
    text = pem.decode("ascii", errors="replace")
    start = text.find(_BEGIN)
    end = text.find(_END, start)
    if start < 0 or end < 0:
        raise ValueError("no certificate in it")
    return x509.load_pem_x509_certificate(text[start : end + len(_END)].encode())


def expiry(certificate: x509.Certificate) -> datetime.datetime:
    """Return when ``certificate`` expires, as an aware UTC datetime (any cryptography)."""
    aware = getattr(certificate, "not_valid_after_utc", None)
    if isinstance(aware, datetime.datetime):
        return aware
    naive: datetime.datetime = certificate.not_valid_after
    return naive.replace(tzinfo=datetime.UTC)


def held(edge: str, pem: bytes | None) -> Held:
    """Return what the PEM file ``pem`` of ``edge`` holds (None: no such file)."""
    if pem is None:
        return Held(edge, missing=True)
    try:
        certificate = leaf(pem)
    except ValueError as exc:
        return Held(edge, unreadable=str(exc) or "not a certificate")
    try:
        alternatives = certificate.extensions.get_extension_for_oid(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME
        ).value
        names = tuple(alternatives.get_values_for_type(x509.DNSName))  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        names = ()
    return Held(
        edge,
        serial=f"{certificate.serial_number:x}",
        not_after=expiry(certificate),
        issuer=_name(certificate.issuer),
        self_signed=certificate.issuer == certificate.subject,
        names=names,
    )


def due(
    name: str, found: Sequence[Held], renew_before_days: int, now: datetime.datetime
) -> str | None:
    """Return why the certificate ``name`` is due on the edges ``found`` (None: it is not)."""
    for one in found:
        if one.missing:
            return f"{one.edge} has no certificate for it"
        if one.unreadable:
            return f"the file on {one.edge} is no certificate ({one.unreadable})"
        if one.self_signed:
            return f"{one.edge} serves a self-signed stand-in"
        if name not in one.names:
            return f"the certificate on {one.edge} does not name {name}"
        left = one.days_left(now)
        if left is not None and left < renew_before_days:
            return (
                f"{max(left, 0):.0f} days left on {one.edge}, renewed {renew_before_days} "
                "days early"
            )
    return None


def renew_at(found: Sequence[Held], renew_before_days: int) -> datetime.datetime | None:
    """Return when the certificate on ``found`` becomes due by age (None: it is due now)."""
    expiries = [f.not_after for f in found if f.not_after is not None and not f.self_signed]
    if not expiries or len(expiries) < len(found):
        return None
    return min(expiries) - datetime.timedelta(days=renew_before_days)


def _when(text: str) -> datetime.datetime | None:
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def failures(history: Sequence[CertAttempt]) -> list[CertAttempt]:
    """Return the failed attempts since the last one that worked (``history`` newest first)."""
    found = []
    for attempt in history:
        if attempt.ok:
            break
        found.append(attempt)
    return found


def next_attempt(
    history: Sequence[CertAttempt], force: bool = False
) -> tuple[datetime.datetime | None, str]:
    """Return when the next attempt may be made after the failures in ``history`` (newest
    first; None: at once) and why it waits. ``force`` skips allmende's own wait, never the
    CA's ``Retry-After``."""
    failed = failures(history)
    if not failed:
        return None, ""
    latest = failed[0]
    rate = _when(latest.retry_after) if latest.retry_after else None
    own = None
    finished = _when(latest.finished or latest.started)
    if finished is not None and not force:
        # The doubling stops at the longest wait (weeks of failures would overflow it).
        doublings = min(len(failed) - 1, (BACKOFF_MAX // BACKOFF).bit_length())
        own = finished + min(BACKOFF * 2**doublings, BACKOFF_MAX)
    if rate is not None and (own is None or rate > own):
        return rate, "the CA's rate limit"
    if own is not None:
        count = f"{len(failed)} failed attempt{'s' if len(failed) > 1 else ''} in a row"
        return own, count
    return None, ""
