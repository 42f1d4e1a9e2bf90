"""Names for what an import creates: services by what they offer, ports, volumes, secrets.

A service is named by what it offers (``wordpress`` -> ``blog``): from the project's name when
that is a software's name or already says what it offers, else from the images it runs. Port
names come from well-known port numbers (80 -> ``http``), volume names from the path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from allmende.inventory.models import NAME_PATTERN
from allmende.inventory.software import SOFTWARE, suggestion

_VALID = re.compile(NAME_PATTERN)

#: Directory names that say nothing about what a project offers.
GENERIC = frozenset(
    {
        *("app", "apps", "compose", "config", "deploy", "deployment", "dev", "docker"),
        *("docker-compose", "example", "examples", "files", "infra", "local", "main"),
        *("prod", "production", "project", "server", "service", "services", "src", "srv"),
        *("stack", "stacks", "test", "tests", "ci", "demo", "lite", "default"),
    }
)
#: Functions that support others rather than being what a project offers to people.
SUPPORTING = frozenset({"database", "cache", "proxy", "metrics", "database-admin", "dashboards"})

#: Well-known container ports and the name a port of that number gets.
PORT_NAMES = {
    20: "ftp-data",
    21: "ftp",
    22: "ssh",
    25: "smtp",
    53: "dns",
    67: "dhcp",
    80: "http",
    110: "pop3",
    143: "imap",
    389: "ldap",
    443: "https",
    465: "smtps",
    587: "submission",
    636: "ldaps",
    993: "imaps",
    995: "pop3s",
    1883: "mqtt",
    3000: "http",
    3306: "mysql",
    4190: "sieve",
    5000: "http",
    5432: "pg",
    5672: "amqp",
    6379: "redis",
    8000: "http",
    8080: "http",
    8443: "https",
    9000: "http",
    9090: "http",
    9200: "elasticsearch",
    11211: "memcached",
    27017: "mongo",
}


def sanitize(raw: str, fallback: str = "data") -> str:
    """Given any text, return a valid name: lowercase letters, digits and ``-``."""
    name = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    name = re.sub(r"^[^a-z]+", "", name)
    return name[:63].rstrip("-") or fallback


def valid(name: str) -> bool:
    """Return whether a name is valid for hosts, services, components, ports and volumes."""
    return _VALID.match(name) is not None


def unique(name: str, taken: Iterable[str]) -> str:
    """Return name, or name-2, name-3, ... whichever is not taken."""
    used = set(taken)
    if name not in used:
        return name
    number = 2
    while f"{name}-{number}" in used:
        number += 1
    return f"{name}-{number}"


def software(image: str) -> str:
    """Given an image reference, return the software's name: ``bitnami/postgresql:16`` ->
    ``postgresql``, ``ghcr.io/goauthentik/server:2024`` -> ``server``."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def offered(word: str) -> str | None:
    """Given a project, file or software name, return what it offers, if that is known."""
    whole = suggestion(word)
    if whole is not None and word in SOFTWARE:
        return whole
    for part in re.split(r"[-_.]", word):
        if part in SOFTWARE:
            return SOFTWARE[part]
    return None


def service_names(project: str, stem: str, images: Iterable[str]) -> list[str]:
    """Return candidate service names for a project, best first, each valid and distinct.

    From the project (directory) name when it names a software (``wordpress`` -> ``blog``) or
    is itself specific (``archivio``); then from the file name (``etherpad.yml`` -> ``pad``);
    then from what the images offer, people-facing software before databases and proxies.
    """
    candidates: list[str] = []
    by_project = offered(project)
    if by_project is not None and by_project not in SUPPORTING:
        candidates.append(by_project)
    if project not in GENERIC and not any(p in SOFTWARE for p in re.split(r"[-_.]", project)):
        candidates.append(sanitize(project, ""))
    if stem and not stem.startswith(("compose", "docker-compose")):
        by_stem = offered(stem)
        candidates.append(by_stem if by_stem else sanitize(stem, ""))
    functions = [f for f in (offered(software(i)) for i in images) if f]
    candidates += [f for f in functions if f not in SUPPORTING]
    if by_project is not None:
        candidates.append(by_project)
    candidates += functions
    candidates.append(sanitize(project, "service"))
    seen: list[str] = []
    if valid(project) and project in SOFTWARE:
        candidates.append(project)  # a file already named after its software is merged into
    for name in candidates:
        if name and valid(name) and name not in GENERIC and name not in seen:
            seen.append(name)
    return seen or ["service"]


def port_name(number: int, taken: Iterable[str]) -> str:
    """Given a container port number, return a name for it not yet taken in the component."""
    used = set(taken)
    base = PORT_NAMES.get(number)
    if base is not None and base not in used:
        return base
    if base is not None:
        return unique(f"{base}-{number}", used)
    return unique(f"port-{number}", used)


def secret_name(service: str, env: str) -> str:
    """Given a service and an environment variable, return the secret's name:
    ``blog`` and ``DB_PASSWORD`` give ``blog/db-password``."""
    part = re.sub(r"[^a-z0-9._-]+", "-", env.lower().replace("_", "-")).strip("-._")
    part = re.sub(r"-{2,}", "-", part)
    return f"{service}/{part or 'secret'}"
