"""What a database server is asked to provide: roles with passwords, and databases."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

from allmende.inventory.derive import Login


@dataclass(frozen=True)
class Existing:
    """What a server has: each role with its password verifier (empty: none), the databases."""

    roles: Mapping[str, str]
    databases: frozenset[str]


def password_in(value: bytes) -> bytes:
    """Return the password a secret holds: the whole value, or, when the value is a URL with a
    password (``postgres://music:s3cret@database/music``, what many applications read), that
    password (percent-decoded), so one secret serves the application and its role."""
    text = value.decode("utf-8", errors="replace").strip()
    parts = urlsplit(text) if "://" in text else None
    if parts is not None and parts.password is not None:
        return unquote(parts.password).encode()
    return value


def todo(
    existing: Existing | None,
    grants: Sequence[Login],
    databases: Sequence[str],
    passwords: Mapping[str, bytes],
    matches: Callable[[str, bytes], bool],
) -> list[str]:
    """Return what a server lacks, in words (``create role wiki``, ``set the password of
    pad``, ``create database wiki``), in that order: everything when ``existing`` is None (the
    server is not running yet). ``matches(verifier, password)`` says whether a stored verifier
    is that of a password; ``passwords`` are by secret name."""
    words: list[str] = []
    for grant in grants:
        have = None if existing is None else existing.roles.get(grant.role)
        if have is None:
            words.append(f"create role {grant.role}")
        elif not matches(have, passwords[grant.secret]):
            words.append(f"set the password of {grant.role}")
    for database in databases:
        if existing is None or database not in existing.databases:
            words.append(f"create database {database}")
    return list(dict.fromkeys(words))


def owners(grants: Sequence[Login], databases: Sequence[str]) -> dict[str, str | None]:
    """Return each database with the role that owns it: the first that uses it (by role
    name), None for a database nobody uses yet."""
    result: dict[str, str | None] = {d: None for d in databases}
    for grant in sorted(grants, key=lambda g: g.role):
        if result.get(grant.database) is None:
            result[grant.database] = grant.role
    return result


class Server(Protocol):
    """What every database server module offers (see the package's docstring)."""

    #: The user the client runs as inside the container (None: the container's default).
    def user(self, env: Mapping[str, str]) -> str | None: ...

    def client(self, env: Mapping[str, str]) -> tuple[str, ...]: ...

    def listing(self, env: Mapping[str, str]) -> tuple[str, ...]: ...

    def parse(self, output: bytes) -> Existing: ...

    def matches(self, verifier: str, password: bytes) -> bool: ...

    def provision(
        self,
        grants: Sequence[Login],
        owners: Mapping[str, str | None],
        passwords: Mapping[str, bytes],
    ) -> bytes: ...
