"""The configuration files a service's components carry (``files/<service>/...`` in the
inventory), as the engines that hand them over as files on the host lay them out."""

from __future__ import annotations

import hashlib

from allmende.inventory.carried import under
from allmende.inventory.hostpaths import carried_file
from allmende.inventory.inventory import Inventory
from allmende.inventory.models import Component


def carried_files(inventory: Inventory, service: str) -> dict[str, bytes]:
    """Return the configuration files a service's components carry, by where they lie on the
    host (``/srv/<service>/files/<path>``)."""
    found: dict[str, bytes] = {}
    for component in inventory.services[service].components.values():
        for file in component.files.values():
            for relative, content in under(inventory.carried, service, file.source).items():
                found[carried_file(service, relative)] = content
    return found


def carried_digest(inventory: Inventory, service: str, component: Component) -> str | None:
    """Return a digest of what a component's carried files hold (None: it carries none), so
    that a changed file makes Compose create the container anew."""
    if not component.files:
        return None
    h = hashlib.sha256()
    for target, file in sorted(component.files.items()):
        for relative, content in sorted(under(inventory.carried, service, file.source).items()):
            h.update(f"{target}\0{relative}\0".encode() + content)
    return h.hexdigest()[:16]


def carried_mounts(service: str, component: Component) -> list[str]:
    """Return the bind mounts of a component's carried files as ``volume_mounts`` writes them."""
    return [
        f"{carried_file(service, file.source)}:{target}" + (":ro" if file.read_only else "")
        for target, file in sorted(component.files.items())
    ]


def swarm_configs(
    inventory: Inventory, service: str, component: Component
) -> dict[str, tuple[str, str]]:
    """Return the Swarm configs of a component's carried files: config name -> (file beside
    the stack, path inside). A config cannot change, so its name holds a digest of what it
    holds: a changed file is a new config, which ``docker stack deploy`` rolls out."""
    found: dict[str, tuple[str, str]] = {}
    for target, file in sorted(component.files.items()):
        for relative, content in sorted(under(inventory.carried, service, file.source).items()):
            inside = relative.removeprefix(file.source.strip("/")).strip("/")
            digest = hashlib.sha256(content).hexdigest()[:12]
            stem = "".join(c if c.isalnum() else "-" for c in relative)[-40:].strip("-")
            path = f"{target.rstrip('/')}/{inside}" if inside else target
            found[f"{service}_{stem}_{digest}"] = (f"./files/{relative}", path)
    return found
