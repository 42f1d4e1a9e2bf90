"""Incus: the instance definitions of every service on an Incus host, and the host's preseed.

For every host on which allmende keeps Incus (``incus_plan.is_incus_host``):

- ``<host>/srv/<service>/incus.yaml``: the service's instances, one per component, each the
  body of Incus's ``POST /1.0/instances`` (``incus query -X POST /1.0/instances --data ...``
  creates it as allmende would);
- ``<host>/etc/allmende/incus/hosts/<container>.yaml``: the same for each container host on it
  that has ``system:`` (the edge's HAProxy container of the art school);
- ``<host>/etc/allmende/incus/preseed.yaml``: the storage pool, bridge and profile, for
  ``incus admin init --preseed`` (which creates them, or brings existing ones to it).

The decisions are ``allmende.render.incus_plan``'s; this module only writes them down, with the
notes of what was left out as comments.
"""

from __future__ import annotations

from allmende.inventory.hostpaths import INCUS_PRESEED, incus_host_file, project_file
from allmende.inventory.inventory import Inventory
from allmende.render import incus_plan
from allmende.render.incus_plan import Instance
from allmende.render.output import Rendered, comments, text, yaml_text

INTRO = (
    "Each instance is the body of Incus's POST /1.0/instances. allmende creates it, changes "
    "it in place (PUT) where Incus allows, and makes it anew (data in volumes kept) when its "
    "image changes; `user.allmende.*` keys record what it ran inside."
)


#: The engine whose services this target renders.
ENGINE = "incus"


def render(inventory: Inventory) -> dict[str, Rendered]:
    """Given an inventory, return the instance definitions and the preseed of every Incus
    host (see the module docstring)."""
    files: dict[str, Rendered] = {}
    for host in incus_plan.incus_hosts(inventory):
        planned = incus_plan.plan(inventory, host)
        preseed = planned.preseed
        owner = inventory.collective.name
        files[f"{host}{INCUS_PRESEED}"] = text(
            yaml_text(preseed.body()), preseed.sources, collective=owner
        )
        for service, instances in sorted(planned.services.items()):
            left = [f"{n}: {why}" for n, why in planned.skipped.items() if n.startswith(service)]
            body = document(instances, left)
            sources = tuple(s for i in instances for s in i.sources) or (
                inventory.file("service", service),
            )
            files[f"{host}{project_file(service, 'incus')}"] = text(body, sources, collective=owner)
        for name, instance in sorted(planned.hosts.items()):
            files[f"{host}{incus_host_file(name)}"] = text(
                document((instance,), []), instance.sources, collective=owner
            )
    return dict(sorted(files.items()))


def document(instances: tuple[Instance, ...], left_out: list[str]) -> str:
    """Return the YAML of some instances, their notes and what was left out as comments."""
    notes = [INTRO, *(n for i in instances for n in i.notes)]
    notes += [f"Left out: {line}" for line in left_out]
    body = {"instances": {i.name: i.body() for i in instances}}
    return comments(notes) + yaml_text(body)
