"""http-01: answer the CA's requests on every edge host that serves the names.

The edge's HAProxy already sends every ``/.well-known/acme-challenge/`` request of its HTTP port
to ``127.0.0.1:<acme.responder_port>``. While an order's challenges are checked, a small program
(``onhost.acme_responder``) listens there on each edge host, run through ``Connector.run``
with the tokens on its standard input: locally or over SSH alike. It says it is ready with a
file in ``/var/lib/allmende/acme-responder`` and stops when a ``stop`` file appears there,
printing how often each token was fetched, so that a failed check can say whether the CA's
requests reached the edge at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from allmende import onhost
from allmende.connectors.base import Connector, Ran
from allmende.errors import CertificateFailed, CommandFailed, UserError
from allmende.inventory.hostpaths import ACME_RESPONDER_DIR
from allmende.onhost.acme_responder import TAKEN

#: How long a responder may run at most, in seconds (it is stopped as soon as the order is done).
LIFETIME = 300.0
#: How long to wait for a responder to listen.
READY_SECONDS = 20.0


@dataclass
class Answered:
    """What the responders saw: per edge, how often each token was fetched."""

    served: dict[str, dict[str, int]] = field(default_factory=dict)

    def reached(self) -> bool:
        """Whether any request for a token reached any edge."""
        return any(sum(counts.values()) for counts in self.served.values())


async def _ready(connector: Connector, task: asyncio.Task[Ran], port: int) -> None:
    """Wait until the responder on ``connector`` listens. Raise CertificateFailed if it
    exits first (the port is taken) or does not say so in time."""
    ready = f"{ACME_RESPONDER_DIR}/ready"
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if task.done():
            break
        if await connector.stat(ready) is not None:
            return
        await asyncio.sleep(0.05)
    if not task.done():
        raise CertificateFailed(
            f"{connector.host}: the http-01 responder did not start within {READY_SECONDS:.0f} s",
            "other",
        )
    try:
        ran = task.result()
    except UserError as exc:
        raise CertificateFailed(f"{connector.host}: the http-01 responder failed: {exc}") from None
    if ran.exit == TAKEN:
        raise CertificateFailed(
            f"{connector.host}: 127.0.0.1:{port} (acme.responder_port) is taken, by another "
            "renewal running there or another program: the edge's HTTP port sends "
            "/.well-known/acme-challenge/ there",
            "other",
        )
    raise CertificateFailed(f"{connector.host}: the http-01 responder stopped at once", "other")


async def _stop(connector: Connector, task: asyncio.Task[Ran]) -> dict[str, int]:
    """Stop the responder on ``connector``; return how often it served each token."""
    for _ in range(20):
        if task.done():
            break
        with contextlib.suppress(UserError):
            await connector.write_atomic(f"{ACME_RESPONDER_DIR}/stop", b"", 0o600)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 2.0)
    if not task.done():
        task.cancel()
        return {}
    try:
        ran = task.result()
        counts = json.loads(ran.stdout.decode() or "{}").get("served", {})
    except (UserError, ValueError, asyncio.CancelledError):
        return {}
    return {str(k): int(v) for k, v in counts.items()}


@contextlib.asynccontextmanager
async def answering(
    edges: Mapping[str, Connector], port: int, tokens: Mapping[str, str]
) -> AsyncIterator[Answered]:
    """Answer ``tokens`` (token -> key authorization) on 127.0.0.1:``port`` of every edge
    while the block runs; yield what they served (filled in when the block ends). Raise
    CertificateFailed if a responder cannot listen."""
    tasks: dict[str, asyncio.Task[Ran]] = {}
    answered = Answered()
    payload = json.dumps(dict(tokens)).encode()
    try:
        for name, connector in edges.items():
            with contextlib.suppress(UserError):
                await connector.remove(f"{ACME_RESPONDER_DIR}/ready")
            argv = onhost.command(
                "acme_responder",
                str(port),
                connector.real(ACME_RESPONDER_DIR),
                str(LIFETIME),
            )
            tasks[name] = asyncio.create_task(
                connector.run(
                    argv,
                    payload,
                    ok=(0, TAKEN),
                    timeout=LIFETIME + 30,
                    what="answering ACME http-01 challenges",
                )
            )
        for name, task in tasks.items():
            await _ready(edges[name], task, port)
        yield answered
    finally:
        for name, task in tasks.items():
            try:
                answered.served[name] = await _stop(edges[name], task)
            except CommandFailed:
                answered.served[name] = {}
