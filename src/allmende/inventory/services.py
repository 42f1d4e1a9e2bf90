"""`services/<service>.yaml` as typed models: components, routes, backups and monitors."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from allmende.inventory.collective import (
    Consistency,
    Keep,
    Schedule,
    Window,
)
from allmende.inventory.fields import (
    Allow,
    DomainName,
    Duration,
    EnvValue,
    Extensible,
    Model,
    Port,
    SafeName,
    Size,
    _command,
    missing_key,
    salvaging,
)
from allmende.inventory.hosts import (
    Snapshots,
    SystemContainer,
    _ip,
)
from allmende.inventory.safenames import unsafe_character
from allmende.inventory.sources import Build, CarriedFile, _build, _carried
from allmende.inventory.upstreams import PortEdge


class Limits(Model):
    """The most one component may use."""

    cpus: float | None = Field(None, gt=0, description="CPU cores (`0.5`, `2`).")
    memory: Size | None = Field(None, description="Memory, e.g. `512MiB`.")


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
    build: Annotated[
        Build | None, BeforeValidator(_build, json_schema_input_type=str | Build | None)
    ] = Field(
        None,
        description="Compose hosts: `image` is built on the host from sources the inventory "
        "carries under `files/<service>/` (a directory, or {context, dockerfile}); Swarm and "
        "Kubernetes hosts take images from a registry only.",
    )
    healthcheck: Healthcheck | None = Field(None, description="How to tell it is healthy.")
    edge: dict[SafeName, PortEdge] = Field(
        default_factory=dict,
        description="Port name -> how the edge reaches that port of a route or `expose`: more "
        "servers to balance over (outside the inventory), backup servers, the PROXY protocol. "
        "Default: one server, this component on the service's host.",
    )
    depends_on: Annotated[
        dict[str, Condition | None],
        BeforeValidator(_dependencies, json_schema_input_type=list[str] | dict[str, Condition]),
    ] = Field(
        default_factory=dict,
        description="Components started first: a list of names (each waited for until healthy "
        "when it has a health check, else until started), or name -> `started`, `healthy` or "
        "`completed` (ran to its end successfully) to say what is waited for.",
    )
    replicas: int = Field(
        1,
        ge=0,
        description="How many copies run. `0` with `edge` servers: the service's routes go "
        "only to servers outside the inventory (a NAS, a box allmende does not manage); on a "
        "compose host such a component is left out of the project (nothing of it runs there).",
    )
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
        unknown = [name for name in self.edge if name not in self.ports]
        if unknown:
            raise ValueError(f"`edge`: {unknown[0]} is not one of this component's `ports`")
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
