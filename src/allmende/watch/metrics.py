"""The watcher's Prometheus endpoint: ``/metrics`` in the text format of the standard client
library (``prometheus_client``), served on the watcher's own event loop by aiohttp.

Per probe (labels ``probe``, ``service``, ``kind``): ``allmende_probe_success`` (1 when its
last try was up, as the blackbox exporter's ``probe_success``), ``allmende_probe_duration_seconds``,
``allmende_check_state`` (0 up, 1 degraded, 2 down: the confirmed state, after retries and
damping), ``allmende_certificate_days_left`` for ``tls`` and ``allmende_backup_age_hours`` for
``backup`` probes; for the watcher, ``allmende_alerts_pending`` (alerts waiting for delivery).
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from allmende.inventory.watchspec import Probe

LABELS = ("probe", "service", "kind")
STATES = {"up": 0, "degraded": 1, "down": 2}


class Metrics:
    """The gauges of one watcher, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.success = Gauge(
            "allmende_probe_success", "Whether the last try was up", LABELS, registry=r
        )
        self.duration = Gauge(
            "allmende_probe_duration_seconds", "How long the last try took", LABELS, registry=r
        )
        self.state = Gauge(
            "allmende_check_state", "Confirmed state: 0 up, 1 degraded, 2 down", LABELS, registry=r
        )
        self.days = Gauge(
            "allmende_certificate_days_left", "Days the certificate has left", LABELS, registry=r
        )
        self.age = Gauge("allmende_backup_age_hours", "Age of the last archive", LABELS, registry=r)
        self.pending = Gauge("allmende_alerts_pending", "Alerts waiting for delivery", registry=r)

    def record(
        self, probe: Probe, state: str, latency: float | None, value: float | None, check: str
    ) -> None:
        """Record a probe's latest try (``state``) and its check's confirmed state."""
        labels = (probe.id, probe.service, probe.kind)
        self.success.labels(*labels).set(1 if state == "up" else 0)
        if latency is not None:
            self.duration.labels(*labels).set(latency)
        if check in STATES:
            self.state.labels(*labels).set(STATES[check])
        if value is not None and probe.kind == "tls":
            self.days.labels(*labels).set(value)
        if value is not None and probe.kind == "backup":
            self.age.labels(*labels).set(value)

    def text(self) -> bytes:
        """Return every metric in Prometheus' text format."""
        return generate_latest(self.registry)


async def serve(metrics: Metrics, listen: str) -> web.AppRunner:
    """Serve ``/metrics`` on ``listen`` (``address:port``); return the runner to clean up."""

    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=metrics.text(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    await web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port)).start()
    return runner
