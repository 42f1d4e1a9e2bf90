"""Secret names as the engines know them, and where each secret reaches a program.

A component's ``secrets`` map a variable name to a ``SecretUse``: delivered ``as: file`` (a file
at ``path``, default ``/run/secrets/<flat name>``, named by ``<VARIABLE>_FILE``), ``as: env``
(the variable holds the value, from the component's env file ``secrets/<component>.env`` beside
the project) or ``as: path`` (a file at ``path`` and no variable).
"""

from __future__ import annotations

from collections.abc import Iterator

from allmende.inventory.models import Component, SecretUse

#: Where file secrets are mounted unless a use says otherwise.
MOUNT_DIR = "/run/secrets"


def flat_name(secret: str) -> str:
    """Given a secret name such as ``music/django-secret``, return the name engines know it by:
    ``music-django-secret`` (slashes become dashes; Compose, Swarm and Kubernetes all accept
    that, none accepts a slash)."""
    return secret.replace("/", "-")


def mount_path(use: SecretUse) -> str | None:
    """Return where the file of a use is inside the container, or None for ``as: env``."""
    if use.as_ == "env":
        return None
    return use.path or f"{MOUNT_DIR}/{flat_name(use.secret)}"


def file_uses(component: Component) -> Iterator[tuple[str, SecretUse, str]]:
    """Yield (variable, use, path inside) for every use of ``component`` delivered as a file,
    by variable name."""
    for variable, use in sorted(component.secrets.items()):
        path = mount_path(use)
        if path is not None:
            yield variable, use, path


def file_variables(component: Component) -> dict[str, str]:
    """Return ``<VARIABLE>_FILE`` -> path inside, for every use ``as: file``."""
    return {
        f"{variable}_FILE": path
        for variable, use, path in file_uses(component)
        if use.as_ == "file"
    }


def env_secrets(component: Component) -> dict[str, str]:
    """Return variable -> secret name for every use ``as: env``, sorted."""
    return {v: use.secret for v, use in sorted(component.secrets.items()) if use.as_ == "env"}


def env_file(component: str) -> str:
    """Return the env file of a component's ``as: env`` secrets, relative to its service's
    directory: ``secrets/<component>.env``."""
    return f"secrets/{component}.env"
