"""Keep the certificates of a job: find those due, obtain them, install them, record, alert.

One run, for any number of edges reached through opened connectors (every edge from the
machine with the inventory, or an edge host's own timer with its local connector):

1. each certificate is read on every edge that serves it and found due or not
   (``facts.due``); ``force`` renews it anyway;
2. one that failed lately waits (``facts.next_attempt``: allmende's backoff, the CA's
   ``Retry-After``): no retry storm, whoever calls how often;
3. the due ones are obtained one after the other through one ACME session (``obtain``); an
   ACME directory that does not answer is tried ``ATTEMPTS`` times with growing pauses;
4. what was obtained is installed on each edge at once, with one HAProxy reload there
   (``install``); a certificate that cannot be obtained or installed leaves the one in service
   as it is;
5. every attempt is recorded in the state database (``cert_attempts``), and the ``notify``
   channels are told once when a certificate starts failing and once when it works again.
"""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
from collections.abc import Callable, Collection, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from allmende.connectors.base import Connector
from allmende.errors import CertificateFailed, UserError
from allmende.inventory.certjob import Cert, Job
from allmende.operations.certs import client
from allmende.operations.certs.facts import Held, due, failures, held, next_attempt
from allmende.operations.certs.install import install
from allmende.operations.certs.obtain import Issued, obtain
from allmende.operations.notify import Event, Notifier
from allmende.state import store

Say = Callable[[str], None]
#: How often a directory that does not answer is tried within one run, and the first pause.
ATTEMPTS = 3
PAUSE = 2.0
#: What an alert about a certificate says failed (with the certificate's name as service).
WHAT = "certificate not renewed"


@dataclass(frozen=True)
class Secrets:
    """The secret values a job needs: the ACME account key (PEM), and the TSIG key (base64) of
    each zone that takes dns-01 updates."""

    account_key: bytes
    tsig: Mapping[str, bytes] = field(default_factory=dict)


@dataclass
class Renewal:
    """How one certificate went: ``renewed``, ``current`` (not due), ``waiting`` (after
    failures, until ``next_attempt``) or ``failed`` (the one in service stays)."""

    certificate: str
    outcome: str
    message: str
    edges: tuple[str, ...] = ()
    serial: str = ""
    not_after: str = ""
    next_attempt: str = ""
    kind: str = ""

    @property
    def ok(self) -> bool:
        """Whether nothing failed (a certificate that waits has not failed again)."""
        return self.outcome != "failed"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _shown(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="seconds")


class _Session:
    """The ACME session of a run, opened on first use and tried ``ATTEMPTS`` times while the
    directory does not answer; its failure is kept for every later certificate of the run."""

    def __init__(self, job: Job, account_key: bytes, verify: str | bool, say: Say) -> None:
        self.job, self.account_key, self.verify, self.say = job, account_key, verify, say
        self.opened: client.Session | None = None
        self.failure: CertificateFailed | None = None

    async def __call__(self) -> client.Session:
        if self.opened is not None:
            return self.opened
        if self.failure is not None:
            raise self.failure
        pause = PAUSE
        for attempt in range(1, ATTEMPTS + 1):
            try:
                self.opened = await asyncio.to_thread(
                    client.open_account,
                    self.job.directory,
                    self.account_key,
                    self.job.email,
                    self.verify,
                )
                return self.opened
            except CertificateFailed as exc:
                if not exc.transient or attempt == ATTEMPTS:
                    self.failure = exc
                    raise
                self.say(f"{exc}; trying again in {pause:.0f} s")
                await asyncio.sleep(pause)
                pause *= 2
        raise AssertionError("unreachable")


def _chosen(job: Job, names: Collection[str]) -> list[Cert]:
    known = {c.name: c for c in job.certificates}
    unknown = [n for n in names if n not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise UserError(f"no certificate named {', '.join(unknown)} (the certificates: {listed})")
    return [known[n] for n in names] if names else list(job.certificates)


async def _held(cert: Cert, edges: Mapping[str, Connector]) -> list[Held]:
    found = []
    for edge in cert.edges:
        connector = edges.get(edge)
        if connector is None:
            raise CertificateFailed(f"the edge host {edge} cannot be reached", "unreachable")
        try:
            found.append(held(edge, await connector.read(cert.pem)))
        except UserError as exc:
            found.append(Held(edge, unreadable=str(exc)))
    return found


@dataclass
class _Run:
    job: Job
    edges: Mapping[str, Connector]
    db: sqlite3.Connection
    trigger: str
    say: Say
    renewals: dict[str, Renewal] = field(default_factory=dict)
    previous: dict[str, bool | None] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)

    def start(self, cert: Cert) -> None:
        history = store.cert_attempts(self.db, cert.name, limit=1)
        self.previous[cert.name] = history[0].ok if history else None
        self.attempts[cert.name] = store.start_cert_attempt(self.db, cert.name, self.trigger)

    def fail(self, cert: Cert, exc: CertificateFailed) -> None:
        retry = _shown(exc.retry_after) if isinstance(exc.retry_after, datetime.datetime) else ""
        if exc.kind == "rate_limited" and not retry:
            retry = _shown(_now() + datetime.timedelta(hours=1))
        store.finish_cert_attempt(
            self.db,
            self.attempts[cert.name],
            False,
            kind=exc.kind,
            detail=str(exc),
            retry_after=retry,
        )
        history = store.cert_attempts(self.db, cert.name)
        when, _ = next_attempt(history)
        self.renewals[cert.name] = Renewal(
            cert.name,
            "failed",
            str(exc),
            cert.edges,
            kind=exc.kind,
            next_attempt=_shown(when) if when else "",
        )
        self.say(f"{cert.name}: FAILED: {exc}")

    def succeed(self, cert: Cert, issued: Issued) -> None:
        facts = issued.facts
        after = _shown(facts.not_after) if facts.not_after else ""
        store.finish_cert_attempt(
            self.db, self.attempts[cert.name], True, serial=facts.serial, not_after=after
        )
        self.renewals[cert.name] = Renewal(
            cert.name,
            "renewed",
            f"serial {facts.serial} from {facts.issuer}, valid until {after}",
            cert.edges,
            serial=facts.serial,
            not_after=after,
        )
        self.say(f"{cert.name}: installed on {', '.join(cert.edges)} (serial {facts.serial})")


def _alerts(run: _Run, notifier: Notifier) -> None:
    """One alert when a certificate starts failing, one recovery when it works again."""
    for name, renewal in run.renewals.items():
        if name not in run.attempts:
            continue
        before = run.previous.get(name)
        common = {"host": ", ".join(renewal.edges), "collective": run.job.collective}
        if renewal.outcome == "failed" and before is not False:
            then = f"; next attempt after {renewal.next_attempt}" if renewal.next_attempt else ""
            detail = f"{renewal.message}\n\nThe certificate in service stays{then}."
            streak = failures(store.cert_attempts(run.db, name))
            since = streak[-1].started if streak else store.now()
            notifier.send(Event(name, WHAT, since, detail, "problem", **common))
        elif renewal.outcome == "renewed" and before is False:
            streak = failures(store.cert_attempts(run.db, name)[1:])
            since = streak[-1].started if streak else store.now()
            notifier.send(Event(name, WHAT, since, renewal.message, "recovery", **common))


async def _decide(run: _Run, certs: list[Cert], force: bool) -> list[tuple[Cert, str]]:
    """Return the certificates to obtain now, with why; fill in those that are not."""
    todo = []
    now = _now()
    for cert in certs:
        try:
            found = await _held(cert, run.edges)
        except CertificateFailed as exc:
            run.start(cert)
            run.fail(cert, exc)
            continue
        reason = "forced" if force else due(cert.name, found, run.job.renew_before_days, now)
        if reason is None:
            left = min((f.days_left(now) or 0) for f in found)
            run.renewals[cert.name] = Renewal(
                cert.name, "current", f"{left:.0f} days left", cert.edges
            )
            continue
        when, why = next_attempt(store.cert_attempts(run.db, cert.name), force)
        if when is not None and when > now:
            last = store.cert_attempts(run.db, cert.name, limit=1)[0]
            run.renewals[cert.name] = Renewal(
                cert.name,
                "waiting",
                f"{reason}, but it waits after {why} until {_shown(when)} (last: {last.detail})",
                cert.edges,
                next_attempt=_shown(when),
            )
            run.say(f"{cert.name}: waiting until {_shown(when)} ({why})")
            continue
        todo.append((cert, reason))
    return todo


async def renew(
    job: Job,
    secrets: Secrets,
    edges: Mapping[str, Connector],
    state: Path,
    *,
    trigger: str,
    names: Collection[str] = (),
    force: bool = False,
    say: Say = lambda line: None,
    notify_timeout: float = 60.0,
) -> list[Renewal]:
    """Keep the certificates of ``job`` (only ``names`` if given) on the opened ``edges``
    (edge host -> connector; one missing is unreachable), recording into the state database
    at ``state`` (see the module docstring). Return how each went, in the job's order. Raise
    UserError for an unknown name or a state database that cannot be opened."""
    certs = _chosen(job, names)
    notifier = Notifier(job.notify)
    with closing(store.open_store(state)) as db, client.trusted(job.trust) as verify:
        run = _Run(job, edges, db, trigger, say)
        todo = await _decide(run, certs, force)
        session = _Session(job, secrets.account_key, verify, say)
        issued: dict[str, Issued] = {}
        for cert, reason in todo:
            say(f"{cert.name}: obtaining over {cert.challenge} ({reason})")
            run.start(cert)
            try:
                issued[cert.name] = await obtain(session, job, cert, edges, secrets.tsig)
            except CertificateFailed as exc:
                run.fail(cert, exc)
        for edge, connector in edges.items():
            files = [
                (c.pem, issued[c.name].pem) for c, _ in todo if c.name in issued and edge in c.edges
            ]
            if not files:
                continue
            try:
                await install(connector, files, say)
            except CertificateFailed as exc:
                for cert, _ in todo:
                    if cert.name in issued and edge in cert.edges:
                        del issued[cert.name]
                        run.fail(cert, exc)
        for cert, _ in todo:
            if cert.name in issued:
                run.succeed(cert, issued[cert.name])
        _alerts(run, notifier)
    for delivery in notifier.close(timeout=notify_timeout):
        say(f"alert to {delivery.channel.target} not delivered: {delivery.error or 'timed out'}")
    return [run.renewals[c.name] for c in certs if c.name in run.renewals]
