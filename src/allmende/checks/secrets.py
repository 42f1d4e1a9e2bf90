"""Secrets: values that look like passwords, tokens or keys belong in the secret store."""

from __future__ import annotations

from collections.abc import Iterator

from allmende.checks.registry import Context, Finding, rule
from allmende.inventory.secretlike import looks_secret


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
