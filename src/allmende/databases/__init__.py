"""The database servers allmende provisions, one module each with one ``SERVER`` of the same
shape (``roles.Server``).

``client(env)`` is how the SQL client runs as the server's superuser inside the provider's
container (the container's own configuration says who that is), ``listing(env)`` the command
that prints each role with its password verifier and each database, ``parse`` reads it,
``matches(verifier, password)`` compares, and ``provision(grants, owners, passwords)`` is the SQL
sent on standard input. Pure: argument lists and bytes, no I/O.

The SQL carries password *verifiers*, never the passwords: a SCRAM-SHA-256 verifier for
PostgreSQL, the ``mysql_native_password`` hash for MariaDB and MySQL. A role whose stored
verifier matches its secret needs nothing, so a second apply changes nothing, and a password
changed in the store is set again at the next apply. Nothing is ever dropped.
"""

from __future__ import annotations

from allmende.databases import mariadb, postgres
from allmende.databases.roles import Server

#: Each database kind allmende provisions, by the name ``provides.database`` uses.
SERVERS: dict[str, Server] = {
    "postgres": postgres.SERVER,
    "mariadb": mariadb.SERVER,
    "mysql": mariadb.SERVER,
}


def server(kind: str) -> Server | None:
    """Return how to provision a database kind, or None where allmende provisions nothing
    (redis, sqlite)."""
    return SERVERS.get(kind)
