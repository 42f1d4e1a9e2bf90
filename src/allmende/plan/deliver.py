"""What each host gets besides render's files: secret values, and Kubernetes manifests.

Render never holds a secret value. The files that carry one are made here, for plan and apply
only, in memory: the value is decrypted with the age key, hashed to compare it with the host's
file, and written by apply with mode 0600 (``plan.observe.file_mode``: everything under a
``secrets/`` directory). Plans never show their diffs. Where the values go is the host's
engine's choice (``Engine.deliver``):

* compose and swarm hosts: ``/srv/<service>/secrets/<flat name>`` holds the value, the file the
  rendered ``compose.yaml``/``stack.yaml`` names (``./secrets/<flat name>``);
* kubernetes hosts: the secrets go to ``/srv/<service>/secrets/kubernetes.yaml`` as Secret
  objects (``<flat name>``, key ``value``, in the service's namespace), and the manifest render
  wrote to ``kubernetes/<service>.yaml`` goes to ``/srv/<service>/kubernetes.yaml`` on the
  service's host.
"""

from __future__ import annotations

from collections.abc import Mapping

from allmende.engines import engine
from allmende.inventory.inventory import Inventory
from allmende.inventory.secretnames import flat_name
from allmende.inventory.secrets import SecretStore
from allmende.render.output import Rendered


def secret_names(inventory: Inventory, service: str) -> list[str]:
    """Return the flat names of the secrets ``service`` reads, sorted."""
    return list(_secrets(inventory, service))


def _secrets(inventory: Inventory, service: str) -> dict[str, str]:
    """Return a service's secret names by flat name, sorted."""
    names = {
        flat_name(use.secret): use.secret
        for component in inventory.services[service].components.values()
        for use in component.secrets.values()
    }
    return dict(sorted(names.items()))


def secret_files(inventory: Inventory, service: str, store: SecretStore) -> dict[str, Rendered]:
    """Return the secret files of ``service`` on its host, by host path, as its host's engine
    delivers them (none where allmende has no engine for the host). Raise SecretError if a
    value cannot be decrypted."""
    found = engine(inventory.hosts[inventory.services[service].host].engine)
    secrets = _secrets(inventory, service)
    if found is None or not secrets:
        return {}
    return found.deliver(inventory, service, {name: store.get(name) for name in secrets.values()})


def host_files(
    inventory: Inventory,
    files: Mapping[str, Rendered],
    store: SecretStore | None,
    service: str | None = None,
) -> dict[str, Rendered]:
    """Given render's files (``<host>/<path>``, ``kubernetes/<service>.yaml`` ...), return
    them with each Kubernetes manifest moved to its service's host and, with a ``store``, the
    secret files of every service (only ``service`` if given) added, keyed the same way."""
    result: dict[str, Rendered] = {}
    for path, rendered in files.items():
        top, _, rest = path.partition("/")
        if top == "kubernetes" and rest.endswith(".yaml"):
            name = rest.removesuffix(".yaml")
            if name in inventory.services:
                host = inventory.services[name].host
                result[f"{host}/srv/{name}/kubernetes.yaml"] = rendered
                continue
        result[path] = rendered
    if store is not None:
        for name in sorted(inventory.services):
            if service is not None and name != service:
                continue
            host = inventory.services[name].host
            for host_path, rendered in secret_files(inventory, name, store).items():
                result[f"{host}{host_path}"] = rendered
    return dict(sorted(result.items()))


def needs_secrets(inventory: Inventory, hosts: list[str], service: str | None = None) -> bool:
    """Return whether any service on ``hosts`` (only ``service`` if given) reads a secret."""
    return any(
        _secrets(inventory, name)
        for name, s in inventory.services.items()
        if s.host in hosts and (service is None or name == service)
    )
