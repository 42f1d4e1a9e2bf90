"""Check that every name the inventory refers to exists, and say where it is wrong."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

from allmende.errors import Problem
from allmende.inventory import derive
from allmende.inventory.inventory import Inventory, Kind
from allmende.inventory.models import Component, Service
from allmende.inventory.secrets import check_name
from allmende.inventory.validate import closest, did_you_mean
from allmende.inventory.yamlpos import KeyPath, dotted


class _Resolver:
    def __init__(
        self,
        inventory: Inventory,
        unloaded: frozenset[str],
        spoiled: Mapping[str, Collection[KeyPath]],
    ) -> None:
        self.inv = inventory
        self.unloaded = unloaded
        self.spoiled = spoiled
        self.problems: list[Problem] = []
        self.offering = sorted(n for n, s in inventory.services.items() if s.provides is not None)

    def add(self, kind: Kind, name: str, path: KeyPath, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.inv.where(kind, name, path), dotted(path), message, hint))

    def left_out(self, kind: Kind, name: str, path: KeyPath) -> bool:
        """Whether ``path`` (or a key above it) was left out of the named file to salvage it:
        a reference to it is no news."""
        paths = self.spoiled.get(self.inv.file(kind, name), ())
        return any(path[:n] in paths for n in range(1, len(path) + 1))

    def unknown(
        self, kind: Kind, name: str, path: KeyPath, what: str, value: str, known: list[str]
    ) -> None:
        if value in self.unloaded:
            return  # its file did not load; that problem is already reported
        self.add(kind, name, path, f"unknown {what} `{value}`", did_you_mean(value, known, what))

    # ------------------------------------------------------------------ collective

    def collective(self) -> None:
        hosts = sorted(self.inv.hosts)
        edge = self.inv.collective.edge
        for i, host in enumerate(edge.hosts if edge else ()):
            if host not in self.inv.hosts:
                self.unknown("collective", "", ("edge", "hosts", i), "host", host, hosts)
        watcher = self.inv.collective.watch.host
        if watcher is not None and watcher not in self.inv.hosts:
            self.unknown("collective", "", ("watch", "host"), "host", watcher, hosts)
        for domain in self.inv.zones:
            if domain not in self.inv.collective.domains:
                self.add(
                    "zone",
                    domain,
                    (),
                    f"zone `{domain}` is not one of the collective's domains",
                    f"add `{domain}` to `domains` in allmende.yaml, or rename the file",
                )

    # ------------------------------------------------------------------ hosts

    def hosts(self) -> None:
        names = sorted(self.inv.hosts)
        for name, host in sorted(self.inv.hosts.items()):
            if host.parent is not None and host.parent not in self.inv.hosts:
                self.unknown("host", name, ("parent",), "host", host.parent, names)
            if host.parent is None and host.kind in ("vm", "container"):
                self.add(
                    "host",
                    name,
                    ("kind",),
                    f"a {host.kind} needs a `parent`",
                    "add `parent: <host it runs on>`",
                )
            self._incus(name)
        self._cycles()

    def _incus(self, name: str) -> None:
        """A host's ``system:`` makes it an instance of its parent: only for a container whose
        parent runs Incus."""
        host = self.inv.hosts[name]
        parent = self.inv.hosts.get(host.parent) if host.parent else None
        if host.system is not None and (
            host.kind != "container" or parent is None or parent.engine != "incus"
        ):
            self.add(
                "host",
                name,
                ("system",),
                "only a container on an Incus host is made by allmende",
                "remove `system:`, or make it `kind: container` with a `parent` whose engine "
                "is incus",
            )

    def _cycles(self) -> None:
        reported: set[str] = set()
        for start in sorted(self.inv.hosts):
            chain = [start]
            current = self.inv.hosts[start].parent
            while current is not None and current in self.inv.hosts:
                if current in chain:
                    cycle = chain[chain.index(current) :]
                    if not reported & set(cycle):
                        reported.update(cycle)
                        loop = " -> ".join([*cycle, current])
                        self.add(
                            "host",
                            current,
                            ("parent",),
                            f"hosts are their own parents: {loop}",
                            "a host's parent must be the machine it runs on",
                        )
                    break
                chain.append(current)
                current = self.inv.hosts[current].parent

    # ------------------------------------------------------------------ services

    def services(self) -> None:
        people = sorted(self.inv.collective.people)
        hosts = sorted(self.inv.hosts)
        for name, service in sorted(self.inv.services.items()):
            if service.host not in self.inv.hosts:
                self.unknown("service", name, ("host",), "host", service.host, hosts)
            for i, person in enumerate(service.maintainers):
                if person not in self.inv.collective.people:
                    self.unknown("service", name, ("maintainers", i), "person", person, people)
            for component_name, component in service.components.items():
                self.component(name, service, component_name, component)
            self.targets(name, service)
            self.provides(name, service)
            self.uses(name, service)

    def component(self, name: str, service: Service, cname: str, component: Component) -> None:
        base: KeyPath = ("components", cname)
        known = sorted(service.components)
        document = self.inv.documents.get(self.inv.files.get(("service", name), ""))
        for i, dep in enumerate(component.depends_on):
            where: KeyPath = (*base, "depends_on", dep)
            if document is None or (where not in document.values and where not in document.keys):
                where = (*base, "depends_on", i)
            if dep not in service.components:
                self.unknown("service", name, where, "component", dep, known)
            elif dep == cname:
                self.add("service", name, where, "a component cannot depend on itself")
        ports = sorted(component.ports)
        for port in component.publish:
            if port not in component.ports:
                self.add(
                    "service",
                    name,
                    (*base, "publish", port),
                    f"unknown port name `{port}`",
                    did_you_mean(port, ports, "port") or "declare it under `ports` first",
                )
        check = component.healthcheck
        if check is not None:
            for key in ("port", "tcp"):
                value = getattr(check, key)
                if value is not None and value not in component.ports:
                    self.unknown("service", name, (*base, "healthcheck", key), "port", value, ports)
            if check.http is not None and check.port is None and len(component.ports) != 1:
                self.add(
                    "service",
                    name,
                    (*base, "healthcheck", "http"),
                    "which port does the HTTP health check use?",
                    "add `port: <port name>`",
                )
        for env, use in sorted(component.secrets.items()):
            secret = use.secret
            path = (*base, "secrets", env)
            invalid = check_name(secret)
            if invalid:
                self.add("service", name, path, invalid)

    def _target(self, name: str, service: Service, path: KeyPath, target: str) -> None:
        component, port = derive.split_target(target)
        form = "write `<component>.<port name>`"
        if self.left_out("service", name, ("components", component, "ports", port)):
            return
        if component not in service.components:
            match = closest(component, service.components)
            hint = f"did you mean `{match}.{port or '<port name>'}`?" if match else form
            self.add("service", name, path, f"unknown component `{component}`", hint)
        elif not port:
            self.add(
                "service", name, path, "missing the port name", f"write `{component}.<port name>`"
            )
        elif port not in service.components[component].ports:
            known = sorted(service.components[component].ports)
            self.unknown("service", name, path, "port", port, known)

    def targets(self, name: str, service: Service) -> None:
        for i, route in enumerate(service.routes):
            self._target(name, service, ("routes", i, "to"), route.to)
        for i, expose in enumerate(service.expose):
            self._target(name, service, ("expose", i, "to"), expose.to)

    def provides(self, name: str, service: Service) -> None:
        provides = service.provides
        if provides is None:
            return
        component = derive.provider_component(service)
        if component is None:
            self.add(
                "service",
                name,
                ("provides",),
                "which component serves the database?",
                "add `component: <component name>`",
            )
        elif component not in service.components:
            self.unknown(
                "service",
                name,
                ("provides", "component"),
                "component",
                component,
                sorted(service.components),
            )
        elif provides.port and provides.port not in service.components[component].ports:
            self.unknown(
                "service",
                name,
                ("provides", "port"),
                "port",
                provides.port,
                sorted(service.components[component].ports),
            )

    def uses(self, name: str, service: Service) -> None:
        for i, use in enumerate(service.uses):
            path = ("uses", i, "database")
            provider, _, db = use.database.partition("/")
            offering = self.offering
            if not db:
                self.add(
                    "service",
                    name,
                    path,
                    f"`{use.database}` names no database",
                    "write `<service>/<database name>`",
                )
            elif provider not in self.inv.services:
                self.unknown("service", name, path, "service", provider, offering)
            elif self.inv.services[provider].provides is None:
                self.add(
                    "service",
                    name,
                    path,
                    f"service `{provider}` provides no database",
                    did_you_mean(provider, offering, "database service"),
                )
            else:
                declared = self.inv.services[provider].provides.databases  # type: ignore[union-attr]
                if declared is not None and db not in declared:
                    self.add(
                        "service",
                        name,
                        path,
                        f"`{provider}` offers no database `{db}`",
                        did_you_mean(db, declared, "database")
                        or f"add `{db}` to `provides.databases` of {provider}",
                    )


def resolve(
    inventory: Inventory,
    unloaded: frozenset[str] = frozenset(),
    spoiled: Mapping[str, Collection[KeyPath]] | None = None,
) -> Iterator[Problem]:
    """Given a loaded inventory, yield a Problem for every reference that does not resolve.

    Names in ``unloaded`` (hosts and services whose files failed to load) are not reported as
    unknown: their own problems say why they are missing; nor are components and ports left
    out of a file to salvage it (``spoiled``: file -> key paths).
    """
    resolver = _Resolver(inventory, unloaded, spoiled or {})
    resolver.collective()
    resolver.hosts()
    resolver.services()
    yield from resolver.problems
