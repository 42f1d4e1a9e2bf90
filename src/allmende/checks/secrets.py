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
                        f"run `{ctx.inventory.command('secret', 'set', secret)}` and write "
                        f"`secrets: {{{key}: {secret}}}` instead of the env value",
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
