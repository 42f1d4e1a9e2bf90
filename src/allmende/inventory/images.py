"""Image references: their tag and digest, and their fully qualified form.

A short reference such as ``postgres:16.4`` means ``docker.io/library/postgres:16.4`` to Docker,
but podman on stock Debian defines no search registries and refuses it ("short-name did not
resolve"). Every engine is therefore given the fully qualified reference.
"""

from __future__ import annotations

import re

#: The registry Docker assumes for a reference without one, and its namespace for official images.
DEFAULT_REGISTRY = "docker.io"
OFFICIAL = "library"


def tag_of(image: str) -> tuple[str | None, str | None]:
    """Given an image reference, return (tag, digest); either is None when absent.

    ``registry:5000/org/app:1.2@sha256:...`` gives ("1.2", "sha256:...").
    """
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rpartition(":")[2] if ":" in last else None
    return tag or None, digest or None


def registry_of(image: str) -> str | None:
    """Return the registry a reference names (``ghcr.io``, ``localhost``, ``host:5000``), or
    None when it names none (Docker Hub is meant)."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def qualified(image: str) -> str:
    """Return the fully qualified reference: ``postgres:16.4`` is
    ``docker.io/library/postgres:16.4``, ``etherpad/etherpad:2.2.5`` is
    ``docker.io/etherpad/etherpad:2.2.5``; one that names its registry is kept as it is."""
    if registry_of(image) is not None:
        return image
    if "/" not in image.partition("@")[0]:
        return f"{DEFAULT_REGISTRY}/{OFFICIAL}/{image}"
    return f"{DEFAULT_REGISTRY}/{image}"


def repository(image: str) -> str:
    """Return the fully qualified reference without its tag or digest:
    ``postgres:latest`` is ``docker.io/library/postgres``."""
    name = qualified(image).partition("@")[0]
    head, slash, last = name.rpartition("/")
    return f"{head}{slash}{last.partition(':')[0]}"


_FULL_VERSION = re.compile(
    r"(?<![0-9])[0-9]+\.[0-9]+"  # 16.4, v2.7.1, 2.10.2-alpine, tg20.3
    r"|(?<![0-9])(?:19|20)[0-9]{2}-?[01][0-9]-?[0-3][0-9](?![0-9])"  # 2024-02-10, 20240210
)
_COMMIT = re.compile(r"(?:^|[-_.])(?:sha-|git-|g)?(?P<hex>[0-9a-f]{7,40})$")


def moving(tag: str) -> bool:
    """Whether a tag says no version a restore could bring back: ``latest``, ``alpine``,
    ``stable``, ``release``, a major version alone (``11``, ``27-apache``). A tag is fixed when
    it holds a version of at least two parts (``16.4``, ``v2.7.1``, ``2.10-alpine``), a date
    (``2024-02-10``) or a commit (``sha-4f8703e``: hexadecimal with a digit and a letter)."""
    if _FULL_VERSION.search(tag):
        return False
    commit = _COMMIT.search(tag)
    if commit is not None:
        digits = commit.group("hex")
        return not (re.search(r"[0-9]", digits) and re.search(r"[a-f]", digits))
    return True
