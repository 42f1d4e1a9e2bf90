"""What Incus has to hold on one host, decided from the inventory before any text.

``instances(inventory, host)`` returns an ``Instance`` for every component of every service on
an Incus host, and one for every container host on it that has ``system:`` (the art school's
HAProxy container); ``preseed(inventory, host)`` the storage pool, bridge and profile they all
use. ``allmende.render.incus`` writes them down; the Incus engine (``allmende.engines.incus``)
reads the same definitions back to create and change the instances.

The decisions, in one place:

* An instance is named ``<service>-<component>`` (on the bridge: ``<name>.incus``, where the
  edge reaches it), a container host by its host name. Incus refuses names over 63
  characters: such a component is left out, with the reason (``skipped``).
* A ``system:`` component is a system container from the local image alias ``image``; a
  component with an ``image:`` is an OCI application container from its registry (Incus 6.3 and
  later; the engine refuses it on an Incus without OCI support).
* Its only profile is the host's (root disk on the pool, ``eth0`` on the bridge); every
  instance starts with the host (``boot.autostart``).
* ``resources`` become ``limits.cpu`` (fractions of a core as ``limits.cpu.allowance``) and
  ``limits.memory``.
* ``env`` becomes ``environment.*``, which Incus gives the container's init and every
  ``incus exec``. Secrets are never values: ``/srv/<service>/secrets`` (written with mode 0600
  by apply) is mounted read-only at ``/etc/allmende/secrets`` and each is named to the
  program by ``<ENV>_FILE=/etc/allmende/secrets/<flat name>``, as Compose does with
  ``/run/secrets`` (under ``/run`` systemd's tmpfs would hide it).
* Volumes are disk devices of ``/srv/<service>/<volume>`` (or the volume's ``host``), shifted
  (``shift``: the container's root owns what the host's root owns), so backups and moves see
  plain directories (apply makes a new volume's directory before the instance mounts it).
* A published port is a proxy device listening on the host's address (127.0.0.1 for the
  machine allmende runs on; every address when the address is a DNS name) and connecting to
  the port inside. A container host that is an edge gets its edge's ports (HTTP, HTTPS and the
  raw TCP ports it carries) passed from its parent's address to the same port inside; an
  ``address`` of it inside the parent's ``subnet`` is reserved for it on the bridge.
* Scheduled snapshots (``snapshots`` of the service, else of the host) become
  ``snapshots.schedule``/``snapshots.expiry``, named ``auto-<date>-<time>``.
* What allmende runs inside after creating it (``packages``, ``setup``, ``services``) and the
  image it was made from are kept in ``user.allmende.*`` keys, so that a later apply knows what
  was done: a new package is installed, a new setup step run, a new service enabled, a changed
  image means a new instance.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import dataclass, field

from allmende.inventory import derive
from allmende.inventory.derive import volume_host_path
from allmende.inventory.hostpaths import SECRETS, service_dir
from allmende.inventory.inventory import Inventory
from allmende.inventory.models import (
    Component,
    Host,
    IncusHost,
    Limits,
    Snapshots,
    SystemContainer,
    seconds,
)
from allmende.inventory.secretnames import flat_name

#: Incus's longest instance name.
MAX_NAME = 63
#: Where a service's secrets appear inside its instances (not under /run, where systemd mounts
#: a tmpfs over whatever Incus mounted there before it started).
SECRETS_DIR = "/etc/allmende/secrets"
#: The prefix of the ``user.*`` keys in which allmende keeps what it did in an instance.
USER = "user.allmende."
#: The keys a later apply reads to know what it made and what it ran inside.
SERVICE, COMPONENT, HOST = f"{USER}service", f"{USER}component", f"{USER}host"
IMAGE, PACKAGES, SETUP, SERVICES = (
    f"{USER}image",
    f"{USER}packages",
    f"{USER}setup",
    f"{USER}services",
)
#: What is run inside, recorded only once it ran (the engine writes them last).
PROVISIONED = (PACKAGES, SETUP, SERVICES)
#: How scheduled snapshots are named.
SNAPSHOT_PATTERN = "auto-{{ creation_date|date:'20060102-150405' }}"
#: Schedules by word, as Incus writes them.
SCHEDULES = {"hourly": "@hourly", "daily": "@daily", "weekly": "@weekly", "monthly": "@monthly"}

_REGISTRY = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?$")


@dataclass(frozen=True)
class Instance:
    """One Incus instance as allmende wants it: the body of ``POST /1.0/instances`` (``body``)
    and what is run inside after it is made."""

    name: str
    #: The image: a local alias, or for OCI the registry and the reference in it.
    alias: str
    server: str | None
    description: str
    profiles: tuple[str, ...]
    config: dict[str, str]
    devices: dict[str, dict[str, str]]
    system: SystemContainer | None
    sources: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def oci(self) -> bool:
        """Whether this is an OCI application container (from a registry)."""
        return self.server is not None

    def body(self) -> dict[str, object]:
        """Return the definition as Incus's REST API takes it (``InstancesPost``)."""
        source: dict[str, str] = {"type": "image", "alias": self.alias}
        if self.server is not None:
            source = {"type": "image", "protocol": "oci", "server": self.server, **source}
        return {
            "name": self.name,
            "type": "container",
            "source": source,
            "description": self.description,
            "profiles": list(self.profiles),
            "config": dict(sorted(self.config.items())),
            "devices": {k: dict(sorted(v.items())) for k, v in sorted(self.devices.items())},
        }


@dataclass(frozen=True)
class Preseed:
    """The storage pool, bridge (None: left as it is) and profile of an Incus host."""

    pool: str
    driver: str
    network: str
    subnet: str | None
    profile: str
    sources: tuple[str, ...]

    def body(self) -> dict[str, object]:
        """Return it as ``incus admin init --preseed`` reads it."""
        document: dict[str, object] = {
            "storage_pools": [{"name": self.pool, "driver": self.driver}],
        }
        if self.subnet is not None:
            document["networks"] = [
                {
                    "name": self.network,
                    "type": "bridge",
                    "config": {
                        "ipv4.address": self.subnet,
                        "ipv4.nat": "true",
                        "ipv6.address": "none",
                    },
                }
            ]
        document["profiles"] = [
            {
                "name": self.profile,
                "description": "Instances made by allmende",
                "config": {},
                "devices": {
                    "eth0": {"name": "eth0", "network": self.network, "type": "nic"},
                    "root": {"path": "/", "pool": self.pool, "type": "disk"},
                },
            }
        ]
        return document


@dataclass(frozen=True)
class HostPlan:
    """Everything Incus holds on one host: the preseed, the instances of each service and of
    each container host, and what was left out with the reason."""

    preseed: Preseed
    services: dict[str, tuple[Instance, ...]]
    hosts: dict[str, Instance]
    skipped: dict[str, str] = field(default_factory=dict)


def settings(host: Host) -> IncusHost:
    """Return a host's Incus settings, the defaults where it has none."""
    return host.incus or IncusHost()


def is_incus_host(inventory: Inventory, name: str) -> bool:
    """Return whether allmende keeps Incus on the host ``name``: its engine is incus and a
    service or a container host with ``system:`` runs there."""
    host = inventory.hosts.get(name)
    if host is None or host.engine != "incus":
        return False
    return bool(derive.services_on(inventory, name) or container_hosts(inventory, name))


def container_hosts(inventory: Inventory, parent: str) -> list[str]:
    """Return the hosts with ``system:`` whose parent is ``parent``, sorted."""
    return sorted(
        n for n, h in inventory.hosts.items() if h.parent == parent and h.system is not None
    )


def incus_hosts(inventory: Inventory) -> list[str]:
    """Return every host on which allmende keeps Incus, sorted."""
    return [name for name in sorted(inventory.hosts) if is_incus_host(inventory, name)]


def plan(inventory: Inventory, host: str) -> HostPlan:
    """Return what Incus holds on ``host`` (an Incus host, see ``is_incus_host``)."""
    model = inventory.hosts[host]
    own = settings(model)
    host_file = inventory.file("host", host) if ("host", host) in inventory.files else None
    preseed = Preseed(
        own.pool,
        own.driver,
        own.network,
        own.subnet,
        own.profile,
        tuple(f for f in (inventory.file("collective"), host_file) if f),
    )
    services: dict[str, tuple[Instance, ...]] = {}
    skipped: dict[str, str] = {}
    for name in derive.services_on(inventory, host):
        made = []
        for cname, component in sorted(inventory.services[name].components.items()):
            instance_name = f"{name}-{cname}"
            if len(instance_name) > MAX_NAME:
                skipped[instance_name] = (
                    f"Incus names have at most {MAX_NAME} characters; shorten the service "
                    f"`{name}` or its component `{cname}`"
                )
                continue
            made.append(_component(inventory, host, name, cname, component))
        services[name] = tuple(made)
    hosts = {c: _container_host(inventory, host, c) for c in container_hosts(inventory, host)}
    return HostPlan(preseed, services, hosts, skipped)


def _sources(inventory: Inventory, *files: tuple[str, str]) -> tuple[str, ...]:
    found = {inventory.file("collective")}
    for kind, name in files:
        if (kind, name) in inventory.files:
            found.add(inventory.file(kind, name))  # type: ignore[arg-type]
    return tuple(sorted(found))


def _component(
    inventory: Inventory, host: str, service: str, cname: str, component: Component
) -> Instance:
    model = inventory.hosts[host]
    owner = inventory.services[service]
    notes: list[str] = []
    config: dict[str, str] = {"boot.autostart": "true", SERVICE: service, COMPONENT: cname}
    config.update(limits(component.resources))
    config.update(snapshots(owner.snapshots or settings(model).snapshots))
    for key, value in sorted(component.env.items()):
        config[f"environment.{key}"] = value
    for key, use in sorted(component.secrets.items()):
        secret_path = f"{SECRETS_DIR}/{flat_name(use.secret)}"
        if use.as_ == "file" and use.path is None:
            config[f"environment.{key}_FILE"] = secret_path
        else:
            notes.append(
                f"{cname}: the secret {use.secret} is not delivered `as: {use.as_}` at a path "
                f"of its own on Incus yet: it is the file {secret_path}"
            )
    devices: dict[str, dict[str, str]] = {}
    for volume_name, volume in sorted(component.volumes.items()):
        devices[f"volume-{volume_name}"] = {
            "type": "disk",
            "source": volume_host_path(service, volume_name, volume),
            "path": volume.path,
            "shift": "true",
        }
    if component.secrets:
        devices["secrets"] = {
            "type": "disk",
            "source": f"{service_dir(service)}/{SECRETS}",
            "path": SECRETS_DIR,
            "readonly": "true",
            "shift": "true",
        }
    for port_name, published in sorted(component.publish.items()):
        inside = component.ports[port_name]
        address = derive.published_ip(model, published)
        devices[f"publish-{port_name}"] = proxy(address, published.port, inside)
    if component.system is not None:
        config.update(recorded(component.system))
        alias, server = component.system.image, None
    else:
        image = component.image or ""
        server, alias = registry(image)
        config[IMAGE] = image
        if component.command:
            notes.append(f"{cname}: `command` is not passed to an OCI instance; the image's runs")
    return Instance(
        name=f"{service}-{cname}",
        alias=alias,
        server=server,
        description=f"{cname}: {owner.description}",
        profiles=(settings(model).profile,),
        config=config,
        devices=devices,
        system=component.system,
        sources=_sources(inventory, ("service", service), ("host", host)),
        notes=tuple(notes),
    )


def _container_host(inventory: Inventory, parent: str, name: str) -> Instance:
    model = inventory.hosts[name]
    system = model.system
    assert system is not None  # container_hosts() chose it for its system:
    config: dict[str, str] = {"boot.autostart": "true", HOST: name}
    resources = model.resources
    if resources is not None:
        config.update(limits(Limits(cpus=resources.cpus, memory=resources.memory)))
    config.update(snapshots(settings(inventory.hosts[parent]).snapshots))
    config.update(recorded(system))
    devices: dict[str, dict[str, str]] = {}
    own = settings(inventory.hosts[parent])
    if _in_subnet(model.address, own.subnet):
        # Its address on the bridge is the one its host file says (a DHCP reservation).
        devices["eth0"] = {
            "type": "nic",
            "network": own.network,
            "name": "eth0",
            "ipv4.address": str(model.address),
        }
    address = derive.published_ip(inventory.hosts[parent]) or "0.0.0.0"
    edge = inventory.collective.edge
    if edge is not None and name in edge.hosts:
        inside = edge.bind or "127.0.0.1"
        devices["edge-http"] = proxy(address, edge.http_port, edge.http_port, inside)
        devices["edge-https"] = proxy(address, edge.https_port, edge.https_port, inside)
        for port in sorted(_exposed(inventory, name)):
            devices[f"edge-{port}"] = proxy(address, port, port, inside)
    return Instance(
        name=name,
        alias=system.image,
        server=None,
        description=model.description or f"The host {name}",
        profiles=(settings(inventory.hosts[parent]).profile,),
        config=config,
        devices=devices,
        system=system,
        sources=_sources(inventory, ("host", name), ("host", parent)),
    )


def _in_subnet(address: str | None, subnet: str | None) -> bool:
    """Return whether ``address`` is an IPv4 address inside the bridge's ``subnet``."""
    if address is None or subnet is None:
        return False
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_interface(subnet).network
    except ValueError:
        return False


def _exposed(inventory: Inventory, edge: str) -> set[int]:
    """Return the raw TCP ports the edge host carries (HAProxy carries no UDP)."""
    return {
        expose.port
        for service in derive.served_by(inventory, edge)
        for expose in inventory.services[service].expose
        if expose.protocol == "tcp"
    }


def proxy(listen: str, port: int, inside: int, connect: str = "127.0.0.1") -> dict[str, str]:
    """Return a proxy device passing TCP ``listen:port`` on the host to ``connect:inside``
    in the instance (IPv6 addresses in brackets)."""
    return {
        "type": "proxy",
        "listen": f"tcp:{_bracket(listen)}:{port}",
        "connect": f"tcp:{_bracket(connect)}:{inside}",
    }


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def limits(resources: Limits | None) -> dict[str, str]:
    """Return the ``limits.*`` keys of a component's resources."""
    if resources is None:
        return {}
    config: dict[str, str] = {}
    if resources.cpus is not None:
        cores = math.ceil(resources.cpus)
        config["limits.cpu"] = str(cores)
        if cores != resources.cpus:
            config["limits.cpu.allowance"] = f"{round(resources.cpus * 100)}ms/100ms"
    if resources.memory is not None:
        config["limits.memory"] = memory(resources.memory)
    return config


def memory(size: str) -> str:
    """Return a size as Incus writes it: ``512MiB``, ``2GB`` (``kB`` for kilobytes)."""
    compact = size.replace(" ", "")
    return compact[:-2] + "kB" if compact.endswith("KB") else compact


def snapshots(wanted: Snapshots | None) -> dict[str, str]:
    """Return the ``snapshots.*`` keys of a snapshot policy."""
    if wanted is None or (wanted.schedule is None and wanted.expiry is None):
        return {}
    config = {"snapshots.pattern": SNAPSHOT_PATTERN}
    if wanted.schedule is not None:
        config["snapshots.schedule"] = SCHEDULES.get(wanted.schedule, wanted.schedule)
    if wanted.expiry is not None:
        config["snapshots.expiry"] = expiry(wanted.expiry)
    return config


def expiry(duration: str) -> str:
    """Return a duration as Incus's snapshot expiry (``2w``, ``3d``, ``12H``, ``90M``; Incus's
    ``m`` is a month): whole weeks, days, hours, else minutes, rounded up."""
    total = seconds(duration)
    for unit, size in (("w", 604800), ("d", 86400), ("H", 3600)):
        if total >= size and total % size == 0:
            return f"{int(total // size)}{unit}"
    return f"{max(1, math.ceil(total / 60))}M"


def recorded(system: SystemContainer) -> dict[str, str]:
    """Return the ``user.allmende.*`` keys that record what a system container is made of."""
    return {
        IMAGE: system.image,
        PACKAGES: json.dumps(list(system.packages)),
        SETUP: json.dumps(list(system.setup)),
        SERVICES: json.dumps(list(system.services)),
    }


def registry(image: str) -> tuple[str, str]:
    """Given an image reference (``funkwhale/all-in-one:1.4.0``, ``ghcr.io/org/app:1``),
    return the registry's URL (Docker Hub when it names none) and the reference in it."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost") and _REGISTRY.match(first):
        return f"https://{first}", rest
    return "https://docker.io", image
