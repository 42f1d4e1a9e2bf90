"""What follows from the inventory: defaults filled in, databases collected, monitors derived.

Pure functions over the models, shared by checks, render, docs and the graph, so that every
surface agrees on what "the backup of this service" or "the databases on that host" means.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from allmende.inventory.hostpaths import volume_dir
from allmende.inventory.inventory import Inventory
from allmende.inventory.models import (
    Collective,
    Component,
    Host,
    Keep,
    Monitor,
    Published,
    Service,
    Use,
    Volume,
)

SCHEDULES = {
    "hourly": "hourly",
    "daily": "daily",
    "weekly": "weekly",
    "monthly": "monthly",
}


def split_target(target: str) -> tuple[str, str]:
    """Given ``<component>.<port>``, return (component, port); the port is "" when missing."""
    component, _, port = target.partition(".")
    return component, port


def provider_component(service: Service) -> str | None:
    """Return the component that serves the database a service provides, if it is clear."""
    if service.provides is None:
        return None
    if service.provides.component:
        return service.provides.component
    if len(service.components) == 1:
        return next(iter(service.components))
    return None


def volume_host_path(service: str, name: str, volume: Volume) -> str:
    """Return where a volume lives on the host: its `host`, or /srv/<service>/<volume>."""
    return volume.host or volume_dir(service, name)


def volumes(service_name: str, service: Service) -> Iterator[tuple[str, str, Volume, str]]:
    """Yield (component, volume name, volume, host path) for every volume of a service."""
    for component_name, component in service.components.items():
        for volume_name, volume in component.volumes.items():
            yield (
                component_name,
                volume_name,
                volume,
                volume_host_path(service_name, volume_name, volume),
            )


#: What a backed-up service gets when neither it nor ``allmende.yaml`` says otherwise.
DEFAULT_SCHEDULE = "daily"
DEFAULT_ENCRYPTION = "repokey-blake2"
DEFAULT_KEEP = Keep(daily=7, weekly=4, monthly=6)


@dataclass(frozen=True)
class Backup:
    """A service's backup with the collective's defaults filled in."""

    consistency: str
    schedule: str | None
    keep: Keep | None
    repository: str | None
    encryption: str | None
    append_only: bool
    exclude: tuple[str, ...]


def default_consistency(service: Service) -> str:
    """Return how a service that holds data is made consistent when nothing says so: ``dump``
    the databases a service provides (while it runs), ``stop`` any other service with volumes
    for the copy; ``none`` for a service without data."""
    if service.provides is not None:
        return "dump"
    return "stop" if has_data(service) else "none"


def backup(collective: Collective, name: str, service: Service) -> Backup:
    """Return the effective backup of a service: its own keys, else the collective's defaults,
    else allmende's (``default_consistency``, a ``daily`` schedule, ``repokey-blake2``, keep
    7 daily, 4 weekly and 6 monthly archives).

    A service that holds data is backed up by the collective's ``backup:`` without saying
    anything itself; one without a repository anywhere has ``repository`` None (nothing can be
    backed up, and ``backups.required`` says so).
    """
    own = service.backup
    base = collective.backup

    def pick(key: str) -> object:
        value = getattr(own, key, None) if own is not None else None
        if value is None and base is not None:
            value = getattr(base, key, None)
        return value

    repository = pick("repository")
    keep = pick("keep")
    return Backup(
        consistency=str(pick("consistency") or default_consistency(service)),
        schedule=str(pick("schedule") or DEFAULT_SCHEDULE),
        keep=keep if isinstance(keep, Keep) else DEFAULT_KEEP,
        repository=str(repository).replace("{service}", name) if repository else None,
        encryption=str(pick("encryption") or DEFAULT_ENCRYPTION),
        append_only=bool(pick("append_only")),
        exclude=own.exclude if own is not None else (),
    )


def has_data(service: Service) -> bool:
    """Return whether a service holds data worth a backup: volumes or a database."""
    return service.provides is not None or any(c.volumes for c in service.components.values())


def update_order(service: Service) -> str:
    """Return how a change replaces the service: its ``update``, else ``stop-first`` when it
    holds data (two copies would write the same files) and ``start-first`` when not."""
    if service.update is not None:
        return service.update
    return "stop-first" if has_data(service) else "start-first"


def monitors(service: Service) -> tuple[Monitor, ...]:
    """Return a service's monitors: its own, or one derived per route and exposed port."""
    if service.monitor is not None:
        return service.monitor
    derived: list[Monitor] = []
    seen: set[str] = set()
    for route in service.routes:
        scheme = "http" if route.tls == "none" else "https"
        if route.tls == "passthrough":
            probe = Monitor(tls=f"{route.domain}:443")
            key = f"tls:{route.domain}"
        else:
            probe = Monitor(http=f"{scheme}://{route.domain}{route.path}")
            key = f"http:{route.domain}{route.path}"
        if key not in seen:
            seen.add(key)
            derived.append(probe)
    return tuple(derived)


@dataclass(frozen=True)
class Database:
    """A database offered by one service and used by others."""

    provider: str
    name: str
    engine: str
    users: tuple[str, ...]

    @property
    def ref(self) -> str:
        return f"{self.provider}/{self.name}"


def databases(inventory: Inventory) -> dict[str, Database]:
    """Return every database by ``<service>/<name>``: declared ones and those named by uses."""
    users: dict[str, list[str]] = {}
    for name, service in sorted(inventory.services.items()):
        for use in service.uses:
            users.setdefault(use.database, []).append(name)
    result: dict[str, Database] = {}
    for name, service in sorted(inventory.services.items()):
        if service.provides is None:
            continue
        declared = set(service.provides.databases or ())
        used = {ref.partition("/")[2] for ref in users if ref.partition("/")[0] == name}
        for db in sorted(declared | used):
            ref = f"{name}/{db}"
            result[ref] = Database(name, db, service.provides.database, tuple(users.get(ref, ())))
    return result


def databases_of(inventory: Inventory, provider: str) -> list[str]:
    """Return the names of the databases service ``provider`` offers, sorted: those it
    declares and those other services use (what ``databases`` holds for it)."""
    service = inventory.services[provider]
    if service.provides is None:
        return []
    found = set(service.provides.databases or ())
    for other in inventory.services.values():
        for use in other.uses:
            owner, _, name = use.database.partition("/")
            if owner == provider:
                found.add(name)
    return sorted(found)


def role_of(use: Use) -> str:
    """Return the role a use of a database logs in as: its ``user``, else the database name."""
    return use.user or use.database.partition("/")[2]


def password_of(service: str, use: Use) -> str:
    """Return the secret that holds the password of a use's role: its ``password``, else
    ``<service>/db-password`` (the using service's)."""
    return use.password or f"{service}/db-password"


@dataclass(frozen=True)
class Login:
    """A role a provider serves one of its databases to: the role, the database, the secret
    holding its password, and the service that logs in with it (and where in its file)."""

    role: str
    database: str
    secret: str
    user: str
    index: int


def logins(inventory: Inventory, provider: str) -> list[Login]:
    """Return every role ``provider`` creates for the services that use its databases, by
    service and order of their ``uses``."""
    found = []
    for name, service in sorted(inventory.services.items()):
        for index, use in enumerate(service.uses):
            owner, _, database = use.database.partition("/")
            if owner == provider and use.provision:
                found.append(Login(role_of(use), database, password_of(name, use), name, index))
    return found


def provided_databases(inventory: Inventory, provider: str) -> list[str]:
    """Return the databases apply makes ``provider`` hold: those it lists and those others use
    with a role of their own (``provision``), sorted."""
    service = inventory.services[provider]
    listed = set(service.provides.databases or ()) if service.provides else set()
    return sorted(listed | {login.database for login in logins(inventory, provider)})


def images(service: Service) -> Iterator[tuple[str, Component, str]]:
    """Yield (component name, component, image) for every application or system image."""
    for name, component in service.components.items():
        if component.image is not None:
            yield name, component, component.image
        elif component.system is not None:
            yield name, component, component.system.image


def children(inventory: Inventory, host: str) -> list[str]:
    """Return the hosts whose parent is ``host``, sorted."""
    return sorted(n for n, h in inventory.hosts.items() if h.parent == host)


def services_on(inventory: Inventory, host: str) -> list[str]:
    """Return the services that run on ``host``, sorted."""
    return sorted(n for n, s in inventory.services.items() if s.host == host)


def edge_hosts(inventory: Inventory) -> tuple[str, ...]:
    """Return the hosts that run the reverse proxy (none when the collective has no edge)."""
    edge = inventory.collective.edge
    return edge.hosts if edge is not None else ()


def edges_of(inventory: Inventory, service: str) -> tuple[str, ...]:
    """Return the edge hosts that serve a service's routes and exposed ports.

    A service that runs on an edge host (or inside one, as a container or vm) is served by that
    edge alone; any other service by every edge host.
    """
    edges = edge_hosts(inventory)
    current: str | None = inventory.services[service].host
    seen: set[str] = set()
    while current is not None and current not in seen:
        if current in edges:
            return (current,)
        seen.add(current)
        host = inventory.hosts.get(current)
        current = host.parent if host is not None else None
    return edges


def served_by(inventory: Inventory, edge: str) -> list[str]:
    """Return the services whose routes and exposed ports the edge host ``edge`` serves."""
    return sorted(n for n in inventory.services if edge in edges_of(inventory, n))


def domain_edges(inventory: Inventory) -> dict[str, tuple[str, ...]]:
    """Return, for every route domain, the edge hosts its records point at, sorted."""
    result: dict[str, set[str]] = {}
    for name, service in inventory.services.items():
        for route in service.routes:
            result.setdefault(route.domain, set()).update(edges_of(inventory, name))
    return {domain: tuple(sorted(edges)) for domain, edges in sorted(result.items())}


def maintained_by(inventory: Inventory, person: str) -> list[str]:
    """Return the services a person maintains, sorted."""
    return sorted(n for n, s in inventory.services.items() if person in s.maintainers)


@dataclass(frozen=True)
class Reach:
    """How an edge host reaches one port of a service's component, or why it cannot.

    ``address`` and ``port`` are what the edge connects to: the published port on the host's
    address (127.0.0.1 when the service runs on the edge host itself), or the port itself by
    name on the Incus bridge. ``address`` is None when the host has no address to connect to.
    """

    host: str
    address: str | None
    port: int
    published: bool
    bridge: bool
    #: the loopback address a port is published on only, which another host cannot reach
    only: str | None = None

    @property
    def reachable(self) -> bool:
        """Return whether the edge can connect at all."""
        return (self.published or self.bridge) and self.address is not None


def on_incus_bridge(inventory: Inventory, edge: str, host: str) -> bool:
    """Return whether the edge host ``edge`` sits on the Incus host ``host`` (is it, or runs in
    it), so that it reaches that host's system containers by name on the bridge."""
    incus = inventory.hosts.get(host)
    if incus is None or incus.engine != "incus":
        return False
    current: str | None = edge
    seen: set[str] = set()
    while current is not None and current not in seen:
        if current == host:
            return True
        seen.add(current)
        parent = inventory.hosts.get(current)
        current = parent.parent if parent is not None else None
    return False


def published_ip(host: Host, published: Published | None = None) -> str:
    """Given a host (and one port published there), return the IP the port binds to: the
    port's own ``bind`` if given, else the host's ``bind``, else its address if that is an IP,
    else 127.0.0.1 (a host without an address is the local machine; one reached by name
    publishes on every interface only when ``bind`` says so)."""
    if published is not None and published.bind is not None:
        return published.bind
    if host.bind is not None:
        return host.bind
    return _ip_or_loopback(host.address)


def loopback(address: str) -> bool:
    """Whether an address is the host's own loopback (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


#: The ``bind`` values that mean every interface of the host.
EVERY_INTERFACE = ("0.0.0.0", "::")


def _ip_or_loopback(address: str | None) -> str:
    """Return ``address`` if it is an IP, else 127.0.0.1."""
    try:
        return str(ipaddress.ip_address(address or ""))
    except ValueError:
        return "127.0.0.1"


def bind_unsaid(host: Host) -> bool:
    """Whether a host is reached by a name and does not say where its ports listen."""
    if host.bind is not None or host.address is None:
        return False
    try:
        ipaddress.ip_address(host.address)
    except ValueError:
        return True
    return False


def reach(inventory: Inventory, edge: str, service: str, target: str) -> Reach | None:
    """Return how the edge host ``edge`` reaches ``<component>.<port>`` of ``service``, or
    None when the service has no such component or port.

    A published port is reached on the service host's ``address``; when the service runs on
    the edge host itself, on the address its ports are published on (``published_ip``; where
    that is every interface, the host's IP, else 127.0.0.1). A port of a container on an Incus
    host the edge runs on or in is reached by name on the Incus bridge,
    ``<service>-<component>.incus`` (published or not: the bridge is the shorter way). Any
    other unpublished port cannot be reached.
    """
    component_name, port_name = split_target(target)
    owner = inventory.services[service]
    component = owner.components.get(component_name)
    if component is None or port_name not in component.ports:
        return None
    published = component.publish.get(port_name)
    port = published.port if published is not None else component.ports[port_name]
    if on_incus_bridge(inventory, edge, owner.host):
        # Incus names every instance on its managed bridge: <service>-<component>.incus,
        # where its port is open whether it is published on the host or not.
        inside = component.ports[port_name]
        return Reach(owner.host, f"{service}-{component_name}.incus", inside, False, True)
    if owner.host == edge:
        address: str | None = published_ip(inventory.hosts[edge], published)
        if address in EVERY_INTERFACE:  # listening everywhere: reached at its own address
            address = _ip_or_loopback(inventory.hosts[edge].address)
        return Reach(owner.host, address, port, published is not None, False)
    host = inventory.hosts.get(owner.host)
    address = (host.address or None) if host is not None else None
    if published is not None and host is not None:
        bound = published_ip(host, published)
        if published.bind is not None and bound not in EVERY_INTERFACE:
            # bound to one address of its own: reached there, never from elsewhere on loopback
            return Reach(owner.host, bound, port, not loopback(bound), False, bound)
    return Reach(owner.host, address, port, published is not None, False)
