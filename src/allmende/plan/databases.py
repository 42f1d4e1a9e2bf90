"""Database provisioning in a plan: the roles and databases each provider on a host serves.

For every service on the host that ``provides`` a database kind allmende provisions
(``allmende.databases``), the plan asks the running server which roles (with their password
verifiers) and databases it has, through its engine (``Engine.exec``), and compares with what the
inventory says it serves: ``provides.databases`` and every other service's ``uses`` (role and
password secret from ``inventory.derive.logins``). What is missing or has another password
becomes one ``provision`` action, run by apply right after the provider is up and before the
services that use it; its SQL is made now and travels with the action (never shown). A server
that is not running yet gets everything (the SQL is idempotent). Nothing is ever dropped: a
database the inventory no longer names is said in a ``note``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from allmende.connectors.base import Connector
from allmende.databases import server
from allmende.databases.roles import Existing, Server, owners, password_in, todo
from allmende.engines.base import Driver, Running
from allmende.errors import CommandFailed, UserError
from allmende.inventory import derive
from allmende.inventory.inventory import Inventory
from allmende.plan.changes import Action

#: Databases every server has, never reported as left over.
SYSTEM = frozenset(
    {"postgres", "template0", "template1", "information_schema", "mysql", "performance_schema"}
    | {"sys"}
)


def providers(inventory: Inventory, host: str) -> list[str]:
    """Return the services on ``host`` that provide a database allmende provisions."""
    return [
        name
        for name in derive.services_on(inventory, host)
        if (provides := inventory.services[name].provides) is not None
        and server(provides.database) is not None
    ]


def passwords_needed(inventory: Inventory, hosts: Sequence[str]) -> set[str]:
    """Return the secrets that hold the passwords of the roles providers on ``hosts`` serve."""
    return {
        login.secret
        for host in hosts
        for provider in providers(inventory, host)
        for login in derive.logins(inventory, provider)
    }


async def database_actions(
    connector: Connector,
    driver: Driver,
    inventory: Inventory,
    running: Mapping[str, Running] | None,
    passwords: Mapping[str, bytes],
) -> list[Action]:
    """Return a ``provision`` action for every provider on the (opened) host that lacks a role,
    a password or a database, and ``note`` actions for what allmende cannot or will not do
    there. Raise UserError if a running server cannot be asked what it has."""
    actions: list[Action] = []
    for provider in providers(inventory, connector.host):
        actions += await _provider(connector, driver, inventory, provider, running, passwords)
    return actions


async def _provider(
    connector: Connector,
    driver: Driver,
    inventory: Inventory,
    provider: str,
    running: Mapping[str, Running] | None,
    passwords: Mapping[str, bytes],
) -> list[Action]:
    service = inventory.services[provider]
    assert service.provides is not None
    kind = server(service.provides.database)
    component = derive.provider_component(service)
    if kind is None or component is None:
        return []
    env = dict(service.components[component].env)
    host = connector.host
    state = (running or {}).get(provider, Running())
    prefix = driver.engine.exec(driver.site, provider, component, kind.user(env), state)
    if prefix is None:
        reason = f"engine {driver.engine.name} cannot run commands in its containers yet"
        return [Action(host, "note", provider, f"its databases are not provisioned: {reason}")]
    logins = derive.logins(inventory, provider)
    databases = derive.provided_databases(inventory, provider)
    if not logins and not databases:
        return []
    missing = sorted({login.secret for login in logins} - set(passwords))
    if missing:
        raise UserError(
            f"{host}: {provider}: the passwords of its roles are the secrets "
            f"{', '.join(missing)}, which are not stored "
            f"(`{inventory.command('secret', 'set', missing[0])}`)"
        )
    passwords = {login.secret: password_in(passwords[login.secret]) for login in logins}
    existing = None
    if state.states.get(component) == "running":
        existing = await _existing(connector, provider, (*prefix, *kind.listing(env)), kind)
    words = todo(existing, logins, databases, passwords, kind.matches)
    actions = []
    if words:
        sql = kind.provision(logins, owners(logins, databases), passwords)
        command = (*prefix, *kind.client(env))
        actions.append(Action(host, "provision", provider, ", ".join(words), (command,), input=sql))
    if existing is not None:
        left = sorted(existing.databases - set(databases) - SYSTEM)
        if left:
            said = f"databases no longer in the inventory are kept: {', '.join(left)}"
            actions.append(Action(host, "note", provider, said))
    return actions


async def _existing(
    connector: Connector, provider: str, listing: Sequence[str], kind: Server
) -> Existing:
    """Ask the running server which roles and databases it has."""
    try:
        ran = await connector.run(listing, timeout=60.0, what=f"asking {provider} its roles")
    except CommandFailed as exc:
        raise UserError(
            f"{connector.host}: {provider} runs but does not say which roles and databases it "
            f"has, so they cannot be provisioned: {exc.output or exc}"
        ) from None
    return kind.parse(ran.stdout)
