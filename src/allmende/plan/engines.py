"""The engine part of a plan: what runs on each host, and what apply will do about it.

Every host has an engine (``compose``, ``swarm``, ``kubernetes``; ``incus`` and ``systemd``
hosts get files only) and a runtime (``docker`` or ``podman``) that says which program drives
it. ``Driver`` turns that into commands, always argument lists run on the host itself:

============  ==========================================  ===============================
engine        docker                                      podman
============  ==========================================  ===============================
compose       ``docker compose -p S -f F up -d``          ``podman-compose -p S -f F up -d``
              (``docker-compose`` without the plugin)
kubernetes    ``kubectl apply -f secrets -f F``           ``podman kube play --replace F``
swarm         ``docker stack deploy -c F S``              (not supported: docker only)
============  ==========================================  ===============================

``F`` is the service's project file on the host (``/srv/<service>/compose.yaml``,
``kubernetes.yaml``, ``stack.yaml``). A service is brought up when any of its files changes or
when the engine shows it is not running (a container exited, a component is missing), so an
apply after a crash or a killed apply converges; a service whose project file is deleted is
brought down first. Services that provide databases come before the services that use them.

The engine's view is read with one command per host: ``ps -a --format json`` filtered on the
label ``org.allmende.service`` that every rendered container carries (compose), or on
``app.kubernetes.io/managed-by=allmende`` (Kubernetes under podman, whose containers carry the
pod's labels), ``kubectl get`` of the Deployments and StatefulSets managed by allmende. Swarm
services are not read: they are brought up when their files change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from allmende.connectors.base import Connector, under
from allmende.errors import UserError
from allmende.inventory.inventory import Inventory
from allmende.plan.changes import Action, Change, sha256
from allmende.plan.deliver import secret_names
from allmende.plan.observe import manifest_hashes
from allmende.plan.proxy import PATHS, show_proc
from allmende.render.output import Rendered

log = logging.getLogger(__name__)

#: The project file of a service, by engine.
PROJECT_FILES = {"compose": "compose.yaml", "kubernetes": "kubernetes.yaml", "swarm": "stack.yaml"}
#: Where HAProxy's files are; a change there means a reload.
PROXY_FILES = ("/etc/haproxy/haproxy.cfg", "/etc/haproxy/certs.list")
UNITS = "/etc/systemd/system/"


@dataclass(frozen=True)
class Running:
    """What the engine shows of one service: each component's state (``running``,
    ``exited`` ...) and health (``healthy``, ``unhealthy``, ``starting`` or empty)."""

    states: Mapping[str, str] = field(default_factory=dict)
    health: Mapping[str, str] = field(default_factory=dict)
    containers: Mapping[str, str] = field(default_factory=dict)

    def missing(self, components: Sequence[str]) -> list[str]:
        """Return the components of ``components`` that do not run, with their state."""
        return [
            f"{c} {self.states[c]}" if c in self.states else f"{c} missing"
            for c in components
            if self.states.get(c) != "running"
        ]


@dataclass(frozen=True)
class Driver:
    """How to drive one host's engine. ``compose`` is the compose command found on the host
    (``docker compose``, ``docker-compose`` or ``podman-compose``)."""

    engine: str
    runtime: str
    compose: tuple[str, ...] = ()
    #: The directory standing in for ``/`` on the host (``Connector.root``): commands name
    #: files where they really are.
    root: str = "/"
    #: The host's name in the inventory (Swarm nodes are labelled with it).
    host: str = ""

    @property
    def drives(self) -> bool:
        """Whether apply runs anything for services on this host."""
        return self.engine in PROJECT_FILES

    def project_file(self, service: str) -> str:
        """Return the host path of a service's project file."""
        return f"/srv/{service}/{PROJECT_FILES[self.engine]}"

    def real(self, path: str) -> str:
        """Return where the host path ``path`` really is (under ``root``)."""
        return under(self.root, path)

    def up(self, service: str, secrets: Sequence[str] = ()) -> tuple[tuple[str, ...], ...]:
        """Return the commands that bring ``service`` to its project file; ``secrets`` are the
        flat names of the secrets it reads (``plan.deliver`` writes their files)."""
        project = self.real(self.project_file(service))
        if self.engine == "compose":
            return ((*self.compose, "-p", service, "-f", project, "up", "-d"),)
        manifest = self.real(f"/srv/{service}/secrets/kubernetes.yaml")
        if self.engine == "kubernetes" and self.runtime == "podman":
            play = ("podman", "kube", "play", "--replace", project)
            if not secrets:
                return (play,)
            # kube play makes a podman secret of each Secret, and will not replace one.
            forget = ("sh", "-c", 'podman secret rm "$@" >/dev/null 2>&1; exit 0', "sh")
            return ((*forget, *secrets), ("podman", "kube", "play", manifest), play)
        if self.engine == "kubernetes":
            files = ("-f", manifest) if secrets else ()
            return (("kubectl", "apply", *files, "-f", project),)
        # Swarm secrets cannot change: each is created once, from its file, under the name
        # the stack gives it (``<service>_<flat name>``).
        create = 'docker secret inspect "$1" >/dev/null 2>&1 || docker secret create "$1" "$2"'
        made = tuple(
            (
                "sh",
                "-c",
                create,
                "sh",
                f"{service}_{flat}",
                self.real(f"/srv/{service}/secrets/{flat}"),
            )
            for flat in secrets
        )
        # The stack places its tasks on the node labelled with the host's name: this one.
        label = (
            "sh",
            "-c",
            'docker node update --label-add "allmende.host=$1" '
            '"$(docker info --format "{{.Swarm.NodeID}}")"',
            "sh",
            self.host,
        )
        deploy = ("docker", "stack", "deploy", "--prune", "-c", project, service)
        return (label, *made, deploy)

    def down(self, service: str) -> tuple[tuple[str, ...], ...]:
        """Return the commands that stop and remove ``service`` (its data stays)."""
        project = self.real(self.project_file(service))
        if self.engine == "compose":
            return ((*self.compose, "-p", service, "-f", project, "down"),)
        if self.engine == "kubernetes":
            if self.runtime == "podman":
                return (("podman", "kube", "down", project),)
            return (("kubectl", "delete", "--ignore-not-found", "-f", project),)
        return (("docker", "stack", "rm", service),)

    def observe(self) -> tuple[str, ...] | None:
        """Return the command that lists what runs, or None where nothing is read."""
        if self.engine == "compose":
            label = "label=org.allmende.service"
            return (self.runtime, "ps", "-a", "--filter", label, "--format", "json")
        selector = "app.kubernetes.io/managed-by=allmende"
        if self.engine == "kubernetes" and self.runtime == "podman":
            return ("podman", "ps", "-a", "--filter", f"label={selector}", "--format", "json")
        if self.engine == "kubernetes":
            kinds = "deployments,statefulsets"
            return ("kubectl", "get", kinds, "-A", "-l", selector, "-o", "json")
        return None


#: The labels that name a container's service and component: compose, then Kubernetes.
COMPOSE_LABELS = ("org.allmende.service", "org.allmende.component")
KUBERNETES_LABELS = ("app.kubernetes.io/part-of", "app.kubernetes.io/name")


def parse_ps(output: bytes, keys: tuple[str, str] = COMPOSE_LABELS) -> dict[str, Running]:
    """Parse ``docker ps``/``podman ps --format json`` (a JSON array, or one object per line)
    into each service's components, by the labels allmende renders (``keys``: the labels of
    the service and of the component)."""
    text = output.decode(errors="replace").strip()
    if not text:
        return {}
    try:
        loaded = json.loads(text)
        rows = loaded if isinstance(loaded, list) else [loaded]
    except ValueError:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    states: dict[str, dict[str, str]] = {}
    health: dict[str, dict[str, str]] = {}
    names: dict[str, dict[str, str]] = {}
    for row in rows:
        labels = row.get("Labels") or {}
        if isinstance(labels, str):  # docker: "a=b,c=d"
            labels = dict(p.split("=", 1) for p in labels.split(",") if "=" in p)
        service = labels.get(keys[0])
        component = labels.get(keys[1])
        if not service or not component:
            continue
        state = str(row.get("State") or "").lower()
        status = str(row.get("Status") or "")
        raw_names = row.get("Names") or []
        name = raw_names[0] if isinstance(raw_names, list) and raw_names else str(raw_names)
        # With several containers of one component, a running one wins.
        if states.get(service, {}).get(component) == "running" and state != "running":
            continue
        states.setdefault(service, {})[component] = state
        names.setdefault(service, {})[component] = name
        for word in ("unhealthy", "healthy", "starting"):
            if f"({word})" in status or f"(health: {word})" in status:
                health.setdefault(service, {})[component] = word
                break
    return {s: Running(states[s], health.get(s, {}), names.get(s, {})) for s in sorted(states)}


def parse_kubectl(output: bytes) -> dict[str, Running]:
    """Parse ``kubectl get ... -o json`` into each service's components: ``running`` when
    every replica is ready."""
    document = json.loads(output or b"{}")
    result: dict[str, dict[str, str]] = {}
    for item in document.get("items", []):
        labels = item.get("metadata", {}).get("labels", {})
        service = labels.get("app.kubernetes.io/part-of")
        component = labels.get("app.kubernetes.io/name")
        if not service or not component:
            continue
        wanted = item.get("spec", {}).get("replicas", 1)
        ready = item.get("status", {}).get("readyReplicas", 0)
        result.setdefault(service, {})[component] = "running" if ready >= wanted else "starting"
    return {s: Running(result[s]) for s in sorted(result)}


async def find_driver(connector: Connector, engine: str, runtime: str) -> Driver:
    """Return the driver of an (opened) host; for docker compose, find out whether the
    plugin is there or only the older ``docker-compose``."""
    if engine != "compose":
        return Driver(engine, runtime, root=connector.root, host=connector.host)
    if runtime == "podman":
        return Driver(engine, runtime, ("podman-compose",), connector.root)
    plugin = await connector.run(["docker", "compose", "version"])
    if plugin.exit == 0:
        return Driver(engine, runtime, ("docker", "compose"), connector.root)
    return Driver(engine, runtime, ("docker-compose",), connector.root)


async def observe_engine(connector: Connector, driver: Driver) -> dict[str, Running] | None:
    """Return what the host's engine runs, by service; None where nothing is read. Raise
    UserError if the engine cannot be asked (not installed, not running)."""
    command = driver.observe()
    if command is None:
        return None
    ran = await connector.run(command)
    if ran.exit != 0:
        said = (ran.stderr or ran.stdout).decode(errors="replace").strip()
        hint = (
            f"install {command[0]} there, or set `runtime:` in the host's file"
            if ran.exit == 127
            else "is it running?"
        )
        raise UserError(
            f"{connector.host}: `{' '.join(command[:2])}` failed (exit {ran.exit}): "
            f"{said[-500:]}; {hint}"
        )
    try:
        if driver.engine == "compose":
            return parse_ps(ran.stdout)
        if driver.runtime == "podman":
            return parse_ps(ran.stdout, KUBERNETES_LABELS)
        return parse_kubectl(ran.stdout)
    except (ValueError, AttributeError, TypeError) as exc:
        raise UserError(
            f"{connector.host}: cannot read what `{' '.join(command[:2])}` answered: {exc}"
        ) from None


def order(inventory: Inventory, services: Sequence[str]) -> list[str]:
    """Return ``services`` with every database provider before the services that use it,
    else by name."""
    rank: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in rank:
            return rank[name]
        service = inventory.services.get(name)
        providers = [] if service is None else [u.database.split("/")[0] for u in service.uses]
        level = 0
        for provider in providers:
            if provider in inventory.services and provider not in seen:
                level = max(level, depth(provider, seen | {name}) + 1)
        rank[name] = level
        return level

    return sorted(services, key=lambda s: (depth(s), s))


def service_of(path: str) -> str | None:
    """Return the service a host path belongs to (``/srv/<service>/...``), else None."""
    parts = PurePosixPath(path).parts
    return parts[2] if len(parts) > 3 and parts[1] == "srv" else None


def engine_actions(
    inventory: Inventory,
    host: str,
    driver: Driver,
    changes: Sequence[Change],
    wanted: Mapping[str, object],
    running: Mapping[str, Running] | None,
    unfinished: Collection[str] = (),
) -> list[Action]:
    """Return the engine actions on ``host``: ``down`` for services whose project file goes,
    then ``up`` (providers first) for services whose files change, that do not run, or whose
    last apply did not finish (``unfinished``: their files are not as the manifest records)."""
    if not driver.drives:
        return []
    changed = {service_of(c.path) for c in changes}
    deleted = {
        service_of(c.path)
        for c in changes
        if c.kind == "delete" and PurePosixPath(c.path).name == PROJECT_FILES[driver.engine]
    }
    actions = [
        Action(host, "down", s, "removed from the inventory", driver.down(s))
        for s in sorted(x for x in deleted if x)
    ]
    here = [
        s for s in order(inventory, list(inventory.services)) if driver.project_file(s) in wanted
    ]
    for service in here:
        if service in changed:
            reason = "its files change"
        elif service in unfinished:
            reason = "the apply that wrote its files did not finish"
        elif running is not None:
            components = [
                name
                for name, c in inventory.services[service].components.items()
                if c.image is not None
            ]
            missing = running.get(service, Running()).missing(components)
            if not missing:
                continue
            reason = "not running: " + ", ".join(missing)
        else:
            continue
        secrets = sorted(secret_names(inventory, service))
        actions.append(Action(host, "up", service, reason, driver.up(service, secrets)))
    return actions


def host_actions(
    host: str,
    changes: Sequence[Change],
    wanted: Mapping[str, object],
    proxy_running: bool | None,
    systemd: bool,
) -> list[Action]:
    """Return the proxy and systemd actions on ``host``: start HAProxy where it is wanted and
    no master answers, reload it when its files change; reload systemd when units change on
    a host that runs systemd."""
    actions: list[Action] = []
    if PROXY_FILES[0] in wanted:
        if proxy_running is False:
            actions.append(Action(host, "start-proxy", "haproxy", "no HAProxy master answers"))
        elif any(c.path in PROXY_FILES for c in changes):
            actions.append(Action(host, "reload-proxy", "haproxy", "its configuration changes"))
    units = sorted(PurePosixPath(c.path).name for c in changes if c.path.startswith(UNITS))
    if units and systemd:
        timers = tuple(
            PurePosixPath(p).name
            for p in sorted(wanted)
            if p.startswith(UNITS) and p.endswith(".timer")
        )
        gone = tuple(
            PurePosixPath(c.path).name
            for c in changes
            if c.kind == "delete" and c.path.startswith(UNITS) and c.path.endswith(".timer")
        )
        if gone:  # a "down": run before the unit files go
            disable = (("systemctl", "disable", "--now", *gone),)
            actions.append(Action(host, "down", "timers", "their services left", disable))
        commands: tuple[tuple[str, ...], ...] = (("systemctl", "daemon-reload"),)
        if timers:
            commands += (("systemctl", "enable", "--now", *timers),)
        actions.append(
            Action(host, "reload-systemd", "units", "units change: " + ", ".join(units), commands)
        )
    return actions


def unrecorded(manifest: bytes | None, host: str, wanted: Mapping[str, Rendered]) -> set[str]:
    """Return the services with a file whose wanted hash is not the one the manifest records
    (apply writes the manifest last: such a service's files may be in place while the apply
    that wrote them died before bringing it up). A host without a manifest has none."""
    if manifest is None:
        return set()
    recorded = manifest_hashes(manifest, host)
    return {
        service
        for path, rendered in wanted.items()
        if (service := service_of(path)) and recorded.get(path) != sha256(rendered.content)
    }


async def has_systemd(connector: Connector) -> bool:
    """Return whether the host runs systemd (``/run/systemd/system`` exists there)."""
    return (await connector.run(["test", "-d", "/run/systemd/system"])).exit == 0


async def plan_actions(
    connector: Connector,
    inventory: Inventory,
    changes: Sequence[Change],
    wanted: Mapping[str, Rendered],
    manifest: bytes | None,
    service: str | None = None,
) -> list[Action]:
    """Return every action apply takes on the (opened) host after its file ``changes``,
    reading the engine and the proxy where they matter (only ``service``'s if given); the
    host's ``manifest`` tells which services an unfinished apply left. Raise UserError if the
    engine cannot be asked."""
    host = connector.host
    model = inventory.hosts[host]
    driver = await find_driver(connector, model.engine, model.runtime)
    actions: list[Action] = []
    if driver.drives:
        projects = [p for p in wanted if PurePosixPath(p).name == PROJECT_FILES[driver.engine]]
        leaving = [c for c in changes if c.kind == "delete" and service_of(c.path)]
        running = await observe_engine(connector, driver) if projects or leaving else None
        unfinished = unrecorded(manifest, host, wanted)
        actions += engine_actions(inventory, host, driver, changes, wanted, running, unfinished)
    if service is not None:
        return [a for a in actions if a.subject == service]
    proxy: bool | None = None
    if PROXY_FILES[0] in wanted:
        proxy = await show_proc(connector, PATHS) is not None
    systemd = any(c.path.startswith(UNITS) for c in changes) and await has_systemd(connector)
    return actions + host_actions(host, changes, wanted, proxy, systemd)
