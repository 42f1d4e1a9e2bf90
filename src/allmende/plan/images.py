"""Images in a plan: every image a service brought up needs is on its host before anything
there is stopped or replaced.

For each service an apply brings up, the plan asks the host whether each of its images (fully
qualified: ``inventory.images.qualified``) is there; each one that is not becomes a ``pull``
action, which apply runs first of all: an image that cannot be had stops the apply with the
image and its registry named, and nothing on the host changed. Engines whose cluster fetches
images on its nodes (kubectl, Swarm) are not asked.
"""

from __future__ import annotations

from collections.abc import Sequence

from allmende.connectors.base import Connector
from allmende.engines.base import Driver
from allmende.inventory import derive
from allmende.inventory.images import qualified
from allmende.inventory.inventory import Inventory
from allmende.plan.changes import Action


def images_of(inventory: Inventory, services: Sequence[str]) -> dict[str, list[str]]:
    """Return each fully qualified image of ``services``' components, with the services that
    run it, sorted."""
    found: dict[str, list[str]] = {}
    for name in services:
        for component in inventory.services[name].components.values():
            if component.image is not None:
                found.setdefault(qualified(component.image), []).append(name)
    return {image: sorted(set(users)) for image, users in sorted(found.items())}


async def pull_actions(
    connector: Connector, driver: Driver, inventory: Inventory, actions: Sequence[Action]
) -> list[Action]:
    """Return a ``pull`` action for every image the services ``actions`` bring up need and the
    (opened) host lacks."""
    ups = [a.subject for a in actions if a.verb in ("up", "replace")]
    pulls = []
    for image, users in images_of(inventory, ups).items():
        probe = driver.engine.has_image(driver.site, image)
        if probe is None or await connector.succeeds(probe):
            continue
        reason = f"not on {connector.host}; {', '.join(users)} needs it"
        pull = (driver.engine.pull(driver.site, image),)
        pulls.append(Action(connector.host, "pull", image, reason, pull))
    return pulls


def not_driven(inventory: Inventory, host: str, engine: str) -> list[Action]:
    """Return the note that the services on a host whose engine allmende cannot drive get
    their files but are not deployed, naming them."""
    names = [n for n in derive.services_on(inventory, host) if inventory.services[n].components]
    if not names:
        return []
    said = (
        f"{', '.join(names)} on {host} are not deployed: allmende cannot drive engine "
        f"{engine} yet (their files, if any, are written)"
    )
    return [Action(host, "note", engine, said)]
