"""`allmende.yaml` as typed models: the collective, its people, edge, ACME, backup defaults,
alerts and watcher."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from allmende.inventory import dnsnames
from allmende.inventory.fields import (
    Allow,
    DomainName,
    Duration,
    Extensible,
    Model,
    Port,
    SafeName,
    salvaging,
)

WINDOW_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
WINDOW_MOMENT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T]([01][0-9]|2[0-3]):[0-5][0-9]$"
_DAY = "(Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_DAY_RANGE = rf"{_DAY}(\.\.{_DAY})?"
WINDOW_DAYS = rf"^{_DAY_RANGE}(,{_DAY_RANGE})*$"


def _days(value: str) -> str:
    if not re.match(WINDOW_DAYS, value):
        raise ValueError(
            f"`{value}` is not a list of days: write them as systemd does, `Mon..Fri` or `Sat,Sun`"
        )
    return value


class Window(Model):
    """A maintenance window: probes go on, but no alert is sent while it lasts, and nothing
    that started and ended inside it is alerted at all. Either every week (`start` and `end`
    as `HH:MM`, on `days`), or once (`start` and `end` as `YYYY-MM-DD HH:MM`). Times are the
    local time of the machine the watcher runs on."""

    start: str = Field(description="`05:30` (every week on `days`) or `2026-03-01 20:00` (once).")
    end: str = Field(
        description="`06:25`, or `2026-03-01 23:00`; a weekly window whose end is before its "
        "start ends the next day."
    )
    days: Annotated[str, AfterValidator(_days)] = Field(
        "Mon..Sun",
        description="For a weekly window: the days it starts on, as systemd writes them "
        "(`Mon..Fri`, `Sat,Sun`); default every day.",
    )
    reason: str = Field("", description="Why, for the people who read the alerts later.")

    @model_validator(mode="after")
    def _shape(self) -> Window:
        weekly = [bool(re.match(WINDOW_TIME, v)) for v in (self.start, self.end)]
        once = [bool(re.match(WINDOW_MOMENT, v)) for v in (self.start, self.end)]
        if all(once):
            if "days" in self.model_fields_set:
                raise ValueError("a window given by dates happens once: drop `days`")
            if self.end.replace("T", " ") <= self.start.replace("T", " "):
                raise ValueError("`end` must come after `start`")
            return self
        if not all(weekly):
            raise ValueError(
                "write `start` and `end` both as times (`05:30`) or both as dates with a time "
                "(`2026-03-01 20:00`)"
            )
        return self


class Person(Model):
    """Someone in the collective who can be asked and who maintains services."""

    name: str = Field(description="The person's name as others know it.")
    email: str | None = Field(None, description="Where to reach them.")
    chat: str | None = Field(None, description="A chat handle (Matrix, XMPP, IRC, ...).")


class Edge(Model):
    """The hosts that run the reverse proxy in front of every route."""

    hosts: tuple[str, ...] = Field(description="Host names that run the proxy.", min_length=1)
    proxy: Literal["haproxy"] = Field("haproxy", description="The proxy software.")
    bind: str | None = Field(
        None,
        description="The IP address the proxy listens on, on every edge host; default: all "
        "of the host's addresses (IPv6 as well when the host has `public_ipv6`).",
    )
    http_port: Port = Field(
        80,
        description="The port of plain HTTP: ACME challenges, redirects to HTTPS and routes "
        "with `tls: none`.",
    )
    https_port: Port = Field(
        443,
        description="The port of HTTPS: routes terminated at the edge and `tls: passthrough` "
        "routes share it. Redirects to HTTPS still name the standard port, as when a router "
        "forwards 443 to this one.",
    )
    accept_proxy: tuple[str, ...] = Field(
        (),
        description="The addresses (or networks, `192.0.2.0/24`) of load balancers or routers "
        "in front of the edge that send the PROXY protocol (HAProxy's `send-proxy`): a "
        "connection from one of them must start with that header, and the edge takes the "
        "client's address from it; connections from anywhere else (allmende's own checks, "
        "the watcher) are read as they come.",
    )

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value))
        except ValueError as exc:
            raise ValueError("not an IP address") from exc

    @field_validator("accept_proxy")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return tuple(str(ipaddress.ip_network(v, strict=False)) for v in value)
        except ValueError as exc:
            raise ValueError(f"not an IP address or network: {exc}") from None

    @model_validator(mode="after")
    def _two_ports(self) -> Edge:
        if self.http_port == self.https_port:
            raise ValueError("`http_port` and `https_port` must differ")
        return self


Challenge = Literal["http-01", "dns-01"]


def _wildcard(value: Any) -> Any:
    """Accept a wildcard name, ``*.`` and a domain below it, in the domain's DNS form."""
    if not isinstance(value, str) or not value.startswith("*."):
        raise ValueError("a wildcard is written `*.` and a domain, such as `*.lab.example.org`")
    try:
        return "*." + dnsnames.domain(value[2:], underscore=False)
    except dnsnames.BadName as exc:
        raise ValueError(str(exc)) from None


class Acme(Model):
    """How certificates for routes are obtained: every route with `tls: terminate` gets one
    from this ACME directory, renewed by a timer on each edge host, by `allmende up` and by
    `allmende certs renew`. Without an `acme:` section the edge keeps self-signed stand-ins."""

    email: str | None = Field(None, description="Account email for the ACME server.")
    directory: str = Field(
        "https://acme-v02.api.letsencrypt.org/directory",
        description="The ACME directory URL; Let's Encrypt's staging directory for trying "
        "is `https://acme-staging-v02.api.letsencrypt.org/directory`.",
    )
    challenge: Challenge = Field(
        "http-01",
        description="How the CA checks a name: `http-01` through the edge's HTTP port "
        "(`/.well-known/acme-challenge/`), or `dns-01` through a TXT record written with an "
        "RFC 2136 update (the zone's `update:`).",
    )
    challenges: dict[DomainName, Challenge] = Field(
        default_factory=dict,
        description="A challenge per name where it differs from `challenge`: `dns-01` for a "
        "name the CA cannot reach on the edge's HTTP port.",
    )
    wildcards: tuple[Annotated[str, BeforeValidator(_wildcard)], ...] = Field(
        (),
        description="Wildcard certificates such as `*.lab.example.org`, always over `dns-01`: "
        "every terminated route one label below is served by it instead of a certificate "
        "of its own.",
    )
    renew_before_days: int = Field(30, ge=1, le=89, description="Renew this many days early.")
    responder_port: Port = Field(
        8402,
        description="The port on each edge host's loopback where allmende answers http-01 "
        "challenges while it renews; the edge's HTTP port sends "
        "`/.well-known/acme-challenge/` there.",
    )
    trust: str | None = Field(
        None,
        description="PEM certificates of the CA that signs the directory's HTTPS, for a "
        "private ACME server (step-ca, Pebble); default: the system's trusted CAs. The "
        "watcher trusts them too when it checks the certificates the edges serve.",
    )

    @field_validator("directory")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("an ACME directory is an https:// URL")
        return value

    @field_validator("trust")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("give the CA's certificates in PEM form (-----BEGIN CERTIFICATE-----)")
        return value


Schedule = Annotated[
    str,
    Field(
        description="`hourly`, `daily`, `weekly`, `monthly`, or a systemd OnCalendar expression "
        "such as `*-*-* 00,03,06,09,12,15,18,21:00:00`.",
        min_length=1,
    ),
]


class Keep(Model):
    """How many archives to keep per period (Borg prune)."""

    hourly: int | None = Field(None, ge=0, description="Hourly archives to keep.")
    daily: int | None = Field(None, ge=0, description="Daily archives to keep.")
    weekly: int | None = Field(None, ge=0, description="Weekly archives to keep.")
    monthly: int | None = Field(None, ge=0, description="Monthly archives to keep.")
    yearly: int | None = Field(None, ge=0, description="Yearly archives to keep.")


Consistency = Literal["dump", "stop", "snapshot", "none"]


class BackupDefaults(Model):
    """Backup settings for every service; each service may override each key. With a
    `repository` here, every service that holds data (volumes or a database it provides) is
    backed up without saying anything itself."""

    repository: str | None = Field(
        None,
        description="Borg repository: a path on the service's host or `ssh://user@host/path`; "
        "`{service}` is replaced by the service's name.",
    )
    encryption: str | None = Field(
        None, description="Borg encryption mode; default `repokey-blake2`."
    )
    append_only: bool | None = Field(
        None,
        description="The repository refuses deletions: `borg init --append-only`, and the "
        "`authorized_keys` line of an ssh:// repository adds `--append-only` to `borg serve`.",
    )
    schedule: Schedule | None = Field(None, description="When backups run; default `daily`.")
    keep: Keep | None = Field(
        None, description="How many archives to keep; default 7 daily, 4 weekly, 6 monthly."
    )
    consistency: Consistency | None = Field(
        None,
        description="How data is made consistent: `dump` databases, `stop` the service, "
        "take a filesystem `snapshot`, or `none` (no backup). Default: `dump` for a service "
        "that provides a database, `stop` for any other with volumes.",
    )


class Notify(Model):
    """Where alerts go: exactly one of `email` or `webhook`."""

    email: str | None = Field(None, description="An address that receives alerts.")
    webhook: str | None = Field(None, description="A URL that receives alerts as a POST.")
    smtp: str | None = Field(
        None,
        description="For `email`: the mail server alerts are handed to, `host:port` (465: TLS, "
        "587: STARTTLS); default `localhost:25`, the host's own mail transfer agent.",
    )

    @model_validator(mode="after")
    def _one(self, info: ValidationInfo) -> Notify:
        if salvaging(info):
            return self
        if (self.email is None) == (self.webhook is None):
            raise ValueError("give exactly one of `email` or `webhook`")
        return self


class Intervals(Model):
    """How often each kind of probe runs."""

    http: Duration = Field("60s", description="Routes and `http` monitors.")
    tcp: Duration = Field("60s", description="Exposed ports and `tcp` monitors.")
    tls: Duration = Field("1h", description="Certificates: days left and the chain.")
    dns: Duration = Field("5m", description="Route names at the zone's nameservers.")
    backup: Duration = Field(
        "30m", description="Backup freshness, read from each repository (`borg list`)."
    )


class Retention(Model):
    """How long probe results are kept in the state database."""

    full: Duration = Field("2d", description="Every result, as it was.")
    hourly: Duration = Field(
        "90d", description="Older results, one row per probe and hour (count, failures, latency)."
    )


class Watch(Model):
    """`allmende watch`: what every route, exposed port, certificate, DNS name and backup of
    the inventory is probed with, and where the watcher runs."""

    host: str | None = Field(
        None,
        description="The host that runs the watcher: `render` writes its systemd unit there "
        "(`allmende-watch.service`) and `up` starts it. Unset: no unit; `allmende watch DIR` "
        "runs it wherever you start it.",
    )
    metrics: str | None = Field(
        None,
        description="`address:port` of a Prometheus `/metrics` endpoint (`127.0.0.1:9464`); "
        "unset: none.",
    )
    intervals: Intervals = Field(default_factory=Intervals, description="How often, by kind.")
    timeout: Duration = Field("10s", description="How long one probe may take.")
    retries: int = Field(
        2,
        ge=0,
        le=10,
        description="A failed probe is tried this many more times, a tenth of its interval "
        "apart, before its check counts as down (or degraded).",
    )
    recover: int = Field(
        2,
        ge=1,
        le=10,
        description="Passes in a row before a check that was down counts as recovered: a "
        "check that flaps sends one alert and one recovery, not one of each per flap.",
    )
    certificate_days: int = Field(
        14, ge=1, le=365, description="A certificate this close to expiry is alerted."
    )
    keep: Retention = Field(default_factory=Retention, description="How long results are kept.")
    maintenance: tuple[Window, ...] = Field(
        (), description="Maintenance windows of every host and service."
    )
    nameservers: dict[str, str] = Field(
        default_factory=dict,
        description="Where to ask a zone's nameserver when not at its own address on port 53: "
        "name -> `address` or `address:port` (a hidden primary inside the network).",
    )


class Collective(Extensible):
    """`allmende.yaml`: the collective itself."""

    name: str = Field(description="The collective's short name.")
    description: str = Field("", description="One line on who you are.")
    contact: str | None = Field(None, description="How to reach the people who run the servers.")
    domains: tuple[DomainName, ...] = Field(
        (),
        description="DNS zones the collective manages. Each is rendered as a BIND zone file "
        "(`dns/<domain>.zone`) with the records of `zones/<domain>.yaml` and derived ones: "
        "every route domain gets A/AAAA records of the public addresses of the edge hosts that "
        "serve it, and every host with a public address gets A/AAAA records at its `address` "
        "when that is a name inside a managed domain, else at `<host>.<first domain listed "
        "here>`. A record in the zone file wins over a derived one of the same name and type. "
        "A domain without `nameservers`, or whose nameserver inside it has no address, gets no "
        "zone file (render warns).",
    )
    edge: Edge | None = Field(None, description="The hosts that run the reverse proxy.")
    acme: Acme | None = Field(None, description="How route certificates are obtained.")
    backup: BackupDefaults | None = Field(None, description="Backup defaults for every service.")
    notify: tuple[Notify, ...] = Field((), description="Where alerts go.")
    watch: Watch = Field(
        default_factory=Watch, description="How `allmende watch` probes, and where it runs."
    )
    people: dict[SafeName, Person] = Field(default_factory=dict, description="Name -> person.")
    allow: tuple[Allow, ...] = Field(
        (), description="Findings in allmende.yaml accepted on purpose."
    )
