"""The configuration files a service's components carry (``files/<service>/...`` in the
inventory), as the engines that hand them over as files on the host lay them out."""

from __future__ import annotations

import hashlib

from allmende.inventory.carried import executable, under
from allmende.inventory.hostpaths import carried_file
from allmende.inventory.inventory import Inventory
from allmende.inventory.models import Component


def carried_files(inventory: Inventory, service: str) -> dict[str, tuple[bytes, int]]:
    """Return the configuration files a service's components carry, by where they lie on the
    host (``/srv/<service>/files/<path>``): content and mode (0755 for an executable file)."""
    found: dict[str, tuple[bytes, int]] = {}
    for component in inventory.services[service].components.values():
        for source in sources(component):
            for relative, content in under(inventory.carried, service, source).items():
                mode = 0o755 if executable(inventory, service, relative) else 0o644
                found[carried_file(service, relative)] = (content, mode)
    return found


def sources(component: Component) -> list[str]:
    """Return what a component carries under ``files/<service>/``: its files and the sources
    its image is built from."""
    found = [file.source for file in component.files.values()]
    return found + ([component.build.context] if component.build is not None else [])


def carried_digest(inventory: Inventory, service: str, component: Component) -> str | None:
    """Return a digest of what a component's carried files and build sources hold (None: it
    carries none), so that a changed file makes Compose create the container anew."""
    if not component.files and component.build is None:
        return None
    h = hashlib.sha256()
    targets = [(target, file.source) for target, file in component.files.items()]
    if component.build is not None:
        targets.append(("build", component.build.context))
    for target, source in sorted(targets):
        for relative, content in sorted(under(inventory.carried, service, source).items()):
            runs = "x" if executable(inventory, service, relative) else "-"
            h.update(f"{target}\0{relative}\0{runs}\0".encode() + content)
    return h.hexdigest()[:16]


def carried_mounts(service: str, component: Component) -> list[str]:
    """Return the bind mounts of a component's carried files as ``volume_mounts`` writes them."""
    return [
        f"{carried_file(service, file.source)}:{target}" + (":ro" if file.read_only else "")
        for target, file in sorted(component.files.items())
    ]


def swarm_configs(
    inventory: Inventory, service: str, component: Component
) -> dict[str, tuple[str, str, int]]:
    """Return the Swarm configs of a component's carried files: config name -> (file beside
    the stack, path inside, mode there: 0555 for an executable file, else 0444). A config
    cannot change, so its name holds a digest of what it holds: a changed file is a new
    config, which ``docker stack deploy`` rolls out."""
    found: dict[str, tuple[str, str, int]] = {}
    for target, file in sorted(component.files.items()):
        for relative, content in sorted(under(inventory.carried, service, file.source).items()):
            inside = relative.removeprefix(file.source.strip("/")).strip("/")
            digest = hashlib.sha256(content).hexdigest()[:12]
            stem = "".join(c if c.isalnum() else "-" for c in relative)[-40:].strip("-")
            path = f"{target.rstrip('/')}/{inside}" if inside else target
            mode = 0o555 if executable(inventory, service, relative) else 0o444
            found[f"{service}_{stem}_{digest}"] = (f"./files/{relative}", path, mode)
    return found
