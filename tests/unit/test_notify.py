"""Alerts: one module for e-mail and webhooks, retried on a worker thread without blocking the
caller, and one alert per incident plus one recovery."""

from __future__ import annotations

import email
import http.server
import json
import smtplib
import threading
import time
from collections.abc import Iterator

import pytest

from allmende.inventory.backupjob import Channel
from allmende.operations.notify import Event, Incidents, Notifier, send_webhook

EVENT = Event("wiki", "backup failed", "2026-12-05T03:00:00+00:00", "disk full", host="rack",
              collective="nordlicht")  # fmt: skip


def test_an_event_reads_as_a_message_and_as_json() -> None:
    assert EVENT.subject() == "[allmende nordlicht] wiki: backup failed"
    assert "Service: wiki on rack" in EVENT.text() and "disk full" in EVENT.text()
    data = json.loads(EVENT.payload())
    assert data["service"] == "wiki" and data["state"] == "problem"
    assert data["since"] == "2026-12-05T03:00:00+00:00"
    assert data["subject"] == EVENT.subject()
    recovered = Event("wiki", "backup failed", EVENT.since, state="recovery")
    assert "recovered" in recovered.subject()


def test_sending_returns_at_once_and_retries_until_delivered() -> None:
    tries: list[float] = []
    release = threading.Event()

    def flaky(event: Event, channel: Channel) -> None:
        tries.append(time.monotonic())
        release.wait(5)
        if len(tries) < 3:
            raise OSError("connection refused")

    notifier = Notifier([Channel("webhook", "http://x")], attempts=4, pause=0.01, transport=flaky)
    started = time.monotonic()
    [delivery] = notifier.send(EVENT)
    assert time.monotonic() - started < 0.5, "send does not wait for the delivery"
    release.set()
    assert notifier.close(timeout=10) == []
    assert delivery.done and delivery.attempts == 3 and delivery.error == ""


def test_a_channel_that_never_answers_is_reported_after_its_attempts() -> None:
    def down(event: Event, channel: Channel) -> None:
        raise smtplib.SMTPServerDisconnected("gone")

    notifier = Notifier([Channel("email", "a@b", "127.0.0.1:9")], attempts=2, pause=0.01,
                        transport=down)  # fmt: skip
    notifier.send(EVENT)
    [failed] = notifier.close(timeout=10)
    assert failed.attempts == 2 and "gone" in failed.error


def test_one_incident_is_one_alert_and_one_recovery() -> None:
    incidents = Incidents()
    assert incidents.failing(EVENT) is EVENT
    later = Event("wiki", "backup failed", "2026-12-06T03:00:00+00:00")
    assert incidents.failing(later) is None, "still the same incident"
    assert incidents.passing("pad", "backup failed") is None
    recovery = incidents.passing("wiki", "backup failed", host="rack")
    assert recovery is not None and recovery.state == "recovery"
    assert recovery.since == EVENT.since and recovery.host == "rack"
    assert incidents.passing("wiki", "backup failed") is None


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200 if self.path == "/ok" else 500)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_the_webhook_posts_json_and_an_error_status_is_a_failure(
    receiver: tuple[str, list[bytes]],
) -> None:
    url, bodies = receiver
    send_webhook(EVENT, f"{url}/ok")
    assert json.loads(bodies[0])["what"] == "backup failed"
    with pytest.raises(OSError):
        send_webhook(EVENT, f"{url}/broken")


def test_the_email_names_the_incident(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[email.message.EmailMessage] = []

    class Server:
        def __init__(self, host: str, port: int, timeout: float) -> None:
            assert (host, port) == ("mail.example", 2525)

        def __enter__(self) -> Server:
            return self

        def __exit__(self, *args: object) -> None:
            pass

        def send_message(self, message: email.message.EmailMessage) -> None:
            sent.append(message)

    monkeypatch.setattr(smtplib, "SMTP", Server)
    from allmende.operations.notify import send_email

    send_email(EVENT, "infra@nordlicht.example", "mail.example:2525")
    [message] = sent
    assert message["To"] == "infra@nordlicht.example"
    assert message["X-Allmende-Incident"] == "wiki: backup failed"
