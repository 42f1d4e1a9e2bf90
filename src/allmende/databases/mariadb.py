"""MariaDB and MySQL: the ``mariadb`` (else ``mysql``) client as root inside the container.

The root password is the container's own: ``MARIADB_ROOT_PASSWORD``/``MYSQL_ROOT_PASSWORD`` or
the file their ``_FILE`` variants name (the official images' convention), handed to the client
in ``MYSQL_PWD``, never on a command line; without one, root logs in over the local socket
(Debian's packaging). Roles are ``'<role>'@'%'`` with the ``mysql_native_password`` hash, made
here, so no password is sent to the server; on MySQL 8.4 and later that plug-in must be enabled
(``--mysql-native-password=ON``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from allmende.databases.roles import Existing
from allmende.inventory.derive import Login

#: Runs the client as root with the container's root password, if it has one; the SQL client
#: arguments follow.
CLIENT = (
    'p="${MARIADB_ROOT_PASSWORD:-$MYSQL_ROOT_PASSWORD}"; '
    'f="${MARIADB_ROOT_PASSWORD_FILE:-$MYSQL_ROOT_PASSWORD_FILE}"; '
    '[ -n "$f" ] && p="$(cat "$f")"; '
    "c=$(command -v mariadb || command -v mysql); "
    'if [ -n "$p" ]; then MYSQL_PWD="$p" exec "$c" -uroot "$@"; fi; exec "$c" -uroot "$@"'
)


def literal(text: str) -> str:
    """Return ``text`` as an SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def identifier(name: str) -> str:
    """Return ``name`` as a quoted identifier."""
    return "`" + name.replace("`", "``") + "`"


def native_hash(password: bytes) -> str:
    """Return the ``mysql_native_password`` hash: ``*`` and SHA1(SHA1(password)) in hex."""
    return "*" + hashlib.sha1(hashlib.sha1(password).digest()).hexdigest().upper()


class MariaDB:
    """MariaDB and MySQL (see the module docstring)."""

    def user(self, env: Mapping[str, str]) -> str | None:
        return None

    def client(self, env: Mapping[str, str]) -> tuple[str, ...]:
        return ("sh", "-c", CLIENT, "sh", "--batch", "--skip-column-names")

    def listing(self, env: Mapping[str, str]) -> tuple[str, ...]:
        query = (
            "SELECT 'role', User, authentication_string FROM mysql.user WHERE Host = '%' "
            "UNION ALL SELECT 'database', SCHEMA_NAME, '' FROM information_schema.SCHEMATA"
        )
        return (*self.client(env), "-e", query)

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
        return hmac.compare_digest(stored.encode(), native_hash(password).encode())

    def provision(
        self,
        grants: Sequence[Login],
        owners: Mapping[str, str | None],
        passwords: Mapping[str, bytes],
    ) -> bytes:
        lines: list[str] = []
        for database in sorted(owners):
            lines.append(f"CREATE DATABASE IF NOT EXISTS {identifier(database)};")
        for grant in sorted({g.role: g for g in grants}.values(), key=lambda g: g.role):
            user = f"{literal(grant.role)}@'%'"
            hashed = literal(native_hash(passwords[grant.secret]))
            lines.append(f"CREATE USER IF NOT EXISTS {user} IDENTIFIED BY PASSWORD {hashed};")
            lines.append(f"ALTER USER {user} IDENTIFIED BY PASSWORD {hashed};")
        for grant in sorted(grants, key=lambda g: (g.database, g.role)):
            user = f"{literal(grant.role)}@'%'"
            lines.append(f"GRANT ALL PRIVILEGES ON {identifier(grant.database)}.* TO {user};")
        return ("\n".join(lines) + "\n").encode()


SERVER = MariaDB()
