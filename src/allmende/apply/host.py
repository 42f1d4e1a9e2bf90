"""Apply one host's part of a plan, as one transaction: all of it takes, or the host is put back.

On the opened, locked host, in this order:

1. stand-in certificates for every PEM the new ``certs.list`` names and the host lacks
   (``apply.certs``), so that the new HAProxy configuration can be checked and loaded;
2. every file staged beside its target and checked (``apply.files.stage``): a file HAProxy
   rejects, a full disk, a file changed since the plan stop here, and nothing live changed;
3. services removed from the inventory brought down (while their files still exist);
4. the files renamed into place, deletes done, the manifest written (``commit``);
5. what backups need installed where it is missing (``plan.backuptools``: Borg, python3, from
   Debian's packages); systemd reloaded and timers enabled where units changed;
6. each changed or stopped service brought up, providers first, and waited for until it runs
   and its health checks pass (``apply.engines``); then HAProxy started or gracefully reloaded
   through its master socket (last, so that every server it checks already answers);
7. the monitors of every service brought up (and, after a proxy reload, of every service the
   edge serves) run until they pass (``apply.verify``);
8. the watcher (re)started where its plan or unit changed (on a host without systemd: said
   how to start it by hand);
9. the manifest written: only now, so that after an apply that died between 4 and 9 the plan
   still sees the services whose new files never came up.

If any of 4 to 8 fails, the host is rolled back: services new in this apply are brought down,
every file is put back from its previous version (``rollback``), the services that were changed
are brought up again on their previous files, and HAProxy is reloaded with its previous
configuration. The error then says what failed and that the host was rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from allmende.apply.certs import ensure_certificates
from allmende.apply.engines import began, prepare, run_action, undo, wait_up
from allmende.apply.files import Staged, commit, discard, record, rollback, stage
from allmende.apply.proxy import ensure_running, reload
from allmende.apply.verify import TIMEOUT, verify
from allmende.connectors.base import Connector
from allmende.engines import find_driver
from allmende.engines.base import Driver
from allmende.errors import ApplyFailed, CommandFailed, PlanChanged, UserError
from allmende.inventory import derive
from allmende.inventory.hostpaths import PROXY_FILES
from allmende.inventory.images import registry_of
from allmende.inventory.inventory import Inventory
from allmende.plan.changes import Action, Change
from allmende.plan.deliver import secret_names
from allmende.plan.digest import HostKey
from allmende.render.output import Rendered

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostPlan:
    """One host's part of a plan, and what it was made from."""

    inventory: Inventory
    changes: Sequence[Change]
    actions: Sequence[Action]
    wanted: Mapping[str, Rendered]
    key: HostKey
    scoped: bool = False
    verify_timeout: float = TIMEOUT
    #: Told each step as it is done, one line without the host's name (for people watching).
    say: Callable[[str], None] = field(default=lambda line: None, repr=False)
    #: Hosts the plan could not reach: monitors only they can pass are not run.
    unplanned: frozenset[str] = frozenset()


@dataclass
class Done:
    """What an apply did on one host, for the record and for rollback."""

    started_proxy: bool = False
    reloaded_proxy: bool = False
    up: list[str] = field(default_factory=list)
    files: int = 0
    #: The engine's undo of each action begun (``Action.undo``), in the order they began.
    undo: list[Action] = field(default_factory=list)


async def apply_host(connector: Connector, plan: HostPlan) -> Done:
    """Apply ``plan`` on the opened, locked host (see the module docstring). Return what was
    done. Raise PlanChanged if a file changed since the plan (nothing was applied), else
    ApplyFailed with the first error, saying whether the host was rolled back and what the
    rollback could not put back."""
    done = Done()
    stand_ins: tuple[list[str], list[str]] = ([], [])
    staged: Staged | None = None
    try:
        await _pull(connector, plan)
        certs = plan.wanted.get(PROXY_FILES[1])
        if certs is not None:
            stand_ins = await ensure_certificates(connector, certs.content)
        staged = await stage(connector, plan.changes, plan.wanted, plan.key)
        model = plan.inventory.hosts[connector.host]
        driver = await find_driver(connector, model.engine, model.runtime)
        for action in plan.actions:
            if action.verb == "down":
                await run_action(connector, action)
    except UserError as exc:
        if staged is not None:
            await discard(connector, staged)
        await _remove(connector, stand_ins)
        if isinstance(exc, PlanChanged):
            raise
        raise ApplyFailed(connector.host, exc, rolled_back=False) from None
    try:
        await commit(connector, staged)
        done.files = len(staged.committed)
        plan.say(f"{done.files} files in place")
        await _after_files(connector, plan, driver, done)
        await record(connector, staged, plan.wanted, plan.key, plan.scoped)
    except UserError as exc:
        log.info("%s: %s; rolling back", connector.host, exc)
        plan.say("failed: rolling back")
        problems = await _roll_back(connector, plan, driver, staged, done)
        problems += await _remove(connector, stand_ins)
        raise ApplyFailed(connector.host, exc, rolled_back=True, problems=problems) from None
    return done


async def _pull(connector: Connector, plan: HostPlan) -> None:
    """Fetch every image the plan needs, before anything is stopped or replaced. Raise
    UserError naming the image and its registry if one cannot be had."""
    for action in plan.actions:
        if action.verb != "pull":
            continue
        plan.say(f"pulling {action.subject}")
        try:
            await run_action(connector, action)
        except CommandFailed as exc:
            registry = registry_of(action.subject) or "docker.io"
            raise UserError(
                f"{connector.host}: the image {action.subject} cannot be pulled from {registry} "
                f"({action.reason}); nothing on this host was changed:\n{exc.output}"
            ) from None


async def _remove(connector: Connector, written: tuple[list[str], list[str]]) -> list[str]:
    """Remove the files, then the directories, an apply wrote that the host did not have
    (stand-in certificates and where they are); return what could not be removed."""
    files, directories = written
    problems = []
    for path in files:
        try:
            await connector.remove(path)
        except UserError as exc:
            problems.append(str(exc))
    for path in directories:
        try:
            await connector.remove_dir(path)
        except UserError as exc:
            problems.append(str(exc))
    return problems


async def _after_files(
    connector: Connector, plan: HostPlan, driver: Driver | None, done: Done
) -> None:
    for action in plan.actions:
        if action.verb == "install":
            plan.say(f"installing {action.reason.partition(' need ')[2]}")
            await run_action(connector, action)
    for action in plan.actions:
        if action.verb == "reload-systemd":
            await run_action(connector, action)
    await prepare(connector, plan, driver, done)
    for action in plan.actions:
        if action.verb == "up" and driver is not None:
            began(action, done)
            done.up.append(action.subject)
            plan.say(f"{action.subject}: up ({action.reason})")
            await run_action(connector, action)
            await wait_up(connector, driver, plan.inventory, action.subject)
            plan.say(f"{action.subject}: running")
        elif action.verb == "provision":
            plan.say(f"{action.subject}: {action.reason}")
            await run_action(connector, action)
    # The proxy last: HAProxy marks a server down at its first failed check, so the services
    # it will route to must already answer.
    for action in plan.actions:
        if action.verb == "start-proxy":
            await ensure_running(connector)
            done.started_proxy = True
            plan.say("HAProxy started")
        elif action.verb == "reload-proxy":
            await reload(connector)
            done.reloaded_proxy = True
            plan.say("HAProxy reloaded")
    watched = list(done.up)
    if done.started_proxy or done.reloaded_proxy:
        watched += derive.served_by(plan.inventory, connector.host)
    failed = await verify(plan.inventory, sorted(set(watched)), plan.verify_timeout, plan.unplanned)
    if failed:
        raise UserError(f"{connector.host}: after the apply, " + "; ".join(failed))
    if watched:
        plan.say(f"monitors pass: {', '.join(sorted(set(watched)))}")
    for action in plan.actions:
        if action.verb == "restart":  # the watcher: once what it watches is up
            await run_action(connector, action)
            plan.say(f"{action.subject}: restarted ({action.reason})")
        elif action.verb == "note" and action.subject == "watch":
            plan.say(f"{action.subject}: {action.reason}")


def previous_up(driver: Driver, inventory: Inventory, service: str, created: set[str]) -> Action:
    """Return the action that brings ``service`` up again on its previous files: the engine's
    ``up``, as the plan builds it, with the secrets whose files existed before this apply
    (those it created are gone again)."""
    kept = [
        flat
        for flat in secret_names(inventory, service)
        if not any(p in created for p in driver.engine.secret_paths(service, flat))
    ]
    return Action(driver.site.host, "up", service, "rollback", driver.recreate(service, kept))


async def _roll_back(
    connector: Connector, plan: HostPlan, driver: Driver | None, staged: Staged, done: Done
) -> list[str]:
    """Put the host back; return what could not be put back."""
    problems: list[str] = []
    created = {c.path for c in staged.committed if c.kind == "create"}
    new_services = []
    undone = {a.subject for a in done.undo if a.verb == "up"}
    if driver is not None:
        new_services = [s for s in done.up if driver.project_file(s) in created and s not in undone]
        for service in new_services:
            down = Action(connector.host, "down", service, "rollback", driver.down(service))
            try:
                await run_action(connector, down)
            except UserError as exc:
                problems.append(str(exc))
    try:
        await rollback(connector, staged)
    except UserError as exc:
        return [*problems, str(exc)]
    problems += await undo(connector, done)
    for service in done.up:
        if service in new_services or service in undone or driver is None:
            continue
        try:
            await run_action(connector, previous_up(driver, plan.inventory, service, created))
        except UserError as exc:
            problems.append(str(exc))
    proxy_changed = any(c.path in PROXY_FILES and c.kind == "update" for c in staged.committed)
    if proxy_changed and (done.reloaded_proxy or done.started_proxy):
        try:
            await reload(connector)
        except UserError as exc:
            problems.append(str(exc))
    return problems
