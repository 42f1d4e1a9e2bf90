"""PostgreSQL: ``psql`` as the superuser over the container's local socket.

The superuser is ``POSTGRES_USER`` of the provider's component (the official image's
convention), else ``postgres``; the client runs as the system user ``postgres``, so that both
the official image (local connections trusted) and Debian's packaging (``peer``) let it in.
Passwords are set as SCRAM-SHA-256 verifiers made here (RFC 5802/7677, as PostgreSQL stores
them), so no password is ever sent to the server or logged by it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

from allmende.databases.roles import Existing
from allmende.inventory.derive import Login

#: Iterations of a verifier made here (PostgreSQL's default).
ITERATIONS = 4096


def literal(text: str) -> str:
    """Return ``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def identifier(name: str) -> str:
    """Return ``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _keys(password: bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    client = hmac.new(salted, b"Client Key", "sha256").digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    return hashlib.sha256(client).digest(), server


def verifier(password: bytes, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """Return the SCRAM-SHA-256 verifier of ``password`` as PostgreSQL stores it:
    ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``."""
    salt = os.urandom(16) if salt is None else salt
    stored, server = _keys(password, salt, iterations)
    salt64, stored64, server64 = (base64.b64encode(b).decode() for b in (salt, stored, server))
    return f"SCRAM-SHA-256${iterations}:{salt64}${stored64}:{server64}"


class Postgres:
    """PostgreSQL (see the module docstring)."""

    def user(self, env: Mapping[str, str]) -> str | None:
        return "postgres"

    def client(self, env: Mapping[str, str]) -> tuple[str, ...]:
        superuser = env.get("POSTGRES_USER") or "postgres"
        return ("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", superuser, "-d", "postgres")

    def listing(self, env: Mapping[str, str]) -> tuple[str, ...]:
        query = (
            "SELECT 'role', rolname, coalesce(rolpassword, '') FROM pg_authid "
            "UNION ALL SELECT 'database', datname, '' FROM pg_database"
        )
        return (*self.client(env), "-A", "-t", "-F", "\t", "-c", query)

    def parse(self, output: bytes) -> Existing:
        roles: dict[str, str] = {}
        databases: set[str] = set()
        for line in output.decode(errors="replace").splitlines():
            kind, _, rest = line.partition("\t")
            name, _, secret = rest.partition("\t")
            if kind == "role":
                roles[name] = secret
            elif kind == "database":
                databases.add(name)
        return Existing(roles, frozenset(databases))

    def matches(self, stored: str, password: bytes) -> bool:
        try:
            method, _, rest = stored.partition("$")
            counts, _, _ = rest.partition("$")
            iterations, _, salt = counts.partition(":")
            if method != "SCRAM-SHA-256":
                return False
            expected = verifier(password, base64.b64decode(salt), int(iterations))
        except ValueError:
            return False
        return hmac.compare_digest(expected.encode(), stored.encode())

    def provision(
        self,
        grants: Sequence[Login],
        owners: Mapping[str, str | None],
        passwords: Mapping[str, bytes],
    ) -> bytes:
        lines: list[str] = []
        for grant in sorted({g.role: g for g in grants}.values(), key=lambda g: g.role):
            role = literal(grant.role)
            lines.append(
                f"SELECT format('CREATE ROLE %I LOGIN', {role}) "
                f"WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {role})\\gexec"
            )
            secret = literal(verifier(passwords[grant.secret]))
            lines.append(f"ALTER ROLE {identifier(grant.role)} WITH LOGIN PASSWORD {secret};")
        for database, owner in sorted(owners.items()):
            name = literal(database)
            owned = f" OWNER %I', {name}, {literal(owner)}" if owner else f"', {name}"
            lines.append(
                f"SELECT format('CREATE DATABASE %I{owned}) "
                f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {name})\\gexec"
            )
        for grant in sorted(grants, key=lambda g: (g.database, g.role)):
            if owners.get(grant.database) != grant.role:
                lines.append(
                    f"GRANT ALL ON DATABASE {identifier(grant.database)} "
                    f"TO {identifier(grant.role)};"
                )
        return ("\n".join(lines) + "\n").encode()


SERVER = Postgres()
