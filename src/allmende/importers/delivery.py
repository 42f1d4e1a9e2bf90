"""How each secret an import moves reaches its program, chosen per secret.

A secret is delivered as a file named by ``<VARIABLE>_FILE`` (``as: file``) only where the
image is known to read that variable so: the official images in ``FILE_VARIABLES``, whose
entrypoints read ``<VARIABLE>_FILE`` for exactly the variables listed. Every other secret is
delivered as the variable itself (``as: env``, from a 0600 env file beside the project), as the
original passed it: an image that does not read ``_FILE`` would otherwise lose the value
(Gitea, for one, reads ``GITEA__section__KEY__FILE``, with a double underscore). A variable
that the component's own command or healthcheck refers to (``$MYSQL_ROOT_PASSWORD``) stays a
variable too, or that command would find it empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from allmende.inventory.images import qualified, repository

_POSTGRES = frozenset({"POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB"})
_POSTGRES |= {"POSTGRES_INITDB_ARGS"}
_MYSQL = frozenset(
    {"MYSQL_ROOT_PASSWORD", "MYSQL_PASSWORD", "MYSQL_USER", "MYSQL_DATABASE", "MYSQL_ROOT_HOST"}
)
_MARIADB = _MYSQL | {
    "MARIADB_ROOT_PASSWORD",
    "MARIADB_PASSWORD",
    "MARIADB_USER",
    "MARIADB_DATABASE",
    "MARIADB_ROOT_HOST",
    "MARIADB_REPLICATION_PASSWORD",
    "MARIADB_PASSWORD_HASH",
    "MARIADB_ROOT_PASSWORD_HASH",
    "MYSQL_REPLICATION_PASSWORD",
}
_WORDPRESS_KEYS = {
    f"WORDPRESS_{kind}_{what}"
    for kind in ("AUTH", "SECURE_AUTH", "LOGGED_IN", "NONCE")
    for what in ("KEY", "SALT")
}

#: Official images (``docker.io/library/<name>``) and the variables whose ``<VARIABLE>_FILE``
#: their entrypoints read: the table behind every ``as: file`` an import writes.
FILE_VARIABLES: dict[str, frozenset[str]] = {
    "postgres": _POSTGRES,
    "mariadb": _MARIADB,
    "mysql": _MYSQL,
    "mongo": frozenset({"MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD"}),
    "nextcloud": frozenset(
        {
            *("NEXTCLOUD_ADMIN_USER", "NEXTCLOUD_ADMIN_PASSWORD", "MYSQL_DATABASE", "MYSQL_USER"),
            *("MYSQL_PASSWORD", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"),
            *("REDIS_HOST_PASSWORD", "SMTP_PASSWORD", "OBJECTSTORE_S3_KEY"),
            *("OBJECTSTORE_S3_SECRET", "OBJECTSTORE_SWIFT_PASSWORD"),
        }
    ),
    "wordpress": frozenset(
        {
            *("WORDPRESS_DB_HOST", "WORDPRESS_DB_USER", "WORDPRESS_DB_PASSWORD"),
            *("WORDPRESS_DB_NAME", *_WORDPRESS_KEYS),
        }
    ),
}
_OFFICIAL = re.compile(r"^docker\.io/library/(?P<name>[a-z0-9._-]+)$")


def official(image: str | None) -> str | None:
    """Return the name of an official image (``postgres:16.4``, ``docker.io/library/mariadb``),
    or None for any other image."""
    if not image:
        return None
    match = _OFFICIAL.match(repository(qualified(image)))
    return match.group("name") if match else None


def referenced(variable: str, texts: Iterable[str]) -> bool:
    """Whether any text refers to the variable (``$NAME`` or ``${NAME...}``)."""
    pattern = re.compile(r"\$\{?" + re.escape(variable) + r"(?![A-Za-z0-9_])")
    return any(pattern.search(text) for text in texts)


def choose(image: str | None, variable: str, texts: Iterable[str]) -> tuple[str, str]:
    """Given a component's image, a variable holding a secret and the texts of its command and
    healthcheck, return (``file`` or ``env``, why), as the module's text says."""
    name = official(image)
    if name is None or variable not in FILE_VARIABLES.get(name, frozenset()):
        return "env", "as the variable itself: the image is not known to read a file for it"
    if referenced(variable, texts):
        return "env", "as the variable itself: its command or healthcheck refers to it"
    return "file", f"as a file named by {variable}_FILE, which the official {name} image reads"
