"""Alerts to the collective's ``notify`` channels: e-mail over SMTP and a JSON webhook.

One module for everything that alerts (the backup jobs now, the watcher later). An ``Event``
says which service, what failed (``what``, a stable short phrase such as ``backup failed``),
since when, and whether this is the ``problem`` or its ``recovery``. ``Notifier.send`` hands an
event to every channel on a worker thread and returns at once; each delivery is tried
``attempts`` times with growing pauses, so a slow or absent mail server never blocks a backup;
``Notifier.close`` waits (a bounded time) for what is still under way, so a short-lived
process can send before it exits. ``Incidents`` turns a stream of checks into one alert when
something starts failing and one recovery when it works again.

Only the standard library is used (``smtplib``, ``urllib``): allmende's copy on a host sends
alerts without any of allmende's dependencies.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Literal

from allmende.inventory.backupjob import Channel

log = logging.getLogger(__name__)

State = Literal["problem", "recovery"]


def now() -> str:
    """Return the current UTC time as ISO 8601 text, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Event:
    """Something to tell the people who keep the servers."""

    service: str
    what: str
    since: str
    detail: str = ""
    state: State = "problem"
    host: str = ""
    collective: str = ""
    time: str = field(default_factory=now)

    @property
    def key(self) -> str:
        """What makes two events the same incident: the service and what failed."""
        return f"{self.service}: {self.what}"

    def subject(self) -> str:
        """Return the one-line summary (an e-mail's subject)."""
        prefix = f"[allmende {self.collective}] " if self.collective else "[allmende] "
        if self.state == "recovery":
            return f"{prefix}{self.service}: recovered ({self.what} since {self.since})"
        return f"{prefix}{self.service}: {self.what}"

    def text(self) -> str:
        """Return the whole message as plain text."""
        lines = [
            self.subject(),
            "",
            f"Service: {self.service}" + (f" on {self.host}" if self.host else ""),
            f"What: {self.what}" + (" (now recovered)" if self.state == "recovery" else ""),
            f"Since: {self.since}",
            f"At: {self.time}",
        ]
        if self.detail:
            lines += ["", self.detail]
        return "\n".join(lines) + "\n"

    def payload(self) -> bytes:
        """Return the webhook's JSON body: every field, plus ``subject``."""
        return json.dumps({**asdict(self), "subject": self.subject()}, sort_keys=True).encode()


def _smtp_address(smtp: str) -> tuple[str, int]:
    host, _, port = (smtp or "localhost:25").rpartition(":")
    if not host:
        return port or "localhost", 25
    return host.strip("[]"), int(port or 25)


def send_email(event: Event, to: str, smtp: str, timeout: float = 10.0) -> None:
    """Hand ``event`` as an e-mail to ``to`` to the mail server ``smtp`` (``host:port``; 465
    speaks TLS from the start, 587 upgrades with STARTTLS). Raise OSError or
    smtplib.SMTPException if it is not accepted."""
    # Imported here, where a message is sent: a host's backup job that sends none starts
    # without them.
    import smtplib
    import ssl
    from email.message import EmailMessage

    host, port = _smtp_address(smtp)
    message = EmailMessage()
    message["From"] = f"allmende <allmende@{socket.getfqdn()}>"
    message["To"] = to
    message["Subject"] = event.subject()
    message["X-Allmende-Incident"] = event.key
    message.set_content(event.text())
    if port == 465:
        with smtplib.SMTP_SSL(host, port, timeout=timeout) as server:
            server.send_message(message)
        return
    with smtplib.SMTP(host, port, timeout=timeout) as server:
        if port == 587:
            server.starttls(context=ssl.create_default_context())
        server.send_message(message)


def send_webhook(event: Event, url: str, timeout: float = 10.0) -> None:
    """POST ``event`` as JSON to ``url``. Raise OSError (urllib's errors included) unless the
    answer is 2xx."""
    import urllib.request

    request = urllib.request.Request(
        url,
        data=event.payload(),
        headers={"Content-Type": "application/json", "User-Agent": "allmende"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as answer:
        if not 200 <= answer.status < 300:
            raise OSError(f"{url} answered {answer.status}")


def deliver(event: Event, channel: Channel) -> None:
    """Send ``event`` to one channel once. Raise OSError or smtplib.SMTPException."""
    if channel.kind == "email":
        send_email(event, channel.target, channel.smtp)
    elif channel.kind == "webhook":
        send_webhook(event, channel.target)
    else:
        raise OSError(f"unknown channel kind {channel.kind!r}")


@dataclass
class Delivery:
    """How sending one event to one channel went."""

    event: Event
    channel: Channel
    attempts: int = 0
    error: str = ""
    done: bool = False


class Notifier:
    """Sends events to channels on one worker thread, each delivery retried with growing
    pauses (``pause``, then twice that, ...) up to ``attempts`` times."""

    def __init__(
        self,
        channels: Iterable[Channel],
        *,
        attempts: int = 4,
        pause: float = 2.0,
        transport: Callable[[Event, Channel], None] = deliver,
    ) -> None:
        self.channels = tuple(channels)
        self.attempts = attempts
        self.pause = pause
        self.transport = transport
        self.deliveries: list[Delivery] = []
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def send(self, event: Event) -> list[Delivery]:
        """Queue ``event`` for every channel and return at once; return the deliveries, which
        fill in as they are done."""
        started = [Delivery(event, channel) for channel in self.channels]
        self.deliveries += started
        if started and self._thread is None:
            self._thread = threading.Thread(target=self._work, name="notify", daemon=True)
            self._thread.start()
        for delivery in started:
            self._queue.put(delivery)
        return started

    def _work(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is None:
                return
            for attempt in range(1, self.attempts + 1):
                delivery.attempts = attempt
                try:
                    self.transport(delivery.event, delivery.channel)
                except (OSError, ValueError) as exc:  # smtplib.SMTPException is an OSError
                    delivery.error = f"{type(exc).__name__}: {exc}"
                    log.warning(
                        "alert to %s not delivered (attempt %d): %s",
                        delivery.channel.target,
                        attempt,
                        exc,
                    )
                    if attempt < self.attempts:
                        time.sleep(self.pause * 2 ** (attempt - 1))
                    continue
                delivery.error = ""
                break
            delivery.done = True

    def close(self, timeout: float = 60.0) -> list[Delivery]:
        """Wait up to ``timeout`` seconds for every queued delivery; return those that were not
        delivered (still under way, or failed after every attempt)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        return [d for d in self.deliveries if not d.done or d.error]


class Incidents:
    """One alert when something starts failing, one recovery when it works again.

    ``open`` maps an incident's key (``Event.key``) to the time it started; pass a mapping the
    caller keeps (the state database, a dict) so that incidents outlive the process.
    """

    def __init__(self, open: MutableMapping[str, str] | None = None) -> None:
        self.open: MutableMapping[str, str] = {} if open is None else open

    def failing(self, event: Event) -> Event | None:
        """Given the event of a failed check, return the alert to send: the event (dated from
        when the incident started) the first time, None while it stays open."""
        if event.key in self.open:
            return None
        self.open[event.key] = event.since
        return event

    def passing(self, service: str, what: str, **details: str) -> Event | None:
        """Given that ``what`` of ``service`` works, return the recovery to send if it had
        been failing (the incident closes), else None."""
        key = f"{service}: {what}"
        since = self.open.pop(key, None)
        if since is None:
            return None
        return Event(service, what, since, state="recovery", **details)
