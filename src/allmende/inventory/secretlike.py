"""Values that look like passwords, tokens or keys, by their name and by their shape."""

from __future__ import annotations

import math
import re
from collections import Counter

_SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL"
    r"|AUTH_?KEY|SALT|_PASS$|^PASS$|_PWD$|^PWD_|_PWD_|_KEY$|^KEY$)",
    re.IGNORECASE,
)
_NOT_A_VALUE = re.compile(r"(_FILE|_PATH|_LENGTH|_EXPIRY|_TTL|_URL|_NAME|_USER)$", re.IGNORECASE)
_TOKEN_SHAPES = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|^gh[pousr]_[A-Za-z0-9]{20,}|^glpat-|^xox[abps]-"
    r"|^sk_live_|^AKIA[0-9A-Z]{16}$|^AGE-SECRET-KEY-1|^(Bearer|Basic|Token)\s+\S{8,}"
)
_URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:\s]*:[^/@\s$]+@", re.IGNORECASE)
_HARMLESS = {"", "true", "false", "yes", "no", "on", "off", "none", "null", "changeme?"}


def entropy(text: str) -> float:
    """Return the Shannon entropy of a text in bits per character."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def looks_secret(key: str, value: str) -> str | None:
    """Given an env name and value, return why the value looks like a secret, or None."""
    if _TOKEN_SHAPES.search(value):
        return "looks like a private key or access token"
    if _URL_PASSWORD.search(value):
        return "a URL with a password in it"
    if value.lower() in _HARMLESS or value.startswith(("${", "/", "file:")):
        return None
    if _SECRET_NAME.search(key) and not _NOT_A_VALUE.search(key):
        return f"`{key}` holds a password, token or key"
    if (
        len(value) >= 32
        and " " not in value
        and "/" not in value
        and "." not in value
        and entropy(value) > 4.0
    ):
        return "looks like a random token"
    return None
