"""Secrets: values that look like passwords, tokens or keys belong in the secret store.

Looked at: every env value (by its name and its shape), the words of ``command`` and of a
command healthcheck (password options, secret assignments, URLs with a password, tokens), and
every text under ``x-compose`` (labels, entrypoints, verbatim environments, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from allmende.checks.registry import Context, Finding, rule
from allmende.inventory.secretlike import in_command, in_text, looks_secret
from allmende.inventory.yamlpos import KeyPath

_COMMAND_KEYS = frozenset({"command", "entrypoint", "test"})


def _verbatim(value: Any, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    """Yield (path, why) for every secret in data kept verbatim: a mapping's value by its key
    as well as its shape, a command's words as a command line, any other text by its shape."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str | int | float) and not isinstance(item, bool):
                why = looks_secret(str(key), str(item))
                if why:
                    yield (*path, key), why
                    continue
            yield from _verbatim(item, (*path, key))
    elif isinstance(value, list):
        if path and path[-1] in _COMMAND_KEYS and all(isinstance(v, str) for v in value):
            for why in in_command(value):
                yield path, why
            return
        for i, item in enumerate(value):
            if isinstance(item, str) and "=" in item and not item.startswith("-"):
                key, _, text = item.partition("=")
                why = looks_secret(key, text) if " " not in key else in_text(item)
            elif isinstance(item, str):
                why = in_text(item)
            else:
                yield from _verbatim(item, (*path, i))
                continue
            if why:
                yield (*path, i), why
    elif isinstance(value, str):
        found = list(in_command([value])) if path and path[-1] in _COMMAND_KEYS else []
        why = found[0] if found else in_text(value)
        if why:
            yield path, why


@rule(
    "secrets.plaintext",
    "error",
    "An inventory is shared in Git: a password written into it is readable by everyone who "
    "ever clones it, forever.",
    "move the value into the secret store: `allmende secret set <name>` and "
    "`secrets: {ENV: <name>}`",
    force=True,
)
def secrets_plaintext(ctx: Context) -> Iterator[Finding]:
    for name, service in sorted(ctx.inventory.services.items()):
        for cname, component in service.components.items():
            base: KeyPath = ("components", cname)
            for key, value in sorted(component.env.items()):
                why = looks_secret(key, value)
                if why:
                    secret = f"{name}/{key.lower().replace('_', '-')}"
                    yield ctx.finding(
                        "service",
                        name,
                        (*base, "env", key),
                        f"plaintext secret: {why}",
                        f"run `{ctx.inventory.command('secret', 'set', secret)}` and write "
                        f"`secrets: {{{key}: {secret}}}` instead of the env value",
                    )
            commands: list[tuple[KeyPath, tuple[str, ...]]] = []
            if component.command is not None:
                commands.append(((*base, "command"), component.command))
            check = component.healthcheck
            if check is not None and check.command is not None:
                commands.append(((*base, "healthcheck", "command"), check.command))
            for path, words in commands:
                for why in dict.fromkeys(in_command(words)):
                    yield ctx.finding(
                        "service",
                        name,
                        path,
                        f"plaintext secret in a command: {why}",
                        "deliver the secret `as: env` under `secrets` and refer to it as "
                        "`${VARIABLE}` in a shell command (`/bin/sh -c ...`)",
                    )
            for path, why in _verbatim(component.extensions, base):
                yield ctx.finding(
                    "service",
                    name,
                    path,
                    f"plaintext secret kept verbatim: {why}",
                    "move the value into the secret store and refer to it by a variable that "
                    "`secrets` delivers",
                )
        for path, why in _verbatim(service.extensions, ()):
            yield ctx.finding(
                "service",
                name,
                path,
                f"plaintext secret kept verbatim: {why}",
                "move the value into the secret store (a compose secret's `file` under "
                "`x-compose` may name a file that is not in the inventory)",
            )


@rule(
    "secrets.stored",
    "error",
    "A secret a component reads must be in the secret store: plan and apply deliver its value "
    "to the host, and without it the service starts without its password or key. The "
    "inventory still loads, so that its docs and picture can be made on a fresh clone.",
    "store the value: `allmende secret set <name>` (it asks for the value; pipe it in without "
    "a terminal)",
)
def secrets_stored(ctx: Context) -> Iterator[Finding]:
    inv = ctx.inventory
    for name, service in sorted(inv.services.items()):
        for cname, component in service.components.items():
            for env, use in sorted(component.secrets.items()):
                if use.secret not in inv.secrets:
                    yield ctx.finding(
                        "service",
                        name,
                        ("components", cname, "secrets", env),
                        f"secret `{use.secret}` is not stored in secrets/",
                        f"run `{inv.command('secret', 'set', use.secret)}`",
                    )
