"""Values that look like passwords, tokens or keys, by their name and by their shape.

``looks_secret`` judges one variable (name and value); ``in_text`` finds secrets inside a
longer text such as a command line or a label (a URL with a password anywhere in it, an
``Authorization: Bearer ...`` value, ``--password=...``, ``-p...`` of the MySQL clients,
``PGPASSWORD=...``). A value that only refers to a variable (``$DB_PASSWORD``) is no secret.

Randomness alone is a weak sign: a value is taken for a random token by its shape only when it
is one word of token characters (letters, digits, ``-_+/=``) with both letters and digits, so
that lists (``BUTTON_ORDER=YOUTUBE,TWITCH,...``) and sentences are not.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence

_SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL"
    r"|AUTH_?KEY|SALT|_PASS$|^PASS$|_PWD$|^PWD_|_PWD_|_KEY$|^KEY$)",
    re.IGNORECASE,
)
_NOT_A_VALUE = re.compile(r"(_FILE|_PATH|_LENGTH|_EXPIRY|_TTL|_URL|_NAME|_USER)$", re.IGNORECASE)
_TOKEN_SHAPES = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\bgh[pousr]_[A-Za-z0-9]{20,}|\bglpat-[A-Za-z0-9_-]{10,}"
    r"|\bxox[abps]-[A-Za-z0-9-]{10,}|\bsk_live_[A-Za-z0-9]{10,}|\bAKIA[0-9A-Z]{16}\b"
    r"|\bAGE-SECRET-KEY-1"
)
_AUTHORIZATION = re.compile(r"\b(?:Bearer|Basic|Token)\s+(?P<value>[A-Za-z0-9._~+/=-]{8,})")
#: A URL with a password, anywhere in a text (`` mongodb://root:pw@db``, ``--uri=redis://:pw@r``).
_URL_PASSWORD = re.compile(
    r"\b[a-z][a-z0-9+.-]*://[^/@:\s'\"]*:(?P<value>[^/@\s'\"]+)@", re.IGNORECASE
)
#: Options of command lines that take a password (``--password=x``, ``--password x``).
_PASSWORD_OPTION = re.compile(r"^--?(?:password|passwd|pass|token|secret)$", re.IGNORECASE)
_PASSWORD_ASSIGNED = re.compile(
    r"^--?(?:password|passwd|pass|token|secret)=(?P<value>.+)$", re.IGNORECASE
)
#: Programs whose ``-p<password>`` (written without a space) is a password.
_MYSQL_CLIENTS = frozenset({"mysql", "mysqladmin", "mysqldump", "mariadb", "mariadb-admin"})
_MYSQL_CLIENTS |= {"mariadb-dump", "mariadb-check", "mysqlcheck"}
_ASSIGNMENT = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.+)$")
_HARMLESS = {"", "true", "false", "yes", "no", "on", "off", "none", "null", "changeme?"}
_TOKEN_CHARACTERS = re.compile(r"^[A-Za-z0-9_+/=-]+$")
_VARIABLE = re.compile(r"^\$\{?[A-Za-z_][A-Za-z0-9_]*")


def entropy(text: str) -> float:
    """Return the Shannon entropy of a text in bits per character."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _url_password(text: str) -> bool:
    """Whether a text holds a URL with a literal password (not a ``${VARIABLE}``)."""
    return any(not _VARIABLE.match(m.group("value")) for m in _URL_PASSWORD.finditer(text))


def random_token(value: str) -> bool:
    """Whether a value looks like a random token by its shape alone (see the module's text)."""
    return (
        len(value) >= 32
        and _TOKEN_CHARACTERS.match(value) is not None
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
        and entropy(value) > 4.0
    )


def looks_secret(key: str, value: str) -> str | None:
    """Given an env name and value, return why the value looks like a secret, or None."""
    if _TOKEN_SHAPES.search(value):
        return "looks like a private key or access token"
    if _AUTHORIZATION.search(value):
        return "an Authorization value (Bearer, Basic or Token) with its credentials"
    if _url_password(value):
        return "a URL with a password in it"
    stripped = value.strip()
    if stripped.lower() in _HARMLESS or stripped.startswith(("${", "/", "file:")):
        return None
    if _SECRET_NAME.search(key) and not _NOT_A_VALUE.search(key):
        return f"`{key}` holds a password, token or key"
    if random_token(stripped):
        return "looks like a random token (a long word of mixed letters and digits)"
    return None


def in_text(text: str) -> str | None:
    """Given a text that is not one variable's value (a label, one word of a command), return
    why it holds a secret, or None."""
    if _TOKEN_SHAPES.search(text):
        return "looks like a private key or access token"
    if _AUTHORIZATION.search(text):
        return "an Authorization value (Bearer, Basic or Token) with its credentials"
    if _url_password(text):
        return "a URL with a password in it"
    return None


def _literal(value: str) -> bool:
    """Whether an option's value is written out (not a variable, not empty)."""
    return bool(value) and _VARIABLE.match(value) is None and value.lower() not in _HARMLESS


def in_command(words: Sequence[str]) -> Iterator[str]:
    """Given a command as words (a shell line counts as one word and is split here), yield why
    each secret written into it is one: a password option, a secret-looking assignment, a URL
    with a password or a token."""
    split: list[str] = []
    for word in words:
        split += word.split() if " " in word or "\t" in word else [word]
    program = ""
    for i, word in enumerate(split):
        bare = word.strip("'\"")
        why = in_text(bare)
        if why:
            yield why
            continue
        name = bare.rsplit("/", 1)[-1]
        if name in _MYSQL_CLIENTS:
            program = name
        assigned = _PASSWORD_ASSIGNED.match(bare)
        if assigned and _literal(assigned.group("value").strip("'\"")):
            yield f"`{bare.partition('=')[0]}` with the password written out"
        elif _PASSWORD_OPTION.match(bare) and i + 1 < len(split):
            if _literal(split[i + 1].strip("'\"")):
                yield f"`{bare}` with the password written out"
        elif program and bare.startswith("-p") and len(bare) > 2 and _literal(bare[2:]):
            yield f"`{program} -p` with the password written out"
        else:
            assignment = _ASSIGNMENT.match(bare)
            if (
                assignment
                and _SECRET_NAME.search(assignment.group("key"))
                and looks_secret(assignment.group("key"), assignment.group("value"))
            ):
                yield f"`{assignment.group('key')}=` with the value written out"
