"""Secrets: values that look like passwords, tokens or keys belong in the secret store."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator

from allmende.checks.registry import Context, Finding, rule

_SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL"
    r"|AUTH_?KEY|SALT|_PASS$|^PASS$|_KEY$|^KEY$)",
    re.IGNORECASE,
)
_NOT_A_VALUE = re.compile(r"(_FILE|_PATH|_LENGTH|_EXPIRY|_TTL|_URL|_NAME|_USER)$", re.IGNORECASE)
_TOKEN_SHAPES = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|^gh[pousr]_[A-Za-z0-9]{20,}|^glpat-|^xox[abps]-"
    r"|^sk_live_|^AKIA[0-9A-Z]{16}$|^AGE-SECRET-KEY-1"
)
_URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:\s]+:[^/@\s$]+@", re.IGNORECASE)
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


@rule(
    "secrets.plaintext",
    "error",
    "An inventory is shared in Git: a password written into it is readable by everyone who "
    "ever clones it, forever.",
    "move the value into the secret store: `allmende secret set <name>` and "
    "`secrets: {ENV: <name>}`",
)
def secrets_plaintext(ctx: Context) -> Iterator[Finding]:
    for name, service in sorted(ctx.inventory.services.items()):
        for cname, component in service.components.items():
            for key, value in sorted(component.env.items()):
                why = looks_secret(key, value)
                if why:
                    secret = f"{name}/{key.lower().replace('_', '-')}"
                    yield ctx.finding(
                        "service",
                        name,
                        ("components", cname, "env", key),
                        f"plaintext secret: {why}",
                        f"run `allmende secret set {secret}` and write "
                        f"`secrets: {{{key}: {secret}}}` instead of the env value",
                    )
