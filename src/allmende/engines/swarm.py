"""Docker Swarm stacks: ``docker stack deploy`` (docker only).

Before the deploy, the node is labelled with the host's name (``allmende.host``, on which the
rendered stack places its tasks), and each secret is created once from its file under the name
the stack gives it (``<service>_<flat name>``): Swarm secrets cannot change. Swarm services are
not read: they are brought up when their files change, and their monitors tell.
"""

from __future__ import annotations

from collections.abc import Sequence

from allmende.engines.base import Commands, Engine, Site
from allmende.inventory.hostpaths import PROJECT_FILES

CREATE_SECRET = 'docker secret inspect "$1" >/dev/null 2>&1 || docker secret create "$1" "$2"'
LABEL_NODE = (
    'docker node update --label-add "allmende.host=$1" '
    '"$(docker info --format "{{.Swarm.NodeID}}")"'
)


class Swarm(Engine):
    """Swarm stacks, one per service."""

    name = "swarm"
    project_file = PROJECT_FILES["swarm"]
    runtimes = ("docker",)

    def up(self, site: Site, service: str, secrets: Sequence[str] = ()) -> Commands:
        label = ("sh", "-c", LABEL_NODE, "sh", site.host)
        made = tuple(
            ("sh", "-c", CREATE_SECRET, "sh", f"{service}_{flat}", site.real(path))
            for flat in secrets
            for path in self.secret_paths(service, flat)
        )
        project = site.real(self.project(service))
        return (label, *made, ("docker", "stack", "deploy", "--prune", "-c", project, service))

    def down(self, site: Site, service: str) -> Commands:
        return (("docker", "stack", "rm", service),)


ENGINE = Swarm()
