"""Databases: a known database image becomes ``provides``; whoever connects to it, ``uses``.

Known images (official and Bitnami): postgres/postgresql/postgis/pgvector/timescaledb, mariadb,
mysql, redis/valkey, and images with an engine in their name; a server is also known by the
program its entrypoint or command runs, and the one owning the engine's data directory
provides (a backup sidecar on a database image does not: ``server``). The databases a server
offers come from ``POSTGRES_DB``, ``MYSQL_DATABASE``, ``MARIADB_DATABASE`` (and their Bitnami
spellings). A component connects to a database when its environment names the server's host:
``DB_HOST=db`` (the database name from the matching ``DB_NAME``, ``DB_DATABASE``, ...) or a URL
such as
``DATABASE_URL=postgres://user:pass@db:5432/app``. Only clear links become ``uses``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from allmende.errors import Location
from allmende.importers.naming import software
from allmende.importers.result import Connection

ENGINES = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "postgresql-repmgr": "postgres",
    "postgis": "postgres",
    "pgvector": "postgres",
    "timescaledb": "postgres",
    "timescaledb-ha": "postgres",
    "mariadb": "mariadb",
    "mariadb-galera": "mariadb",
    "mysql": "mysql",
    "mysql-server": "mysql",
    "redis": "redis",
    "redis-stack-server": "redis",
    "valkey": "redis",
}
PORTS = {"postgres": ("pg", 5432), "mariadb": ("mysql", 3306), "mysql": ("mysql", 3306)}
PORTS["redis"] = ("redis", 6379)
_NAME_KEYS = {
    "postgres": ("POSTGRES_DB", "POSTGRESQL_DATABASE"),
    "mariadb": ("MARIADB_DATABASE", "MYSQL_DATABASE"),
    "mysql": ("MYSQL_DATABASE",),
    "redis": (),
}
_URL = re.compile(
    r"^(?P<scheme>postgres|postgresql|postgis|mysql|mysql2|mariadb|redis|rediss)(?:\+\w+)?://"
    r"(?:[^@/]*@)?(?P<host>[A-Za-z0-9_.-]+)(?::[0-9]+)?(?:/(?P<db>[^?#]*))?",
    re.IGNORECASE,
)
_HOST_KEY = re.compile(r"^(?P<prefix>.*?)(?:HOSTNAME|HOST|SERVER|ADDR|ADDRESS)$", re.IGNORECASE)
_HOSTNAME = re.compile(r"^[A-Za-z0-9_.-]+(?::[0-9]+)?$")
_SCHEMES = {"postgresql": "postgres", "postgis": "postgres", "mysql2": "mysql", "rediss": "redis"}


#: Where each engine keeps its data inside its official (and Bitnami) images.
DATA_DIRS = {
    "postgres": ("/var/lib/postgresql", "/bitnami/postgresql", "/home/postgres/pgdata"),
    "mariadb": ("/var/lib/mysql", "/bitnami/mariadb"),
    "mysql": ("/var/lib/mysql", "/bitnami/mysql"),
    "redis": ("/data", "/bitnami/redis"),
}
#: The programs that are the server itself, as an entrypoint or command names them.
PROGRAMS = {"postgres": "postgres", "mysqld": "mysql", "mariadbd": "mariadb"}
PROGRAMS |= {"redis-server": "redis", "valkey-server": "redis"}
_IN_NAME: tuple[tuple[str, str], ...] = (("postgres", "postgres"), ("postgis", "postgres"))
_IN_NAME += (("pgvecto", "postgres"), ("mariadb", "mariadb"), ("mysql", "mysql"))
_IN_NAME += (("valkey", "redis"), ("redis", "redis"))


def _words(value: object) -> list[str]:
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value] if isinstance(value, list) else []


def server(image: str | None, compose: Mapping[str, object]) -> tuple[str, int] | None:
    """Given a compose service (and its image), return the database engine it serves and how
    sure that is (higher: surer), or None when it serves none.

    The engine comes from the image's name (a known image, or one with an engine in its name,
    ``pgvector``, ``immich-app/postgres``) or from the program its entrypoint or command runs
    (``postgres``, ``mysqld``, ``redis-server``). A database image whose command runs another
    program and that owns no data directory (a backup sidecar running ``pg_dump``) serves none;
    owning the engine's data directory counts most.
    """
    name = software(image) if image else ""
    found = ENGINES.get(name) or next((e for part, e in _IN_NAME if part in name), None)
    command = _words(compose.get("entrypoint")) + _words(compose.get("command"))
    programs = [PROGRAMS[w.rsplit("/", 1)[-1]] for w in command if w.rsplit("/", 1)[-1] in PROGRAMS]
    found = found or (programs[0] if programs else None)
    if found is None:
        return None
    volumes = compose.get("volumes")
    targets = [
        [*v.split(":"), ""][1] if isinstance(v, str) else str(v.get("target", ""))
        for v in (volumes if isinstance(volumes, list) else [])
        if isinstance(v, str | dict)
    ]
    owns = any(t.startswith(DATA_DIRS[found]) for t in targets)
    runs_other = bool(command) and not programs and not command[0].startswith("-")
    if runs_other and not owns:
        return None
    return found, 2 * owns + (not runs_other)


def offered(name: str, env: Mapping[str, str]) -> list[str]:
    """Given an engine and the server's environment, return the databases it creates."""
    for key in _NAME_KEYS[name]:
        if env.get(key):
            return [env[key]]
    if name == "postgres":
        return [env.get("POSTGRES_USER") or env.get("POSTGRESQL_USERNAME") or "postgres"]
    return []


def _hint(key: str) -> str | None:
    upper = key.upper()
    if "REDIS" in upper or "CACHE" in upper:
        return "redis"
    if "POSTGRES" in upper or "PG" in upper or "PSQL" in upper:
        return "postgres"
    if "MYSQL" in upper or "MARIADB" in upper:
        return "mysql"
    return None


def _sibling(env: Mapping[str, str], prefix: str, redis: bool) -> str | None:
    suffixes = ("DB", "DATABASE") if redis else ("NAME", "DATABASE", "DB", "DBNAME", "DB_NAME")
    for suffix in suffixes:
        for key in (prefix + suffix, prefix + suffix.lower(), prefix + "_" + suffix):
            if env.get(key):
                return env[key]
    return None


def connections(component: str, env: Mapping[str, str], where: Location) -> list[Connection]:
    """Given a component's environment, return every database host it names."""
    found: list[Connection] = []
    for key, value in env.items():
        url = _URL.match(value)
        if url is not None:
            scheme = url.group("scheme").lower()
            kind = _SCHEMES.get(scheme, scheme)
            db = (url.group("db") or "").strip("/") or ("0" if kind == "redis" else None)
            found.append(Connection(component, url.group("host"), db, kind, where))
            continue
        match = _HOST_KEY.match(key)
        if match is None or not _HOSTNAME.match(value):
            continue
        hint = _hint(key)
        db = _sibling(env, match.group("prefix"), hint == "redis")
        if hint == "redis" and db is None:
            db = "0"
        found.append(Connection(component, value.split(":")[0], db, hint, where))
    return found


@dataclass
class Provider:
    """A service offering a database, and the host names its server answers to."""

    service: str
    engine: str
    hosts: frozenset[str]
    databases: list[str] = field(default_factory=list)
    imported: bool = True


def _compatible(hint: str | None, engine_name: str) -> bool:
    if hint is None or hint == engine_name:
        return True
    return {hint, engine_name} <= {"mysql", "mariadb"}


def link(
    service: str, found: Iterable[Connection], providers: list[Provider], local: set[str]
) -> tuple[list[str], list[tuple[Location, str]]]:
    """Given a service's connections, every provider and the service's own component names,
    return (its ``uses`` references, notes on links that are not clear).

    A host that names one of the service's own components is that component (a link only if
    it is the service's own database server); any other host may be another service's.
    """
    uses: list[str] = []
    notes: list[tuple[Location, str]] = []
    for connection in found:
        candidates = [
            p
            for p in providers
            if connection.host in p.hosts and _compatible(connection.engine, p.engine)
        ]
        own = [p for p in candidates if p.service == service]
        chosen = own if own or connection.host in local else candidates
        if len(chosen) != 1:
            continue
        provider = chosen[0]
        db = connection.database
        if db is None and len(provider.databases) == 1:
            db = provider.databases[0]
        if db is None:
            notes.append(
                (
                    connection.location,
                    f"{connection.component} connects to {connection.host}, but which database "
                    "it uses is unclear: add `uses` by hand",
                )
            )
            continue
        if provider.databases and db not in provider.databases:
            if not provider.imported:
                continue
            provider.databases.append(db)
        reference = f"{provider.service}/{db}"
        if reference not in uses:
            uses.append(reference)
    return uses, notes
