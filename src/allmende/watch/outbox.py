"""Alerts on their way to the collective's channels, delivered without slowing the probes.

Each channel has a queue of its own, worked through in order (an alert before its recovery)
by sending on a worker thread with ``operations.notify.deliver``: e-mail over SMTP, the JSON
webhook. A delivery that fails is tried again after a pause that doubles each time, up to
``max_pause``, until it is delivered: a webhook receiver down for an hour gets its alerts when
it is back, while mail goes out as usual. Every alert and how its delivery goes is handed to
the state database (``changed``), so a watcher started again sends what was still waiting and
nothing that was delivered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace

from allmende.inventory.backupjob import Channel
from allmende.operations.notify import Event, deliver
from allmende.state.watchstore import Outgoing

log = logging.getLogger(__name__)


def _channel_text(channel: Channel) -> str:
    return json.dumps(asdict(channel), sort_keys=True)


class Outbox:
    """The alerts of one watcher, per channel."""

    def __init__(
        self,
        channels: Iterable[Channel],
        *,
        transport: Callable[[Event, Channel], None] = deliver,
        pause: float = 2.0,
        max_pause: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.channels = {_channel_text(c): c for c in channels}
        self.transport = transport
        self.pause = pause
        self.max_pause = max_pause
        self.clock = clock
        self.changed: list[Outgoing] = []
        self.delivered: list[Outgoing] = []
        self._queues: dict[str, asyncio.Queue[Outgoing]] = {}
        self._sending = 0

    def _queue(self, channel: str) -> asyncio.Queue[Outgoing]:
        if channel not in self._queues:
            self._queues[channel] = asyncio.Queue()
        return self._queues[channel]

    def add(self, event: Event) -> list[Outgoing]:
        """Queue ``event`` for every channel; return the new outgoing alerts."""
        body = json.dumps(asdict(event), sort_keys=True)
        made = [
            Outgoing(uuid.uuid4().hex, channel, body, self.clock()) for channel in self.channels
        ]
        for outgoing in made:
            self.changed.append(outgoing)
            self._queue(outgoing.channel).put_nowait(outgoing)
        return made

    def restore(self, waiting: Iterable[Outgoing]) -> None:
        """Queue alerts a watcher before this one left undelivered (to channels still
        configured; the others are given up)."""
        for outgoing in waiting:
            if outgoing.channel in self.channels:
                self._queue(outgoing.channel).put_nowait(outgoing)
            else:
                self.changed.append(replace(outgoing, error="the channel is gone", delivered=0))

    def pending(self) -> int:
        """Return how many alerts wait for delivery."""
        return sum(q.qsize() for q in self._queues.values()) + self._sending

    async def run(self) -> None:
        """Deliver forever, one worker per channel."""
        for channel in self.channels:
            self._queue(channel)
        await asyncio.gather(*(self._work(c) for c in list(self._queues)))

    async def _work(self, channel_text: str) -> None:
        channel = self.channels[channel_text]
        queue = self._queue(channel_text)
        while True:
            outgoing = await queue.get()
            self._sending += 1
            try:
                await self._deliver(outgoing, channel)
            finally:
                self._sending -= 1

    async def _deliver(self, outgoing: Outgoing, channel: Channel) -> None:
        event = Event(**json.loads(outgoing.event))
        pause = self.pause
        while True:
            attempts = outgoing.attempts + 1
            try:
                await asyncio.to_thread(self.transport, event, channel)
            except (OSError, smtplib.SMTPException, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.warning("alert to %s not delivered (try %d): %s", channel.target, attempts, exc)
                outgoing = replace(outgoing, attempts=attempts, error=error)
                self.changed.append(outgoing)
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.max_pause)
                continue
            outgoing = replace(outgoing, attempts=attempts, error="", delivered=self.clock())
            self.changed.append(outgoing)
            self.delivered.append(outgoing)
            return

    def take_changed(self) -> list[Outgoing]:
        """Return the alerts whose record changed since the last call (latest each)."""
        latest = {o.key: o for o in self.changed}
        self.changed = []
        return list(latest.values())
