"""Compose projects: ``docker compose``, the older ``docker-compose``, or ``podman-compose``.

==========  ==================================================
runtime     command
==========  ==================================================
docker      ``docker compose -p S -f F up -d`` (``docker-compose`` where the plugin is missing)
podman      ``podman-compose -p S -f F up -d``
==========  ==================================================

``F`` is ``/srv/<service>/compose.yaml``. What runs is read with ``ps -a`` filtered on the
label ``org.allmende.service`` that every rendered container carries.

A changed service that may run twice is started beside the running one first (``beside``): the
same project file as project ``<service>-allmende-next``, from ``/srv/<service>/.allmende-next.
compose.yaml``, its containers labelled with that name and every port published on a port the
host picks, on the same address. A service counts as up
when every component has a running container and none with a health check is ``starting`` or
``unhealthy``. Docker runs health checks itself; podman runs them from systemd timers, which a
host without systemd does not have, so there allmende runs ``podman healthcheck run`` for each
``starting`` check once a second until it settles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from allmende.connectors.base import Connector
from allmende.engines.base import Beside, Command, Commands, Engine, Running, Site
from allmende.engines.containers import COMPOSE_LABELS, has_image, parse_ps, ps
from allmende.inventory.hostpaths import PROJECT_FILES, service_dir
from allmende.render.output import yaml_text

#: The name a service's new version runs under beside the old one: ``<service>`` + this.
BESIDE = "-allmende-next"


class Compose(Engine):
    """Compose projects, one per service."""

    name = "compose"
    project_file = PROJECT_FILES["compose"]
    waits = True

    async def find(self, connector: Connector, runtime: str) -> Site:
        site = await super().find(connector, runtime)
        if runtime == "podman":
            program: Command = ("podman-compose",)
        elif await connector.succeeds(["docker", "compose", "version"]):
            program = ("docker", "compose")
        else:
            program = ("docker-compose",)
        return Site(site.host, runtime, site.root, program)

    def _project(self, site: Site, service: str) -> Command:
        return (*site.program, "-p", service, "-f", site.real(self.project(service)))

    def up(self, site: Site, service: str, secrets: Sequence[str] = ()) -> Commands:
        return ((*self._project(site, service), "up", "-d"),)

    def recreate(self, site: Site, service: str, secrets: Sequence[str] = ()) -> Commands:
        # podman-compose compares only compose.yaml, and no implementation sees a secret or
        # env file replaced on the host: every container is made anew.
        return ((*self._project(site, service), "up", "-d", "--force-recreate"),)

    def down(self, site: Site, service: str) -> Commands:
        return ((*self._project(site, service), "down"),)

    def beside(self, site: Site, service: str, project: bytes) -> Beside | None:
        name = service + BESIDE
        path = f"{service_dir(service)}/.allmende-next.{self.project_file}"
        try:
            document = yaml.safe_load(project)
        except yaml.YAMLError:
            return None
        if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
            return None
        document.pop("name", None)
        for entry in document["services"].values():
            if not isinstance(entry, dict):
                return None
            entry.pop("container_name", None)
            if "ports" in entry:
                entry["ports"] = [_any_port(p) for p in entry["ports"]]
            labels = entry.get("labels")
            if isinstance(labels, dict) and labels.get(COMPOSE_LABELS[0]) == service:
                labels[COMPOSE_LABELS[0]] = name
        content = yaml_text(document).encode()
        command = (*site.program, "-p", name, "-f", site.real(path))
        return Beside(name, path, content, ((*command, "up", "-d"),), ((*command, "down"),))

    def observe(self, site: Site) -> Command:
        return ps(site.runtime, COMPOSE_LABELS[0])

    def parse(self, site: Site, output: bytes) -> dict[str, Running]:
        return parse_ps(output, COMPOSE_LABELS)

    def exec(
        self, site: Site, service: str, component: str, user: str | None, running: Running
    ) -> Command | None:
        # The project's own exec: the container's name is the implementation's business.
        as_user = ("-u", user) if user else ()
        return (*self._project(site, service), "exec", "-T", *as_user, component)

    def has_image(self, site: Site, image: str) -> Command | None:
        return has_image(site.runtime, image)

    def nudge(self, site: Site) -> Command:
        return ("podman", "healthcheck", "run") if site.runtime == "podman" else ()


def _any_port(entry: Any) -> Any:
    """Return a published port of a compose file as the same port inside, published on the
    same address at a port the host picks (``127.0.0.1::80``)."""
    if isinstance(entry, dict):
        return {k: v for k, v in entry.items() if k != "published"}
    text = str(entry)
    address, _, inside = text.rpartition(":")
    if not address:
        return inside
    host_ip = address.rpartition(":")[0] if address.count(":") >= 1 else ""
    if address.startswith("["):  # [::1]:8080
        host_ip = address[: address.index("]") + 1]
    return f"{host_ip}::{inside}" if host_ip else inside


ENGINE = Compose()
