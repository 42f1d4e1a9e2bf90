"""The shape every engine has, and what is shared by all of them.

An engine is one module under ``allmende.engines`` (or a plug-in, see ``allmende.engines``)
holding a subclass of ``Engine``: the commands that bring a service up and bring it down, the
command that shows what runs and the parsing of its answer, where a service's secrets are
delivered, and how to wait until a service is healthy. Commands are argument lists run on the
host itself through ``Connector.run``; the engine decides nothing about *whether* to run them
(``plan`` does) and changes nothing itself (``apply`` runs them).

``Driver`` is an engine bound to one host as found there: its runtime (``docker`` or
``podman``), the directory standing in for ``/`` (``Connector.root``), and the program variant
found (``docker compose`` or ``docker-compose``). Plan and apply hold a Driver and never ask
which engine it is.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from allmende.connectors.base import Connector, under
from allmende.errors import SecretError, ToolMissing, UserError
from allmende.inventory.hostpaths import secret_file, service_dir
from allmende.inventory.inventory import Inventory
from allmende.inventory.secretnames import env_file, env_secrets, file_uses, flat_name
from allmende.render.output import Rendered

Command = tuple[str, ...]
Commands = tuple[Command, ...]

#: How long a service may take to run and be healthy after ``up``, in seconds.
HEALTH_TIMEOUT = 120.0


@dataclass(frozen=True)
class Running:
    """What the engine shows of one service: each component's state (``running``,
    ``exited`` ...) and health (``healthy``, ``unhealthy``, ``starting`` or empty), and the
    name of its container where the engine has one."""

    states: Mapping[str, str] = field(default_factory=dict)
    health: Mapping[str, str] = field(default_factory=dict)
    containers: Mapping[str, str] = field(default_factory=dict)
    #: What the engine read of each instance by its name, as the engine has it, for engines
    #: that judge for themselves what differs (``Engine.converge``).
    observed: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: The ports each component's container publishes: port inside -> port on the host.
    ports: Mapping[str, Mapping[int, int]] = field(default_factory=dict)

    def missing(self, components: Sequence[str]) -> list[str]:
        """Return the components of ``components`` that do not run, with their state."""
        return [
            f"{c} {self.states[c]}" if c in self.states else f"{c} missing"
            for c in components
            if self.states.get(c) != "running"
        ]


@dataclass(frozen=True)
class Site:
    """An engine's host as found there: its name in the inventory, its runtime, the directory
    standing in for ``/`` (commands name files where they really are) and the program that
    drives the engine where there is a choice (``docker compose`` or ``docker-compose``)."""

    host: str
    runtime: str
    root: str = "/"
    program: Command = ()
    #: What the engine found the host can do (Incus: its API extensions).
    features: frozenset[str] = frozenset()

    def real(self, path: str) -> str:
        """Return where the host path ``path`` really is (under ``root``)."""
        return under(self.root, path)


@dataclass(frozen=True)
class Step:
    """What bringing one thing (a service, or something the host itself needs) to its files
    takes, as the engine judged it from what runs: ``what`` says it in a line for the plan
    (``change in place: limits.memory``), ``commands`` do it, and ``undo`` puts back what
    they changed when the apply is rolled back (after the files are put back). A Step without
    commands means nothing differs."""

    what: str
    commands: Commands = ()
    undo: Commands = ()


@dataclass(frozen=True)
class Beside:
    """A service's new version run beside the one that serves, under a name of its own, while
    the edge is switched over to it (make-before-break): its project file (at ``path``, with
    ``content``) publishes every port on a port the host picks, and ``up`` and ``down`` start
    and remove it. ``name`` is the service name its containers carry instead."""

    name: str
    path: str
    content: bytes
    up: Commands
    down: Commands


@dataclass(frozen=True)
class Snapshot:
    """One snapshot of one component of a service: its name, when it was taken and when it
    expires (ISO 8601, UTC; None: never)."""

    component: str
    name: str
    created: str
    expires: str | None = None


class Engine:
    """Base of the engines. Subclasses set ``name`` and ``project_file`` and override
    ``up``, ``down``; the rest has defaults for an engine that cannot be observed."""

    #: The engine's name, as hosts say it (``engine: compose``).
    name: ClassVar[str]
    #: The file in ``/srv/<service>/`` that holds a service's project (``compose.yaml``).
    project_file: ClassVar[str]
    #: The runtimes it can be driven with.
    runtimes: ClassVar[tuple[str, ...]] = ("docker", "podman")
    #: Whether apply waits, after ``up``, until the engine shows every component running and
    #: healthy (``wait_healthy``); otherwise ``up`` succeeding is enough and the monitors tell.
    waits: ClassVar[bool] = False

    def project(self, service: str) -> str:
        """Return the host path of a service's project file."""
        return f"{service_dir(service)}/{self.project_file}"

    async def find(self, connector: Connector, runtime: str) -> Site:
        """Return the (opened) host as this engine finds it there. Raise UserError if the
        runtime cannot drive this engine."""
        if runtime not in self.runtimes:
            raise UserError(
                f"{connector.host}: engine {self.name} cannot be driven with runtime {runtime} "
                f"(only {', '.join(self.runtimes)}): change `runtime:` in hosts/"
                f"{connector.host}.yaml"
            )
        return Site(connector.host, runtime, connector.root)

    def up(self, site: Site, service: str, secrets: Sequence[str] = ()) -> Commands:
        """Return the commands that bring ``service`` to its project file; ``secrets`` are the
        flat names of the secrets it reads, as ``deliver`` placed them."""
        raise NotImplementedError

    def recreate(self, site: Site, service: str, secrets: Sequence[str] = ()) -> Commands:
        """Return the commands that bring ``service`` up when its files changed, so that every
        container reads them again (a secret file replaced on the host is a new file the old
        container does not see); by default ``up``."""
        return self.up(site, service, secrets)

    def down(self, site: Site, service: str) -> Commands:
        """Return the commands that stop and remove ``service`` (its data stays)."""
        raise NotImplementedError

    def observe(self, site: Site) -> Command | None:
        """Return the command that lists what runs, or None where nothing is read."""
        return None

    def beside(self, site: Site, service: str, project: bytes) -> Beside | None:
        """Return how to run ``service``'s new version (its project file ``project``, as
        render wants it) beside the running one, or None where this engine cannot: then a
        changed service is stopped before it starts again (or the engine replaces it in its
        own way: a Swarm or Kubernetes rolling update)."""
        return None

    def parse(self, site: Site, output: bytes) -> dict[str, Running]:
        """Return what the ``observe`` command answered, by service. Raise ValueError (or
        KeyError, TypeError, AttributeError) if it cannot be read."""
        return {}

    def secret_paths(self, service: str, flat: str) -> tuple[str, ...]:
        """Return the host paths that carry the secret ``flat`` of ``service``."""
        return (secret_file(service, flat),)

    def deliver(
        self, inventory: Inventory, service: str, values: Mapping[str, bytes]
    ) -> dict[str, Rendered]:
        """Return the files that carry a service's secret ``values`` (by secret name), by host
        path, never readable by others. By default (``deliver_files``): one file per secret
        under ``/srv/<service>/secrets/``, with the owner and mode its uses ask for, and each
        component's ``as: env`` secrets in its env file there."""
        return deliver_files(inventory, service, values)

    def exec(
        self, site: Site, service: str, component: str, user: str | None, running: Running
    ) -> Command | None:
        """Return the command that runs a program (appended) inside ``component`` of
        ``service`` once it runs, with standard input attached, as ``user`` if given;
        ``running`` is what the engine showed of the service (perhaps nothing yet). None where
        this engine cannot (then allmende provisions nothing in it)."""
        return None

    def has_image(self, site: Site, image: str) -> Command | None:
        """Return the probe that exits 0 when ``image`` is on the host, or None where the
        engine gets its images itself (a cluster pulls on its nodes)."""
        return None

    def pull(self, site: Site, image: str) -> Command:
        """Return the command that fetches ``image`` onto the host (see ``has_image``)."""
        return (site.runtime, "pull", image)

    def nudge(self, site: Site) -> Command:
        """Return the command that runs a container's health check when the runtime does not
        run them by itself (the container's name is appended), or () where none is needed."""
        return ()

    async def wait_healthy(
        self,
        connector: Connector,
        site: Site,
        service: str,
        components: Sequence[str],
        timeout: float = HEALTH_TIMEOUT,
    ) -> None:
        """Wait until ``service`` runs and is healthy on the (opened) host (see ``waits``).
        Raise UserError if it does not come up in ``timeout`` seconds or turns unhealthy."""
        if self.waits:
            driver = Driver(self, site)
            await wait_running(connector, driver, service, components, timeout, self.nudge(site))

    # Engines that judge for themselves what differs (Incus): by default, plan decides from
    # the files alone (``up`` when they change or the service does not run).

    def converge(
        self, site: Site, service: str, project: bytes, running: Running | None
    ) -> Step | None:
        """Return what brings ``service`` from what runs (``running``; None where nothing was
        read) to its project file ``project`` (what render wants), or None to let plan decide
        from the files. Raise UserError if it cannot be done on this host."""
        return None

    def owns(self, path: str) -> bool:
        """Return whether a host file outside the services' directories is this engine's own
        (Incus: its preseed and the definitions of containers that are hosts)."""
        return False

    def prepare(
        self,
        site: Site,
        wanted: Mapping[str, bytes],
        changes: Mapping[str, str],
        running: Mapping[str, Running] | None,
    ) -> list[tuple[Literal["prepare", "down"], str, Step]]:
        """Return what the host needs before its services come up, from the engine's own files
        (``owns``): ``wanted`` by path, and how this apply changes them (``changes``: path ->
        ``create``, ``update`` or ``delete``). Each is (verb, subject, Step): ``prepare`` runs
        after the files are in place, ``down`` before. Raise UserError if it cannot be done on
        this host."""
        return []

    def reach(self, parent: Connector, host: str) -> Connector | None:
        """Return a connector to the container ``host`` that runs on the (not yet opened)
        host ``parent`` under this engine, or None where this engine cannot reach into it."""
        return None

    # Snapshots, for engines that keep them (Incus); by default an engine keeps none.

    def list_snapshots(self, site: Site, service: str, components: Sequence[str]) -> Commands:
        """Return the commands whose output lists the snapshots of a service's components,
        one command per component; () where this engine keeps no snapshots."""
        return ()

    def parse_snapshots(
        self, site: Site, service: str, outputs: Mapping[str, bytes]
    ) -> list[Snapshot]:
        """Return the snapshots the ``list_snapshots`` commands answered (by component),
        oldest first. Raise ValueError if they cannot be read."""
        return []

    def snapshot(self, site: Site, service: str, component: str, name: str) -> Commands:
        """Return the commands that take the snapshot ``name`` of a component."""
        raise UserError(f"{site.host}: engine {self.name} keeps no snapshots")

    def restore(self, site: Site, service: str, component: str, name: str) -> Commands:
        """Return the commands that bring a component back to its snapshot ``name``."""
        raise UserError(f"{site.host}: engine {self.name} keeps no snapshots")

    def forget(self, site: Site, service: str, component: str, name: str) -> Commands:
        """Return the commands that delete a component's snapshot ``name``."""
        raise UserError(f"{site.host}: engine {self.name} keeps no snapshots")


def deliver_files(
    inventory: Inventory, service: str, values: Mapping[str, bytes]
) -> dict[str, Rendered]:
    """Return a service's secret files as compose and swarm read them (see ``Engine.deliver``).
    Raise SecretError for a value an env file cannot carry, UserError for one secret given to
    two components with different owners or modes."""
    source = inventory.file("service", service)
    files: dict[str, Rendered] = {}
    for cname, component in sorted(inventory.services[service].components.items()):
        for _, use, _ in file_uses(component):
            mode = use.mode if use.mode is not None else 0o600
            owner = (use.uid or 0, use.gid or 0) if (use.uid, use.gid) != (None, None) else None
            path = secret_file(service, flat_name(use.secret))
            made = Rendered(values[use.secret], (source, f"secrets/{use.secret}.age"), mode, owner)
            if path in files and (files[path].mode, files[path].owner) != (mode, owner):
                raise UserError(
                    f"{source}: the secret `{use.secret}` is given to two components with "
                    "different `uid`, `gid` or `mode`: give them the same, or two secrets"
                )
            files[path] = made
        env = env_secrets(component)
        if env:
            lines = "".join(
                f"{v}={env_value(s, values[s], inventory.command('secret', 'set', s))}\n"
                for v, s in env.items()
            )
            named = (source, *(f"secrets/{s}.age" for s in sorted(set(env.values()))))
            files[f"{service_dir(service)}/{env_file(cname)}"] = Rendered(
                lines.encode(), named, 0o600
            )
    return files


#: What a value in an env file may hold as it is: compose implementations read anything else
#: differently (``$`` is substituted, ``#`` starts a comment, quotes are kept or stripped).
ENV_SAFE = re.compile(r"[A-Za-z0-9_.,:;@%+=/~^!?*()\[\]{}<>|&-]*")
#: What a value may hold between single quotes, which docker-compose (1.26 and later),
#: Docker Compose 2 and podman-compose all read literally: anything but a single quote, a
#: backslash and control characters.
ENV_QUOTABLE = re.compile(r"[^'\\\x00-\x1f\x7f]*")


def env_value(secret: str, value: bytes, setting: str) -> str:
    """Return a secret's value for an env file: as it is, or between single quotes when it
    holds a space, ``$``, ``#`` or a double quote. Raise SecretError if it holds what an env
    file cannot carry the same way to every compose implementation (naming ``setting``, the
    command that sets it, as the user types it)."""
    text = value.decode("utf-8", errors="replace")
    if ENV_SAFE.fullmatch(text):
        return text
    if ENV_QUOTABLE.fullmatch(text):
        return f"'{text}'"
    raise SecretError(
        f"the secret `{secret}` is delivered `as: env`, but its value holds a single quote, "
        "`\\` or a control character, which compose implementations read differently from an "
        f"env file: deliver it `as: file`, or set a value without them (`{setting}`)"
    )


async def observe(connector: Connector, driver: Driver) -> dict[str, Running] | None:
    """Return what the host's engine runs, by service; None where nothing is read. Raise
    UserError if the engine cannot be asked (not installed, not running) or answers what
    cannot be read."""
    command = driver.engine.observe(driver.site)
    if command is None:
        return None
    try:
        ran = await connector.run(command, timeout=120.0)
    except ToolMissing as exc:
        raise ToolMissing(
            f"{exc}: install {command[0]} there, or set `runtime:` in hosts/{connector.host}.yaml",
            host=exc.host,
            argv=exc.argv,
            exit=exc.exit,
        ) from None
    try:
        return driver.engine.parse(driver.site, ran.stdout)
    except (ValueError, AttributeError, TypeError, KeyError) as exc:
        raise UserError(
            f"{connector.host}: cannot read what `{' '.join(command[:2])}` answered: {exc}"
        ) from None


@dataclass(frozen=True)
class Driver:
    """An engine bound to one host (``Site``): what plan and apply hold."""

    engine: Engine
    site: Site

    def project_file(self, service: str) -> str:
        """Return the host path of a service's project file."""
        return self.engine.project(service)

    def up(self, service: str, secrets: Sequence[str] = ()) -> Commands:
        """Return the commands that bring ``service`` up (see ``Engine.up``)."""
        return self.engine.up(self.site, service, secrets)

    def recreate(self, service: str, secrets: Sequence[str] = ()) -> Commands:
        """Return the commands that bring ``service`` up on changed files (see
        ``Engine.recreate``)."""
        return self.engine.recreate(self.site, service, secrets)

    def down(self, service: str) -> Commands:
        """Return the commands that bring ``service`` down (see ``Engine.down``)."""
        return self.engine.down(self.site, service)

    async def running(self, connector: Connector) -> dict[str, Running] | None:
        """Return what runs on the host by service; None where the engine is not read."""
        return await observe(connector, self)

    def converge(self, service: str, project: bytes, running: Running | None) -> Step | None:
        """Return what brings ``service`` to ``project`` (see ``Engine.converge``)."""
        return self.engine.converge(self.site, service, project, running)

    def beside(self, service: str, project: bytes) -> Beside | None:
        """Return how to run a new version beside the old (see ``Engine.beside``)."""
        return self.engine.beside(self.site, service, project)

    async def wait_healthy(
        self,
        connector: Connector,
        service: str,
        components: Sequence[str],
        timeout: float = HEALTH_TIMEOUT,
    ) -> None:
        """Wait until ``service`` is up and healthy (see ``Engine.wait_healthy``)."""
        await self.engine.wait_healthy(connector, self.site, service, components, timeout)


async def wait_running(
    connector: Connector,
    driver: Driver,
    service: str,
    components: Sequence[str],
    timeout: float,
    nudge: Command = (),
) -> None:
    """Poll the engine until every component of ``service`` runs and none with a health check
    is ``starting`` or ``unhealthy``. While one is starting, run ``nudge`` with its container's
    name appended, if given (podman without systemd runs no health checks by itself). Raise
    UserError naming the component that is unhealthy, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        running = (await observe(connector, driver) or {}).get(service, Running())
        missing = running.missing(components)
        sick = [c for c in components if running.health.get(c) == "unhealthy"]
        if sick:
            raise UserError(
                f"{connector.host}: {service}: the health check of {', '.join(sick)} fails"
            )
        starting = [c for c in components if running.health.get(c) == "starting"]
        if not missing and not starting:
            return
        if time.monotonic() > deadline:
            what = ", ".join(missing) or ", ".join(f"{c} still starting" for c in starting)
            raise UserError(
                f"{connector.host}: {service} is not up and healthy {timeout:.0f} s after "
                f"starting it: {what}"
            )
        if nudge and not missing:
            for component in starting:
                name = running.containers.get(component)
                if name:
                    await connector.run([*nudge, name], ok=None)
        await asyncio.sleep(1.0)
