"""Secret names as the engines know them."""

from __future__ import annotations


def flat_name(secret: str) -> str:
    """Given a secret name such as ``music/django-secret``, return the name engines know it by:
    ``music-django-secret`` (slashes become dashes; Compose, Swarm and Kubernetes all accept
    that, none accepts a slash)."""
    return secret.replace("/", "-")
