"""Compose projects: ``docker compose``, the older ``docker-compose``, or ``podman-compose``.

==========  ==================================================
runtime     command
==========  ==================================================
docker      ``docker compose -p S -f F up -d`` (``docker-compose`` where the plugin is missing)
podman      ``podman-compose -p S -f F up -d``
==========  ==================================================

``F`` is ``/srv/<service>/compose.yaml``. What runs is read with ``ps -a`` filtered on the
label ``org.allmende.service`` that every rendered container carries. A service counts as up
when every component has a running container and none with a health check is ``starting`` or
``unhealthy``. Docker runs health checks itself; podman runs them from systemd timers, which a
host without systemd does not have, so there allmende runs ``podman healthcheck run`` for each
``starting`` check once a second until it settles.
"""

from __future__ import annotations

from collections.abc import Sequence

from allmende.connectors.base import Connector
from allmende.engines.base import Command, Commands, Engine, Running, Site
from allmende.engines.containers import COMPOSE_LABELS, has_image, parse_ps, ps
from allmende.inventory.hostpaths import PROJECT_FILES


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


ENGINE = Compose()
