"""What the watcher probes, decided from the inventory alone: no monitor is typed twice.

- Every route: ``http`` through the edge with the route's name as Host header and TLS server
  name (``https://`` for ``tls: terminate``, ``http://`` for ``tls: none``; any answer below
  400 passes, as after an apply), and ``tls`` once per name for ``terminate`` (the edge's
  certificate) and ``passthrough`` (the backend's own, through the edge by SNI).
- Every ``expose``: ``tcp`` connect at each edge that serves it; on a port that speaks TLS
  from the start (465, 993, 995, ...) or after STARTTLS (25 and 587 SMTP, 143 IMAP, 110 POP3)
  a ``tls`` probe too, for the certificate of the service's first route name (or of the
  edge's address when that is a name). UDP ports are not probed (``skipped``).
- Every route name in a zone allmende renders: ``dns`` at each of the zone's nameservers,
  which must answer the zone's A/AAAA records for it (the edge's public addresses); a
  nameserver inside the zone is asked at its glue address, ``watch.nameservers`` overrides.
- Every backed-up service: ``backup`` freshness against its schedule, read from its
  repository as ``allmende backup status`` does. Run from the inventory every service's is
  read through its host; on a watch host, those of the services on that host from their job
  and passphrase files there, and those on every other host reached over SSH by asking that
  host (``remotes``: its address, port and user from the inventory, the watch host's key for
  it, whose only use there is a forced command that answers how fresh each backup is). The
  passphrases never leave their hosts. A host not reached over SSH is ``skipped``.
- The ``monitor:`` entries of each service, routed as ``apply`` verifies them; an entry that
  names the same URL or ``host:port`` as a derived probe replaces it.

Intervals by kind, timeouts, retries come from ``watch:`` (a monitor's own ``interval``,
``timeout`` and ``retries`` win); each probe carries the maintenance windows of the collective,
its service, the service's host and the hosts that host runs in, and the edges it goes through.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from allmende.inventory import backups, derive
from allmende.inventory.backupjob import Channel
from allmende.inventory.edgeroute import edge_address, target
from allmende.inventory.hostpaths import WATCH_KNOWN_HOSTS, backup_job, watch_key
from allmende.inventory.inventory import Inventory
from allmende.inventory.models import Monitor, Window, seconds
from allmende.inventory.watchspec import Plan, Probe, Remote, weekdays
from allmende.inventory.watchspec import Window as SpecWindow
from allmende.render.dns import answers

#: Ports that speak TLS from the first byte (HTTPS, SMTPS, LDAPS, DNS over TLS, FTPS, IMAPS,
#: POP3S, SIP-TLS, XMPP's old port, IRC over TLS, HTTPS on 8443).
IMPLICIT_TLS = frozenset({443, 465, 636, 853, 990, 993, 995, 5061, 5223, 6697, 8443})
#: Ports that speak TLS after a STARTTLS of their protocol.
STARTTLS = {25: "smtp", 587: "smtp", 143: "imap", 110: "pop3"}


def _windows(windows: Iterable[Window]) -> tuple[SpecWindow, ...]:
    return tuple(
        SpecWindow(
            w.start.replace("T", " "),
            w.end.replace("T", " "),
            weekdays(w.days) if len(w.start) == 5 else (),
            w.reason,
        )
        for w in windows
    )


class _Planner:
    def __init__(self, inventory: Inventory, where: str | None) -> None:
        self.inv = inventory
        self.where = where
        self.watch = inventory.collective.watch
        self.probes: dict[str, Probe] = {}
        self.skipped: list[str] = []
        self.remotes: dict[str, Remote] = {}

    def _ancestors(self, host: str) -> list[str]:
        chain, seen = [], set()
        current: str | None = host
        while current is not None and current not in seen and current in self.inv.hosts:
            chain.append(current)
            seen.add(current)
            current = self.inv.hosts[current].parent
        return chain

    def windows(self, service: str, through: Iterable[str] = ()) -> tuple[SpecWindow, ...]:
        """Return the maintenance windows that silence a probe of ``service`` (through the
        edge hosts ``through``)."""
        model = self.inv.services[service]
        hosts = [*self._ancestors(model.host)]
        for edge in through:
            hosts += [h for h in self._ancestors(edge) if h not in hosts]
        found = [*self.watch.maintenance, *model.maintenance]
        for host in hosts:
            found += self.inv.hosts[host].maintenance
        return _windows(found)

    def add(self, probe: Probe) -> None:
        self.probes[probe.id] = probe

    def interval(self, kind: str) -> float:
        return seconds(getattr(self.watch.intervals, kind))

    def base(self, service: str, kind: str, what: str, edges: tuple[str, ...] = ()) -> Probe:
        suffix = f"@{edges[0]}" if len(edges) == 1 and len(self.edges(service)) > 1 else ""
        return Probe(
            id=f"{service}/{kind}/{what}{suffix}",
            kind=kind,  # type: ignore[arg-type]
            service=service,
            host=self.inv.services[service].host,
            what=what,
            interval=self.interval(kind),
            timeout=seconds(self.watch.timeout),
            retries=self.watch.retries,
            windows=self.windows(service, edges),
        )

    def edges(self, service: str) -> tuple[str, ...]:
        return derive.edges_of(self.inv, service)

    # ------------------------------------------------------------------ routes, exposes

    def routes(self, service: str) -> None:
        model = self.inv.services[service]
        tls_done: set[str] = set()
        for route in model.routes:
            through = derive.domain_edges(self.inv).get(route.domain, ())
            for edge in through:
                edges = (edge,)
                if route.tls != "passthrough":
                    scheme = "http" if route.tls == "none" else "https"
                    port = 443 if scheme == "https" else 80
                    where = target(self.inv, route.domain, port, scheme, edge)
                    what = f"{scheme}://{route.domain}{route.path}"
                    self.add(
                        _with(
                            self.base(service, "http", what, edges),
                            address=where.address,
                            port=where.port,
                            name=route.domain,
                            scheme=scheme,
                            path=route.path,
                        )
                    )
                if route.tls != "none" and route.domain not in tls_done:
                    where = target(self.inv, route.domain, 443, "https", edge)
                    what = f"{route.domain}:443"
                    self.add(
                        _with(
                            self.base(service, "tls", what, edges),
                            address=where.address,
                            port=where.port,
                            name=route.domain,
                        )
                    )
            tls_done.add(route.domain)

    def exposes(self, service: str) -> None:
        model = self.inv.services[service]
        names = [r.domain for r in model.routes]
        for expose in model.expose:
            if expose.protocol != "tcp":
                self.skipped.append(
                    f"{service}: exposed port {expose.port}/{expose.protocol} (UDP is not probed)"
                )
                continue
            for edge in self.edges(service):
                address = edge_address(self.inv, edge)
                what = f"{edge}:{expose.port}"
                self.add(
                    _with(
                        self.base(service, "tcp", what, (edge,)),
                        address=address,
                        port=expose.port,
                    )
                )
                if expose.port in IMPLICIT_TLS or expose.port in STARTTLS:
                    named = self.inv.hosts[edge].address or ""
                    name = names[0] if names else ("" if named[:1].isdigit() else named)
                    self.add(
                        _with(
                            self.base(service, "tls", what, (edge,)),
                            address=address,
                            port=expose.port,
                            name=name,
                            starttls=STARTTLS.get(expose.port, ""),
                        )
                    )

    # ------------------------------------------------------------------ monitors

    def monitors(self, service: str) -> None:
        for monitor in self.inv.services[service].monitor or ():
            probe = self.monitor(service, monitor)
            if probe is None:
                continue
            # An entry for what a derived probe watches already replaces it.
            for key, known in list(self.probes.items()):
                same = (known.kind, known.address, known.port, known.name) == (
                    probe.kind,
                    probe.address,
                    probe.port,
                    probe.name,
                )
                if known.service == service and same and known.path == probe.path:
                    del self.probes[key]
            self.add(probe)

    def monitor(self, service: str, monitor: Monitor) -> Probe | None:
        timeout = seconds(monitor.timeout) if monitor.timeout else seconds(self.watch.timeout)
        retries = monitor.retries if monitor.retries is not None else self.watch.retries
        common = {"interval": seconds(monitor.interval), "timeout": timeout, "retries": retries}
        if monitor.http is not None:
            url = urlsplit(monitor.http)
            host = url.hostname or ""
            try:
                port = url.port or (443 if url.scheme == "https" else 80)
            except ValueError:
                self.skipped.append(f"{service}: monitor {monitor.http} (not a URL with a port)")
                return None
            where = target(self.inv, host, port, url.scheme)
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            expect = monitor.expect
            return _with(
                self.base(service, "http", monitor.http, self._through(host)),
                **common,
                address=where.address,
                port=where.port,
                name=host,
                scheme=url.scheme,
                path=path,
                status=expect.status if expect else 0,
                contains=(expect.contains or "") if expect else "",
            )
        text = monitor.tcp or monitor.tls or ""
        host, _, port_text = text.rpartition(":")
        host = host.strip("[]")
        if not port_text.isdigit():
            self.skipped.append(f"{service}: monitor {text} (write host:port)")
            return None
        kind = "tls" if monitor.tls is not None else "tcp"
        where = target(self.inv, host, int(port_text), "https" if kind == "tls" else None)
        return _with(
            self.base(service, kind, text, self._through(host)),
            **common,
            address=where.address,
            port=where.port,
            name=host,
            starttls=STARTTLS.get(int(port_text), "") if kind == "tls" else "",
        )

    def _through(self, name: str) -> tuple[str, ...]:
        return derive.domain_edges(self.inv).get(name, ())[:1]

    # ------------------------------------------------------------------ dns, backups

    def dns(self) -> None:
        users: dict[str, str] = {}
        for name in sorted(self.inv.services):
            for route in self.inv.services[name].routes:
                users.setdefault(route.domain, name)
        for domain, answer in answers(self.inv).items():
            servers = []
            for ns, glue in answer.nameservers:
                given = self.watch.nameservers.get(ns) or self.watch.nameservers.get(ns + ".")
                if given:
                    servers.append(given)
                elif glue:
                    servers += [f"[{a}]:53" if ":" in a else f"{a}:53" for a in glue]
                else:
                    servers.append(f"{ns}:53")
            service = users[domain]
            self.add(
                _with(
                    self.base(service, "dns", domain),
                    name=domain,
                    expect=answer.addresses,
                    nameservers=tuple(servers),
                )
            )

    def backups(self) -> None:
        for service in backups.backed_up(self.inv):
            host = self.inv.services[service].host
            here = self.where is None or host == self.where
            if not here and self.inv.hosts[host].ssh is None:
                self.skipped.append(
                    f"{service}: backup freshness is read from the inventory (`allmende "
                    f"status`), not on the watch host {self.where}: {host} is not reached "
                    "over SSH"
                )
                continue
            if not here and host not in self.remotes:
                self.remotes[host] = remote(self.inv, host)
            job = backup_job(service) if self.where is not None and here else ""
            self.add(_with(self.base(service, "backup", service), job=job))


def remote(inventory: Inventory, host: str) -> Remote:
    """Return how the watch host asks ``host`` (reached over SSH) how fresh its backups are:
    as the inventory reaches it, with the key apply puts on the watch host."""
    model = inventory.hosts[host]
    assert model.ssh is not None
    secret = backups.watch_key_secret(host)
    missing = ""
    if secret not in inventory.secrets:
        missing = (
            f"no key to ask it with yet (the secret {secret}): run `allmende up` or "
            "`allmende backup init`, then apply"
        )
    return Remote(
        host=host,
        address=model.address or "",
        port=model.ssh.port,
        user=model.ssh.user,
        key=watch_key(host),
        known_hosts=WATCH_KNOWN_HOSTS,
        missing=missing,
    )


def _with(probe: Probe, **changes: object) -> Probe:
    """Return ``probe`` with ``changes``."""
    return Probe(**{**probe.__dict__, **changes})


def channels(inventory: Inventory) -> tuple[Channel, ...]:
    """Return the collective's ``notify`` channels."""
    return tuple(backups.channels_of(inventory))


def plan(inventory: Inventory, where: str | None = None) -> Plan:
    """Return everything the watcher probes (see the module docstring), sorted by id: run from
    the inventory (``where`` None) or on the watch host ``where``."""
    planner = _Planner(inventory, where)
    for service in sorted(inventory.services):
        planner.routes(service)
        planner.exposes(service)
    planner.dns()
    planner.backups()
    for service in sorted(inventory.services):
        planner.monitors(service)
    watch = inventory.collective.watch
    acme = inventory.collective.acme
    return Plan(
        collective=inventory.collective.name,
        probes=tuple(sorted(planner.probes.values(), key=lambda p: p.id)),
        channels=channels(inventory),
        metrics=watch.metrics or "",
        recover=watch.recover,
        certificate_days=watch.certificate_days,
        trust=(acme.trust or "") if acme is not None else "",
        keep_full=seconds(watch.keep.full),
        keep_hourly=seconds(watch.keep.hourly),
        skipped=tuple(planner.skipped),
        remotes=tuple(planner.remotes[h] for h in sorted(planner.remotes)),
    )
