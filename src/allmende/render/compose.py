"""Compose projects: ``<host>/srv/<service>/compose.yaml`` for every service on a compose host.

One project per service, named by its directory ``/srv/<service>`` (no ``name:``, which
docker-compose 1.x rejects), one Compose service per component with an image
(``system:`` components are Incus containers, another target). The decisions:

- Ports are published only where ``publish`` says, as ``"<ip>:<publish>:<port>"``: the host's
  address when it is an IP (IPv6 in brackets), ``127.0.0.1`` for a host without an address
  (the machine allmende runs on), none when the address is a DNS name (Compose binds IPs, not
  names: the port listens on every address, and the file says so).
- Volumes are bind mounts of ``/srv/<service>/<volume>`` (or the volume's ``host``): plain
  directories that backups and moves see. Carried configuration files (``files``) are written
  to ``/srv/<service>/files/`` and bind-mounted (``:ro`` where read-only); a label holding a
  digest of them makes Compose create the container anew when one changes.
- Secrets are never values. A secret delivered ``as: file`` (the default) is a top-level secret
  read from ``./secrets/<flat name>`` (written with mode 0600, or the use's owner and mode, by
  apply), mounted at ``/run/secrets/<flat name>`` and named to the program by ``<ENV>_FILE``
  (the convention of the official images); one at another ``path`` (``as: file`` with a path,
  ``as: path``) is that file bind-mounted read-only there. Secrets ``as: env`` come from the
  component's env file ``./secrets/<component>.env`` (0600, written by apply), never from
  compose.yaml.
- Health checks run inside the container on 127.0.0.1: ``wget`` or else ``curl`` for
  ``http``, ``nc -z`` for ``tcp``; ``depends_on`` waits for what the component says
  (``started``, ``healthy``, ``completed``), else for ``service_healthy`` where the dependency
  has a check, else for ``service_started``.
- A service that provides a database declares the network ``allmende-<service>``, where its
  database component also answers to the service's name; each service on the same host that
  uses it joins that network as external (its provider must be up first; the file says so).
- ``$`` in values from the inventory is written ``$$``, so Compose substitutes nothing in them.
- A component's ``x-compose`` mapping is merged last into its Compose service, a service's
  into the project's top level, verbatim (mappings key by key, anything else replaces; the
  entries of ``ports`` and ``volumes`` are added to those the typed keys give): it is how an
  importer keeps what the inventory cannot say. ``check`` reports an ``x-compose`` key that
  contradicts a typed one (``xcompose.typed``).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from allmende.inventory import derive
from allmende.inventory.derive import provider_component, volume_host_path
from allmende.inventory.hostpaths import CARRIED, SECRETS, carried_file, project_file
from allmende.inventory.images import qualified
from allmende.inventory.inventory import Inventory
from allmende.inventory.models import Component, Healthcheck, Host, Service, seconds
from allmende.inventory.secretnames import (
    MOUNT_DIR,
    env_file,
    env_secrets,
    file_uses,
    file_variables,
    flat_name,
)
from allmende.inventory.xcompose import escape
from allmende.render.carried import carried_digest, carried_files, carried_mounts
from allmende.render.compose_merge import extension, merge, merge_service
from allmende.render.output import Rendered, comments, service_sources, text, yaml_text

NETWORK_PREFIX = "allmende-"
_GO_UNITS = ("ms", "s", "m", "h")


@dataclass(frozen=True)
class Context:
    """One service being rendered, with what its rendering needs to know around it."""

    inventory: Inventory
    name: str
    service: Service
    host: Host


@dataclass(frozen=True)
class Networks:
    """The shared database networks of one service.

    ``provided`` is the network its database component (``provider``) serves on, ``joined``
    maps each network it joins to the service that provides it.
    """

    provided: str | None
    provider: str | None
    joined: Mapping[str, str]


#: The engine whose services this target renders.
ENGINE = "compose"


def render(inventory: Inventory) -> dict[str, Rendered]:
    """Given an inventory, return ``<host>/srv/<service>/compose.yaml`` for every service on a
    host with ``engine: compose`` that has at least one component with an image that runs."""
    files: dict[str, Rendered] = {}
    for context in contexts(inventory, "compose"):
        if not running(context.service):
            continue
        networks = shared_networks(context)
        body = comments(notes(context, networks)) + yaml_text(project(context, networks))
        sources = service_sources(inventory, context.name, *networks.joined.values())
        path = f"{context.service.host}{project_file(context.name, 'compose')}"
        files[path] = text(body, sources, collective=inventory.collective.name)
        files |= carried_rendered(context, sources)
    return dict(sorted(files.items()))


def carried_rendered(context: Context, sources: tuple[str, ...]) -> dict[str, Rendered]:
    """Return the carried files of a service as rendered files on its host, each from its
    service's files and its own file under ``files/``."""
    here = carried_file(context.name, "")
    return {
        f"{context.service.host}{host_path}": Rendered(
            content, (*sources, f"{CARRIED}/{context.name}/{host_path.removeprefix(here)}"), mode
        )
        for host_path, (content, mode) in carried_files(context.inventory, context.name).items()
    }


def contexts(inventory: Inventory, engine: str) -> Iterator[Context]:
    """Given an inventory and an engine, yield a Context for every service on a host with that
    engine, in name order."""
    for name, service in sorted(inventory.services.items()):
        host = inventory.hosts.get(service.host)
        if host is not None and host.engine == engine:
            yield Context(inventory, name, service, host)


def project(context: Context, networks: Networks) -> dict[str, Any]:
    """Given a service, return its Compose project as plain data."""
    services = {
        name: merge_service(escape(compose_service(context, networks, name, c)), extension(c))
        for name, c in running(context.service)
    }
    # No top-level `name`: the directory /srv/<service> names the project, and the older
    # docker-compose (1.x, still what many hosts run) rejects the key.
    result: dict[str, Any] = {"services": services}
    declared = network_declarations(networks, {})
    if declared:
        result["networks"] = declared
    secrets = {
        flat_name(use.secret): {"file": f"./{SECRETS}/{flat_name(use.secret)}"}
        for _, component in running(context.service)
        for _, use, path in file_uses(component)
        if path == f"{MOUNT_DIR}/{flat_name(use.secret)}"
    }
    if secrets:
        result["secrets"] = dict(sorted(secrets.items()))
    return merge(result, extension(context.service))


def compose_service(
    context: Context, networks: Networks, name: str, component: Component
) -> dict[str, Any]:
    """Given one component, return its Compose service (before escaping and ``x-compose``)."""
    entry = core(component)
    mounted = secret_mounts(component)
    if mounted:
        entry["secrets"] = mounted
    if env_secrets(component):
        entry["env_file"] = [f"./{env_file(name)}"]
    published = ports(context.host, component)
    if published:
        entry["ports"] = published
    add_common(entry, context, networks, name, component)
    if component.build is not None:
        # built on the host from the carried sources, on every `up`: a changed source is a
        # new image (Docker's cache keeps the rest)
        # relative to the project file, /srv/<service>/compose.yaml: /srv/<service>/files/...
        entry["build"] = {"context": f"./{CARRIED}/{component.build.context.strip('/')}"}
        if component.build.dockerfile is not None:
            entry["build"]["dockerfile"] = component.build.dockerfile
        entry["pull_policy"] = "build"
    binds = secret_binds(component)
    if binds:
        entry["volumes"] = [*entry.get("volumes", []), *binds]
    depends = depends_on(context.service, component)
    if depends:
        entry["depends_on"] = depends
    if component.replicas != 1:
        entry["deploy"] = {"replicas": component.replicas}
    entry["restart"] = component.restart
    entry["labels"] = labels(context, name)
    digest = carried_digest(context.inventory, context.name, component)
    if digest is not None:
        entry["labels"]["org.allmende.files"] = digest
    return entry


# --------------------------------------------------------------------------- building blocks
# Also used by the Swarm stacks (render/swarm.py) and, for ports and probes, by Kubernetes.


def image_components(service: Service) -> list[tuple[str, Component]]:
    """Given a service, return its components that run an image, by name (not ``system:``)."""
    return sorted((n, c) for n, c in service.components.items() if c.image is not None)


def running(service: Service) -> list[tuple[str, Component]]:
    """Given a service, return its image components that run, by name: a component with
    ``replicas: 0`` is left out of its Compose project, since podman-compose would start one
    anyway (and pull its image)."""
    return [(n, c) for n, c in image_components(service) if c.replicas > 0]


def core(component: Component) -> dict[str, Any]:
    """Given a component, return image (fully qualified), command and environment of its
    Compose service."""
    entry: dict[str, Any] = {"image": qualified(component.image or "")}
    if component.command is not None:
        entry["command"] = list(component.command)
    env = environment(component)
    if env:
        entry["environment"] = env
    return entry


def add_common(
    entry: dict[str, Any], context: Context, networks: Networks, name: str, component: Component
) -> None:
    """Add volumes, networks and health check of a component to its Compose service entry."""
    mounts = volume_mounts(context.name, component)
    if mounts:
        entry["volumes"] = mounts
    attached = service_networks(context, networks, name)
    if attached:
        entry["networks"] = attached
    check = healthcheck(component)
    if check is not None:
        entry["healthcheck"] = check


def secret_names(service: Service) -> dict[str, str]:
    """Given a service, return the flat name of every secret its image components read, by
    secret name, sorted."""
    names = {
        use.secret
        for _, component in image_components(service)
        for use in component.secrets.values()
    }
    return {secret: flat_name(secret) for secret in sorted(names)}


def secret_mounts(component: Component) -> list[str]:
    """Return the top-level secrets a component mounts at ``/run/secrets/<flat name>``."""
    return sorted(
        {
            flat_name(use.secret)
            for _, use, path in file_uses(component)
            if path == f"{MOUNT_DIR}/{flat_name(use.secret)}"
        }
    )


def secret_binds(component: Component) -> list[str]:
    """Return the read-only bind mounts of secrets a component reads at a path of its own."""
    return [
        f"./{SECRETS}/{flat_name(use.secret)}:{path}:ro"
        for _, use, path in file_uses(component)
        if path != f"{MOUNT_DIR}/{flat_name(use.secret)}"
    ]


def environment(component: Component) -> dict[str, str]:
    """Given a component, return its environment: ``env``, and ``<ENV>_FILE`` naming the file
    of each secret delivered ``as: file`` (never the value), sorted by name."""
    env = {**component.env, **file_variables(component)}
    return dict(sorted(env.items()))


def ports(host: Host, component: Component) -> list[str]:
    """Given a host and a component, return ``"<ip>:<publish>:<port>"`` for every published
    port, by port name (``derive.published_ip``: the port's own ``bind``, else the host's;
    never every interface unless one says so)."""
    found = []
    for port, published in sorted(component.publish.items()):
        if port not in component.ports:
            continue
        ip = derive.published_ip(host, published)
        ip = f"[{ip}]" if ":" in ip else ip
        found.append(f"{ip}:{published.port}:{component.ports[port]}")
    return found


def volume_mounts(service: str, component: Component) -> list[str]:
    """Given a service name and a component, return its bind mounts ``<host path>:<path>``:
    its volumes, then the files it carries (``:ro`` where read-only)."""
    return [
        f"{volume_host_path(service, name, volume)}:{volume.path}"
        for name, volume in sorted(component.volumes.items())
    ] + carried_mounts(service, component)


def health_port(component: Component, check: Healthcheck) -> int | None:
    """Given a component and its health check, return the port number the check probes, or
    None for a command check (or a port name that does not resolve)."""
    if check.command is not None:
        return None
    name = check.tcp if check.tcp is not None else check.port
    if name is None:
        return next(iter(component.ports.values())) if len(component.ports) == 1 else None
    return component.ports.get(name)


def http_path(check: Healthcheck) -> str:
    """Given an HTTP health check, return its path, starting with ``/``."""
    path = check.http or "/"
    return path if path.startswith("/") else f"/{path}"


def go_duration(duration: str) -> str:
    """Given an inventory duration (``30s``, ``2d``), return it as Compose reads durations
    (Go's units stop at hours: ``2d`` becomes ``48h``)."""
    if duration.endswith(_GO_UNITS):
        return duration
    return f"{round(seconds(duration) / 3600)}h"


def healthcheck(component: Component) -> dict[str, Any] | None:
    """Given a component, return the Compose healthcheck of its health check, if any."""
    check = component.healthcheck
    if check is None:
        return None
    port = health_port(component, check)
    if check.command is not None:
        test = ["CMD", *check.command]
    elif port is None:
        return None
    elif check.http is not None:
        url = shlex.quote(f"http://127.0.0.1:{port}{http_path(check)}")
        test = ["CMD-SHELL", f"wget -q -O /dev/null {url} || curl -fsS -o /dev/null {url}"]
    else:
        test = ["CMD-SHELL", f"nc -z 127.0.0.1 {port}"]
    return {
        "test": test,
        "interval": go_duration(check.interval),
        "timeout": go_duration(check.timeout),
        "retries": check.retries,
        "start_period": go_duration(check.start_period),
    }


#: Compose's condition for each of the inventory's.
CONDITIONS = {
    "started": "service_started",
    "healthy": "service_healthy",
    "completed": "service_completed_successfully",
}


def depends_on(service: Service, component: Component) -> dict[str, dict[str, str]]:
    """Given a service and one of its components, return its ``depends_on``: each dependency
    with an image, waited for as the component says, else healthy when it has a health check,
    else started."""
    result: dict[str, dict[str, str]] = {}
    for name, condition in sorted(component.depends_on.items()):
        dependency = service.components.get(name)
        if dependency is None or dependency.image is None or dependency.replicas == 0:
            continue
        if condition is None:
            condition = "healthy" if healthcheck(dependency) is not None else "started"
        result[name] = {"condition": CONDITIONS[condition]}
    return result


def labels(context: Context, component: str) -> dict[str, str]:
    """Given a service and a component name, return the labels naming collective, service and
    component."""
    return {
        "org.allmende.collective": context.inventory.collective.name,
        "org.allmende.component": component,
        "org.allmende.service": context.name,
    }


def serving_component(service: Service) -> str | None:
    """Given a service, return its component that serves the database it provides, if that
    component runs an image."""
    name = provider_component(service)
    component = service.components.get(name) if name is not None else None
    return name if component is not None and component.image is not None else None


def shared_networks(context: Context) -> Networks:
    """Given a service, return the network it serves its database on (if it provides one) and
    those it joins: one per provider of a database it uses that runs on the same host."""
    own = serving_component(context.service)
    joined: dict[str, str] = {}
    for use in context.service.uses:
        provider = use.database.partition("/")[0]
        other = context.inventory.services.get(provider)
        if (
            provider != context.name
            and other is not None
            and other.host == context.service.host
            and serving_component(other) is not None
        ):
            joined[f"{NETWORK_PREFIX}{provider}"] = provider
    return Networks(
        provided=f"{NETWORK_PREFIX}{context.name}" if own is not None else None,
        provider=own,
        joined=dict(sorted(joined.items())),
    )


def service_networks(context: Context, networks: Networks, component: str) -> dict[str, Any]:
    """Given a service's networks and one of its components, return the networks the
    component is on (empty when only the project's default one)."""
    attached: dict[str, Any] = {}
    if networks.provided is not None and component == networks.provider:
        attached[networks.provided] = {"aliases": [context.name]}
    for network in networks.joined:
        attached[network] = {}
    if not attached:
        return {}
    return {"default": {}, **dict(sorted(attached.items()))}


def network_declarations(networks: Networks, driver: Mapping[str, str]) -> dict[str, Any]:
    """Given a service's networks, return the top-level ``networks``: the one it provides,
    created under its own name (with ``driver`` settings), and those it joins, as external.

    When there are any, the project's ``default`` network is declared too: podman-compose
    otherwise takes a lone declared network for the default one of components that name none.
    """
    declared: dict[str, Any] = {}
    if networks.provided is not None:
        declared[networks.provided] = {"name": networks.provided, **driver}
    for network in networks.joined:
        declared[network] = {"external": True}
    return {"default": {}, **dict(sorted(declared.items()))} if declared else {}


def notes(context: Context, networks: Networks) -> list[str]:
    """Given a service, return the paragraphs that explain its compose file to a reader."""
    lines: list[str] = []
    published = any(c.publish for _, c in image_components(context.service))
    if published and context.host.address is None:
        lines.append(
            "Ports are published on 127.0.0.1: the host has no address, so it is the machine "
            "allmende runs on."
        )
    elif published and derive.bind_unsaid(context.host):
        lines.append(
            f"Ports are published on 127.0.0.1 only: the host is reached by the name "
            f"`{context.host.address}` and does not say with `bind:` which of its addresses "
            "they listen on."
        )
    elif published and context.host.bind in ("0.0.0.0", "::"):
        lines.append("Ports are published on every interface of the host, as its `bind` says.")
    if secret_names(context.service):
        lines.append(
            "Secrets are read from ./secrets/<name>, written with mode 0600 when applied; the "
            "inventory and this file only name them."
        )
    return [*lines, *network_notes(context, networks)]


def network_notes(context: Context, networks: Networks) -> list[str]:
    """Given a service's networks, return the paragraphs that name them, and warn of a
    component name that the network makes ambiguous."""
    lines: list[str] = []
    if networks.provided is not None:
        lines.append(
            f"Network {networks.provided}: `{networks.provider}` answers there as "
            f"`{context.name}` to the services on this host that use its databases."
        )
    for network, provider in networks.joined.items():
        lines.append(
            f"Network {network}: made by `{provider}` on this host (deploy that first), where "
            f"it answers as `{provider}`."
        )
        theirs = serving_component(context.inventory.services[provider])
        if theirs in context.service.components:
            lines.append(
                f"Careful: on {network} the name `{theirs}` is also `{provider}`'s database, so "
                f"it may not reach this service's own `{theirs}`: rename that component."
            )
    return lines
