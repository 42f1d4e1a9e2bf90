"""`hosts/<host>.yaml` as typed models, with the Incus settings of a host."""

from __future__ import annotations

import ipaddress
from importlib.metadata import entry_points
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from allmende.inventory.collective import (
    Window,
)
from allmende.inventory.fields import (
    NAME_PATTERN,
    Allow,
    Duration,
    Extensible,
    Model,
    Port,
    Size,
    _host_address,
)

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
