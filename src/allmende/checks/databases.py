"""Databases: every role a provider creates for a service has its password stored, one
password per role, and the secret it logs in with is delivered the way it reads it."""

from __future__ import annotations

from collections.abc import Iterator

from allmende.checks.registry import Context, Finding, rule
from allmende.inventory import derive


@rule(
    "databases.passwords",
    "error",
    "apply creates each role a service logs in with, with the password in the secret store: "
    "without that secret the role cannot be created, and the service cannot log in.",
    "store the password: `allmende secret set <secret>` (or name another secret with "
    "`password:` in the use)",
)
def databases_passwords(ctx: Context) -> Iterator[Finding]:
    inv = ctx.inventory
    given: dict[tuple[str, str], tuple[str, str]] = {}
    for name, service in sorted(inv.services.items()):
        for index, use in enumerate(service.uses):
            if not use.provision:
                continue
            secret = derive.password_of(name, use)
            path = ("uses", index, "password") if use.password else ("uses", index)
            if secret not in inv.secrets:
                yield ctx.finding(
                    "service",
                    name,
                    path,
                    f"the role `{derive.role_of(use)}` logs in with the secret `{secret}`, "
                    "which is not stored",
                    f"store it: `{inv.command('secret', 'set', secret)}` (the service reads "
                    "the same secret, see its `secrets:`)",
                )
            provider = use.database.partition("/")[0]
            role = (provider, derive.role_of(use))
            other = given.setdefault(role, (secret, name))
            if other[0] != secret:
                yield ctx.finding(
                    "service",
                    name,
                    path,
                    f"the role `{role[1]}` of `{provider}` has the password `{other[0]}` for "
                    f"`{other[1]}` and `{secret}` here: one role has one password",
                    "give this use its own `user:`, or the same `password:`",
                )
