"""The inventory as frozen, typed models: the one description of what an inventory can say.

The JSON Schema (``allmende schema``) and the reference documentation are generated from these
classes; field descriptions are the text users read, so write them for users.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from allmende.inventory import dnsnames
from allmende.inventory.safenames import unsafe_character, why_unsafe

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
DURATION_PATTERN = r"^[0-9]+(ms|s|m|h|d|w)$"
SIZE_PATTERN = r"^[0-9]+(\.[0-9]+)?\s*(B|[KMGTP]i?B)$"

Duration = Annotated[
    str,
    StringConstraints(pattern=DURATION_PATTERN),
    Field(description="A duration: a number and a unit, ms, s, m, h, d or w (e.g. `30s`, `5m`)."),
]
Size = Annotated[
    str,
    StringConstraints(pattern=SIZE_PATTERN),
    Field(description="A size such as `16GiB` or `512GB`."),
]


def _whole_number(value: Any) -> Any:
    """Accept a port written as a decimal whole number only: not `true`, `1e3`, `"80"` or
    `0o17` (the YAML reader keeps the octal and hex forms apart)."""
    if type(value) is int:
        return value
    written = f"`{value}`" if isinstance(value, int | float) else "that"
    if isinstance(value, bool):
        written = f"`{str(value).lower()}`"
    elif isinstance(value, str):
        written = f'the text "{value}"' if value.isprintable() and len(value) < 40 else "text"
    raise ValueError(f"{written} is not a port: write a whole number from 1 to 65535")


Port = Annotated[
    int, BeforeValidator(_whole_number, json_schema_input_type=int), Field(ge=1, le=65535)
]


def _safe_name(value: str) -> str:
    why = why_unsafe(value)
    if why is not None:
        raise ValueError(why)
    return value


#: A name that becomes part of a path, a project name or a command argument (see
#: ``inventory.safenames``); its house style is the check ``names.format``.
SafeName = Annotated[str, AfterValidator(_safe_name)]


def _dns(check: Callable[[str], str]) -> Callable[[Any], Any]:
    """Return a validator that runs one of ``dnsnames``' checks on a value (None passes)."""

    def validate(value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except dnsnames.BadName as exc:
            raise ValueError(str(exc)) from None

    return validate


_domain = _dns(dnsnames.domain)


def _host_address(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return dnsnames.host_address(value)
    except dnsnames.BadName as exc:
        raise ValueError(str(exc)) from None


#: A DNS name: ASCII (IDNA for other letters), lowercase, without the final dot.
DomainName = Annotated[str, AfterValidator(_domain)]

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(duration: str) -> float:
    """Given a duration such as ``5m``, return it in seconds (300.0)."""
    match = re.match(DURATION_PATTERN, duration)
    if not match:
        raise ValueError(f"not a duration: {duration!r}")
    unit = match.group(1)
    return float(duration[: -len(unit)]) * _DURATION_UNITS[unit]


def _text(value: Any) -> Any:
    """Accept numbers and booleans where text is expected, written the way YAML shows them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


EnvValue = Annotated[str, BeforeValidator(_text, json_schema_input_type=str | int | float | bool)]


def _command(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split the command into words: {exc}") from exc
    return value


#: The validation context under which the loader salvages a file that has problems: the
#: rules between keys ("exactly one of") are left out, so that the rest of the file can still be
#: checked; such a model never leaves the loader.
SALVAGE = {"salvage": True}


def salvaging(info: ValidationInfo) -> bool:
    """Whether the model is validated to salvage a file already known to have problems."""
    return bool(info.context and info.context.get("salvage"))


def missing_key(key: str, hint: str) -> PydanticCustomError:
    """Return the error of a required key that a rule between keys found missing (the loader
    reports it as it reports any missing key, at the mapping that lacks it)."""
    return PydanticCustomError(
        "missing_key", "required key `{key}` is missing", {"key": key, "hint": hint}
    )


class Model(BaseModel):
    """Base of every inventory model: frozen, no unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Extensible(Model):
    """A model that also keeps ``x-`` extension keys verbatim (as Compose does)."""

    extensions: dict[str, Any] = Field(
        default_factory=dict,
        exclude=True,
        description="Keys starting with `x-`, kept verbatim for tools and importers.",
    )

    @model_validator(mode="before")
    @classmethod
    def _collect_extensions(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(str(k).startswith("x-") for k in data):
            data = dict(data)
            data["extensions"] = {k: data.pop(k) for k in list(data) if str(k).startswith("x-")}
        return data


class Allow(Model):
    """A finding accepted on purpose, written in the file the finding is located in."""

    rule: str = Field(description="The rule id, e.g. `volumes.under_srv`.")
    reason: str = Field(min_length=1, description="Why this is fine here.")


# --------------------------------------------------------------------------- allmende.yaml


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

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value))
        except ValueError as exc:
            raise ValueError("not an IP address") from exc

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


# --------------------------------------------------------------------------- Incus

SNAPSHOT_SCHEDULE_PATTERN = r"^(hourly|daily|weekly|monthly|(\S+\s+){4}\S+)$"


class SystemContainer(Model):
    """An Incus system container: a whole distribution with its own init."""

    image: str = Field(description="An Incus image alias such as `debian/12`.")
    packages: tuple[str, ...] = Field((), description="Installed with the package manager.")
    setup: tuple[str, ...] = Field((), description="Commands run once, in order.")
    services: tuple[str, ...] = Field((), description="Init services to enable and start.")


class Snapshots(Model):
    """Snapshots Incus takes of an instance by itself, on a schedule, and how long it keeps
    them. Snapshots allmende takes before an apply that changes an instance expire alike."""

    schedule: Annotated[str, StringConstraints(pattern=SNAPSHOT_SCHEDULE_PATTERN)] | None = Field(
        None,
        description="`hourly`, `daily`, `weekly`, `monthly`, or a cron expression of five "
        "fields such as `0 3 * * *` (03:00 every day); unset: no scheduled snapshots.",
    )
    expiry: Duration | None = Field(
        None,
        description="How long a snapshot is kept (`7d`, `4w`; minutes at least); unset: until "
        "it is deleted by hand.",
    )


class IncusHost(Model):
    """How allmende sets Incus up on a host with `engine: incus` (its preseed): the storage
    pool, the bridge and the profile every instance of the host gets."""

    pool: Annotated[str, StringConstraints(pattern=NAME_PATTERN)] = Field(
        "default", description="The storage pool the instances' root disks are on."
    )
    driver: Literal["dir", "btrfs", "zfs", "lvm"] = Field(
        "dir", description="The storage pool's driver, when allmende creates it."
    )
    network: Annotated[str, StringConstraints(pattern=NAME_PATTERN)] = Field(
        "incusbr0",
        description="The managed bridge the instances are on; they reach each other by name "
        "there as `<instance>.incus`.",
    )
    subnet: str | None = Field(
        None,
        description="The bridge's IPv4 address and prefix (`10.71.0.1/24`), with NAT to the "
        "outside and no IPv6; unset: allmende leaves the network as it is (it must exist).",
    )
    profile: Annotated[str, StringConstraints(pattern=NAME_PATTERN)] = Field(
        "allmende",
        description="The profile allmende keeps (root disk on `pool`, `eth0` on `network`); "
        "every instance allmende makes has it and no other.",
    )
    snapshots: Snapshots | None = Field(
        None, description="Snapshots of every instance on the host; a service may override."
    )

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            interface = ipaddress.ip_interface(value)
        except ValueError as exc:
            raise ValueError("not an address with a prefix, such as 10.71.0.1/24") from exc
        if interface.version != 4 or "/" not in value:
            raise ValueError("not an IPv4 address with a prefix, such as 10.71.0.1/24")
        if interface.ip in (interface.network.network_address, interface.network.broadcast_address):
            raise ValueError("the bridge needs a host address of the subnet, such as 10.71.0.1/24")
        return str(interface)


class Limits(Model):
    """The most one component may use."""

    cpus: float | None = Field(None, gt=0, description="CPU cores (`0.5`, `2`).")
    memory: Size | None = Field(None, description="Memory, e.g. `512MiB`.")


# --------------------------------------------------------------------------- hosts


class Ssh(Model):
    """How allmende logs in to a host."""

    user: str = Field("root", description="The login name.")
    port: Port = Field(22, description="The SSH port.")


class Resources(Model):
    """What the machine has, for the docs."""

    cpus: float | None = Field(None, gt=0, description="Number of CPU cores.")
    memory: Size | None = Field(None, description="Memory, e.g. `16GiB`.")
    disk: Size | None = Field(None, description="Disk space, e.g. `512GB`.")


def _ip(version: int) -> Any:
    def check(value: Any) -> Any:
        if value is None:
            return None
        kind = f"an IPv{version}" if version else "an IP"
        try:
            address = ipaddress.ip_address(str(value))
        except ValueError as exc:
            raise ValueError(f"not {kind} address") from exc
        if version and address.version != version:
            raise ValueError(f"not {kind} address")
        return str(address)

    return check


#: The engines the format knows. A package can add another through the entry point group
#: ``allmende.engines`` (the entry point's name is the engine's name).
ENGINES = ("compose", "swarm", "kubernetes", "incus", "systemd")


def _known_engine(value: str) -> str:
    """Accept an engine the format knows or an installed package adds; refuse anything else
    the way a fixed choice is refused."""
    if value in ENGINES or value in {p.name for p in entry_points(group="allmende.engines")}:
        return value
    expected = ", ".join(f"'{e}'" for e in ENGINES[:-1]) + f" or '{ENGINES[-1]}'"
    raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})


class Host(Extensible):
    """`hosts/<host>.yaml`: one machine; the file name is its name."""

    description: str = Field("", description="What the machine is, in a line.")
    kind: Literal["physical", "vps", "vm", "container"] = Field(
        "physical", description="What the machine is."
    )
    parent: str | None = Field(
        None, description="Required for vm and container: the host it runs on."
    )
    address: Annotated[str | None, AfterValidator(_host_address)] = Field(
        None, description="How allmende reaches it: an IP address or a host name."
    )
    bind: Annotated[str | None, BeforeValidator(_ip(0))] = Field(
        None,
        description="The IP address its published ports listen on. Default: `address` when "
        "that is an IP, 127.0.0.1 when the host has none (the machine allmende runs on); a "
        "host reached by name publishes on 127.0.0.1 only until it says which (`0.0.0.0` or "
        "`::` is every interface).",
    )
    public_ipv4: Annotated[str | None, BeforeValidator(_ip(4))] = Field(
        None, description="Where DNS records of its routes point."
    )
    public_ipv6: Annotated[str | None, BeforeValidator(_ip(6))] = Field(
        None, description="Where AAAA records of its routes point."
    )
    ssh: Ssh | None = Field(None, description="Omit for the machine allmende runs on.")
    engine: Annotated[
        str,
        AfterValidator(_known_engine),
        WithJsonSchema({"enum": list(ENGINES), "type": "string"}),
    ] = Field(
        "compose",
        description="What runs the services on this host. Packages may add engines through "
        "the entry point group `allmende.engines`.",
    )
    runtime: Literal["docker", "podman"] = Field(
        "docker",
        description="What runs the containers there, and so how apply drives the engine: "
        "`docker` (`docker compose`, or `docker-compose` where the plugin is missing; "
        "`kubectl apply`; `docker stack deploy`) or `podman` (`podman-compose`; "
        "`podman kube play`).",
    )
    provider: str | None = Field(None, description="Who hosts it (free text, for the docs).")
    location: str | None = Field(None, description="Where it stands (free text, for the docs).")
    resources: Resources | None = Field(None, description="What the machine has.")
    storage_class: str | None = Field(
        None, description="Kubernetes hosts: the storage class of volumes."
    )
    incus: IncusHost | None = Field(
        None, description="Incus hosts: the storage pool, bridge and profile allmende keeps."
    )
    maintenance: tuple[Window, ...] = Field(
        (), description="Maintenance windows: no alerts about the host's services meanwhile."
    )
    system: SystemContainer | None = Field(
        None,
        description="A container on an Incus host (`kind: container`, `parent` with `engine: "
        "incus`): the instance allmende makes for it there. The edge's ports (and exposed "
        "ones) on the parent's address are passed to it.",
    )
    allow: tuple[Allow, ...] = Field(
        (), description="Findings in this host's file accepted on purpose."
    )


# --------------------------------------------------------------------------- services


class Volume(Model):
    """A volume: the path inside, and the host side (default `/srv/<service>/<name>`)."""

    path: str = Field(description="The path inside the container.")
    host: str | None = Field(None, description="The host path; default /srv/<service>/<volume>.")

    @field_validator("path", "host")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must be an absolute path (start with /)")
        return value


def _volume(value: Any) -> Any:
    return {"path": value} if isinstance(value, str) else value


class CarriedFile(Model):
    """A configuration file or directory the inventory carries under `files/<service>/` and
    hands to a component at a path inside it."""

    source: str = Field(
        description="The file or directory under `files/<service>/` (a relative path)."
    )
    read_only: bool = Field(False, description="Mounted read-only.")

    @field_validator("source")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = value.split("/")
        if value.startswith("/") or ".." in parts or not value.strip("/."):
            raise ValueError("must be a path under files/<service>/, without `..`")
        return value


def _carried(value: Any) -> Any:
    return {"source": value} if isinstance(value, str) else value


def _secret_use(value: Any) -> Any:
    return {"secret": value} if isinstance(value, str) else value


def _octal(value: Any) -> Any:
    """Read a file mode written as octal digits: ``0440`` (an integer 440 in YAML 1.2) or the
    string ``"0440"``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return value
    digits = str(value)
    if not re.fullmatch(r"0?[0-7]{3}", digits):
        raise ValueError("write a file mode as octal digits, such as 0400 or 0440")
    return int(digits, 8)


class SecretUse(Model):
    """How one secret reaches a component's program. Written as the secret's name alone, it is
    delivered `as: file`."""

    secret: str = Field(description="The secret's name (`<service>/<name>`).")
    as_: Literal["file", "env", "path"] = Field(
        "file",
        alias="as",
        description="`file`: a file (at `path`, default `/run/secrets/<flat name>`) named to "
        "the program by the variable `<ENV>_FILE`, the convention of the official images; "
        "`env`: the variable itself holds the value, from a 0600 env file beside the project "
        "(for images that read only plain variables); `path`: a file at `path` and no "
        "variable (for programs that read a fixed path).",
    )
    path: str | None = Field(
        None, description="Where the file is inside the container (required for `as: path`)."
    )
    uid: int | None = Field(
        None, ge=0, description="Owner of the file, for images that run as a non-root user."
    )
    gid: int | None = Field(None, ge=0, description="Group of the file.")
    mode: Annotated[int | None, BeforeValidator(_octal, json_schema_input_type=int | str)] = Field(
        None,
        description="Permission bits of the file, octal (default 0600); never readable by others.",
    )

    @model_validator(mode="after")
    def _coherent(self) -> SecretUse:
        if self.as_ == "path" and self.path is None:
            raise ValueError("`as: path` needs `path:` (where the program reads the file)")
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError("`path` must be absolute inside the container")
        if self.as_ == "env" and (self.path, self.uid, self.gid, self.mode) != (None,) * 4:
            raise ValueError("`as: env` delivers no file: drop `path`, `uid`, `gid` and `mode`")
        if self.mode is not None and self.mode & 0o007:
            raise ValueError("a secret's file is never readable by others: use 0400, 0440, 0600")
        return self


class Published(Model):
    """A port published on the host: the port number there, and the address it listens on."""

    port: Port = Field(description="The port on the host.")
    bind: Annotated[str | None, BeforeValidator(_ip(0))] = Field(
        None,
        description="The IP address this port listens on; default: the host's `bind` (see "
        "there). `127.0.0.1` keeps it to the host itself (the edge reaches it only when it runs "
        "there), `0.0.0.0` or `::` is every interface.",
    )


def _published(value: Any) -> Any:
    """Read a published port written as its number alone (the port's own checks then say
    what is wrong with anything else that is no mapping)."""
    return value if isinstance(value, dict | Published) else {"port": value}


def _dependencies(value: Any) -> Any:
    """Read ``depends_on`` written as a list of names (each waited for as the default says)."""
    if isinstance(value, list | tuple):
        return {name: None for name in value} if all(isinstance(n, str) for n in value) else value
    return value


Condition = Literal["started", "healthy", "completed"]


class Healthcheck(Model):
    """How to tell the component is healthy: one of `http`, `tcp` or `command`."""

    http: str | None = Field(None, description="A path fetched over HTTP, e.g. /healthz.")
    tcp: str | None = Field(None, description="A port name that must accept connections.")
    command: Annotated[
        tuple[str, ...] | None,
        BeforeValidator(_command, json_schema_input_type=str | list[str] | None),
    ] = None
    port: str | None = Field(None, description="The port name for `http` (default: the only one).")
    interval: Duration = Field("30s", description="Time between checks.")
    timeout: Duration = Field("5s", description="How long one check may take.")
    retries: int = Field(3, ge=1, description="Failures in a row before it is unhealthy.")
    start_period: Duration = Field(
        "60s",
        description="Failures this soon after a start do not count: a slow start is not an "
        "unhealthy one (the first success counts at once).",
    )

    @model_validator(mode="after")
    def _one(self, info: ValidationInfo) -> Healthcheck:
        if salvaging(info):
            return self
        given = [k for k in ("http", "tcp", "command") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `http`, `tcp` or `command`")
        return self


class Component(Extensible):
    """One container of a service: an application image or (on Incus) a system container."""

    image: str | None = Field(None, description="A pinned image tag or digest.")
    system: SystemContainer | None = Field(
        None, description="On Incus hosts: a system container instead of an image."
    )
    command: Annotated[
        tuple[str, ...] | None,
        BeforeValidator(_command, json_schema_input_type=str | list[str] | None),
    ] = None
    env: dict[str, EnvValue] = Field(
        default_factory=dict, description="Environment variables (no secrets: see `secrets`)."
    )
    secrets: dict[
        str,
        Annotated[SecretUse, BeforeValidator(_secret_use, json_schema_input_type=str | SecretUse)],
    ] = Field(
        default_factory=dict,
        description="Environment variable -> secret name, or {secret, as, path, uid, gid, mode}.",
    )
    restart: Literal["no", "always", "on-failure", "unless-stopped"] = Field(
        "unless-stopped", description="When the engine restarts it after it stops."
    )
    ports: dict[SafeName, Port] = Field(default_factory=dict, description="Name -> port inside.")
    publish: dict[
        SafeName,
        Annotated[Published, BeforeValidator(_published, json_schema_input_type=int | Published)],
    ] = Field(
        default_factory=dict,
        description="Port name -> port on the host's address, or {port, bind} to say the "
        "address it listens on.",
    )
    volumes: dict[
        SafeName, Annotated[Volume, BeforeValidator(_volume, json_schema_input_type=str | Volume)]
    ] = Field(default_factory=dict, description="Name -> path inside, or {path, host}.")
    files: dict[
        str,
        Annotated[CarriedFile, BeforeValidator(_carried, json_schema_input_type=str | CarriedFile)],
    ] = Field(
        default_factory=dict,
        description="Path inside -> a file or directory under `files/<service>/` (or "
        "{source, read_only}): configuration carried by the inventory; each engine hands it "
        "over its own way (compose: a file under /srv/<service>/files/).",
    )
    healthcheck: Healthcheck | None = Field(None, description="How to tell it is healthy.")
    depends_on: Annotated[
        dict[str, Condition | None],
        BeforeValidator(_dependencies, json_schema_input_type=list[str] | dict[str, Condition]),
    ] = Field(
        default_factory=dict,
        description="Components started first: a list of names (each waited for until healthy "
        "when it has a health check, else until started), or name -> `started`, `healthy` or "
        "`completed` (ran to its end successfully) to say what is waited for.",
    )
    replicas: int = Field(1, ge=0, description="How many copies run.")
    resources: Limits | None = Field(
        None, description="Incus hosts: the instance's `limits.cpu` and `limits.memory`."
    )

    @model_validator(mode="after")
    def _image_or_system(self, info: ValidationInfo) -> Component:
        if salvaging(info):
            return self
        if self.image is None and self.system is None:
            raise missing_key(
                "image",
                "add `image: <name>:<tag>`, or `system:` for a system container on an Incus host",
            )
        if self.image is not None and self.system is not None:
            raise ValueError("give only one of `image` or `system`")
        relative = [path for path in self.files if not path.startswith("/")]
        if relative:
            raise ValueError(f"`files`: {relative[0]} must be an absolute path inside")
        return self


class Provides(Model):
    """A database this service offers to others."""

    database: Literal["postgres", "mariadb", "mysql", "redis", "sqlite"] = Field(
        description="The database engine."
    )
    component: str | None = Field(None, description="Default: the only component.")
    port: str | None = Field(None, description="Port name; default: the component's only port.")
    databases: tuple[SafeName, ...] | None = Field(
        None, description="The databases offered; when given, `uses` must name one of them."
    )


class Use(Model):
    """Something of another service this one needs."""

    database: str = Field(description="`<service>/<database name>`.")
    user: str | None = Field(
        None,
        description="The role it logs in as, provisioned on apply; default: the database name.",
    )
    password: str | None = Field(
        None,
        description="The secret holding that role's password; default: `<service>/db-password` "
        "(the using service's). A secret whose value is a URL with a password "
        "(`postgres://music:s3cret@database/music`) gives that password.",
    )
    provision: bool = Field(
        True,
        description="Whether apply creates the role and the database; `false` for a tool that "
        "logs in as someone else (a database admin interface).",
    )


class Route(Model):
    """An HTTP(S) or SNI route through the edge."""

    domain: DomainName = Field(description="The domain name the route answers.")
    path: str = Field("/", description="Path prefix.")
    to: str = Field(description="`<component>.<port name>`.")
    tls: Literal["terminate", "passthrough", "none"] = Field(
        "terminate",
        description="`terminate` at the edge, `passthrough` by SNI to a backend holding its own "
        "certificate, or `none`.",
    )
    redirect_https: bool | None = Field(None, description="Default: true when tls is terminate.")
    cache: Duration | None = Field(None, description="Cache responses at the edge this long.")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        if unsafe_character(value) is not None:
            raise ValueError(f"{unsafe_character(value)!r} has no place in a path")
        return value


class Expose(Model):
    """A raw TCP/UDP port through the edge."""

    port: Port = Field(description="The port on the edge host.")
    protocol: Literal["tcp", "udp"] = Field("tcp", description="`tcp` or `udp`.")
    to: str = Field(description="`<component>.<port name>`.")


class ServiceBackup(Model):
    """How this service is backed up; unset keys come from the collective's defaults."""

    consistency: Consistency | None = Field(
        None, description="`dump` databases, `stop` the service, `snapshot`, or `none`."
    )
    schedule: Schedule | None = None
    keep: Keep | None = Field(None, description="How many archives to keep.")
    repository: str | None = Field(None, description="Borg repository.")
    encryption: str | None = Field(None, description="Borg encryption mode.")
    append_only: bool | None = Field(None, description="The repository refuses deletions.")
    exclude: tuple[str, ...] = Field((), description="Host paths left out of the backup.")


class Expect(Model):
    """What a healthy HTTP answer looks like."""

    status: int = Field(200, ge=100, le=599, description="The expected HTTP status.")
    contains: str | None = Field(None, description="Text the answer must contain.")


class Monitor(Model):
    """One probe: exactly one of `http`, `tcp` or `tls`."""

    http: str | None = Field(None, description="A URL to fetch.")
    tcp: str | None = Field(None, description="`host:port` that must accept connections.")
    tls: str | None = Field(None, description="`host:port` whose certificate expiry is watched.")
    expect: Expect | None = Field(None, description="For `http`: what a good answer is.")
    interval: Duration = Field("60s", description="Time between probes.")
    timeout: Duration | None = Field(
        None, description="How long one probe may take; default `watch.timeout`."
    )
    retries: int | None = Field(
        None, ge=0, le=10, description="Tries after a failure; default `watch.retries`."
    )

    @model_validator(mode="after")
    def _one(self, info: ValidationInfo) -> Monitor:
        if salvaging(info):
            return self
        given = [k for k in ("http", "tcp", "tls") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `http`, `tcp` or `tls`")
        return self


class Service(Extensible):
    """`services/<service>.yaml`: one service, named by what it offers."""

    description: str = Field(description="What it offers to people.")
    maintainers: tuple[str, ...] = Field((), description="Names from `people`.")
    host: str = Field(description="The host it runs on.")
    components: dict[SafeName, Component] = Field(
        min_length=1, description="The containers that make up the service, by name."
    )
    provides: Provides | None = Field(None, description="A database other services may use.")
    uses: tuple[Use, ...] = Field((), description="Databases of other services it needs.")
    routes: tuple[Route, ...] = Field((), description="HTTP(S) and SNI routes through the edge.")
    expose: tuple[Expose, ...] = Field((), description="Raw TCP/UDP ports through the edge.")
    backup: ServiceBackup | None = Field(None, description="How it is backed up.")
    snapshots: Snapshots | None = Field(
        None, description="Incus hosts: snapshots of its instances (default: the host's)."
    )
    monitor: tuple[Monitor, ...] | None = Field(
        None, description="Derived for every route when omitted."
    )
    update: Literal["start-first", "stop-first"] | None = Field(
        None,
        description="How a change replaces it: `start-first` runs the new version beside the "
        "old until the edge sends to it (no downtime; it must be able to run twice), "
        "`stop-first` stops the old one first (the edge shows a maintenance page meanwhile). "
        "Default: stop-first when it holds data (volumes or a database), else start-first.",
    )
    maintenance: tuple[Window, ...] = Field(
        (), description="Maintenance windows: no alerts about this service meanwhile."
    )
    docs: str = Field("", description="Free text for the runbook page.")
    allow: tuple[Allow, ...] = Field(
        (), description="Findings in this service's file accepted on purpose."
    )


# --------------------------------------------------------------------------- zones

RecordType = Literal[
    "A", "AAAA", "CAA", "CNAME", "DS", "MX", "NS", "PTR", "SRV", "SSHFP", "TLSA", "TXT"
]


class Record(Model):
    """One DNS record."""

    name: Annotated[str, AfterValidator(_dns(dnsnames.owner))] = Field(
        description="`@` for the zone apex, or a relative name."
    )
    type: RecordType = Field(description="The record type.")
    value: EnvValue = Field(description="The record data as in a zone file.")
    ttl: int | None = Field(None, ge=0, description="Default: the zone's ttl.")

    @model_validator(mode="after")
    def _data(self) -> Record:
        try:
            value = dnsnames.record_value(self.type, self.value)
        except dnsnames.BadName as exc:
            raise ValueError(f"value: {exc}") from None
        return self if value == self.value else self.model_copy(update={"value": value})


TsigAlgorithm = Literal["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1"]


def _server(value: Any) -> Any:
    """Accept ``address`` or ``address:port`` (``[v6]:port``) of a DNS server."""
    if not isinstance(value, str):
        return value
    host, port = value, ""
    if value.startswith("["):
        host, _, port = value[1:].partition("]")
        port = port.removeprefix(":")
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ValueError(f"`{port}` is not a port")
    try:
        address = dnsnames.host_address(host)
    except dnsnames.BadName as exc:
        raise ValueError(str(exc)) from None
    shown = f"[{address}]" if ":" in address else address
    return f"{shown}:{port}" if port else address


DnsServer = Annotated[str, BeforeValidator(_server)]


class Update(Model):
    """RFC 2136 dynamic updates of a zone, signed with a TSIG key. The key's secret (base64,
    as `tsig-keygen` or `keymgr -t` print it) is the secret `dns/<zone>/tsig`."""

    server: DnsServer = Field(
        description="The primary nameserver that takes updates: an address or host name, "
        "with `:port` when it is not 53."
    )
    key: str = Field(description="The TSIG key's name, as the server knows it.", min_length=1)
    algorithm: TsigAlgorithm = Field("hmac-sha256", description="The TSIG algorithm.")
    check: tuple[DnsServer, ...] = Field(
        (),
        description="Where a new record must be answered before the CA is asked to look "
        "(`address` or `address:port`); default: the zone's `nameservers` on port 53, else "
        "`server`.",
    )


class Zone(Extensible):
    """`zones/<domain>.yaml`: records beyond those derived from routes and hosts."""

    provider: Annotated[str, StringConstraints(pattern=r"^(zonefile|rfc2136|octodns:[\w.]+)$")] = (
        Field("zonefile", description="`zonefile`, `rfc2136` or `octodns:<provider class>`.")
    )
    nameservers: tuple[Annotated[str, AfterValidator(_dns(dnsnames.target))], ...] = Field(
        (), description="NS records of the zone."
    )
    ttl: int = Field(3600, ge=0, description="Default TTL in seconds.")
    email: Annotated[str | None, AfterValidator(_dns(dnsnames.soa_email))] = Field(
        None, description="The zone contact for the SOA record."
    )
    records: tuple[Record, ...] = Field((), description="Records beyond the derived ones.")
    update: Update | None = Field(
        None,
        description="Where RFC 2136 dynamic updates of the zone go: ACME `dns-01` writes its "
        "`_acme-challenge` TXT records there.",
    )
