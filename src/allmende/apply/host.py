"""Apply one host's part of a plan, as one transaction: all of it takes, or the host is put back.

``HostApply`` holds one opened, locked host through the phases the apply across hosts
(``apply.across``) runs everywhere in step, so that backends are up before an edge sends to
them and leave only after it stopped:

``begin``
    every image the plan needs pulled; stand-in certificates for every PEM the new
    ``certs.list`` names and the host lacks (``apply.certs``); every file staged beside its
    target and checked (``apply.files.stage``): a file HAProxy rejects, a full disk, a file
    changed since the plan stop here, and nothing live has changed;
``services``
    the files renamed into place (deletes wait for ``finish``); services removed from the
    inventory brought down first where the host brings others up (they may need the ports);
    what the backup and certificate timers need installed (Borg, python3, python3-acme);
    systemd reloaded and timers enabled where units changed; the watch host's key put into (or
    taken out of) the SSH user's ``authorized_keys`` (``plan.watchkeys``); the engine's
    preparations; each
    changed or stopped service brought up, providers first, and waited for until it runs and
    its health checks pass (``apply.engines``), a ``replace``d one started beside itself first
    while the edges send to it, any other one with its servers on the edges in maintenance
    meanwhile (``apply.replace``);
``proxy``
    HAProxy started or gracefully reloaded through its master socket, once every service it
    routes to answers (on this host and on the others);
``finish``
    services removed from the inventory brought down (where not done yet), now that no edge
    sends to them, and their files deleted; the versions started beside brought down; the
    monitors of every service brought up (and, after a proxy reload, of every service the edge
    serves) run until they pass (``apply.verify``); the watcher (re)started where its plan
    or unit changed, once what it watches is up (on a host without systemd: said how to start
    it by hand); the manifest written, only now, so that
    after an apply that died half-way the plan still sees the services whose new files never
    came up.

``fail`` puts the host back after any of these: before ``services`` by removing the temps,
after it by rolling back: services new in this apply brought down, every file put back from
its previous version (``rollback``), the services changed or removed brought up again on their
previous files, edge servers moved at run time pointed back, and HAProxy reloaded with its
previous configuration. ``apply_host`` runs the phases for one host alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from allmende.apply import replace
from allmende.apply.certs import ensure_certificates
from allmende.apply.engines import began, prepare, run_action, undo, wait_up
from allmende.apply.files import Staged, commit, delete, discard, record, rollback, stage
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

#: The actions that bring a service up (``replace``: start-first).
UPS = ("up", "replace")


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
    #: Services brought down because they left the inventory.
    down: list[str] = field(default_factory=list)
    #: New versions started beside their services, and edge servers pointed at them.
    beside: list[replace.Started] = field(default_factory=list)
    moved: list[replace.Moved] = field(default_factory=list)


class HostApply:
    """One host's part of an apply on its opened, locked ``connector``; ``edges`` are the
    opened connectors of the edge hosts (this one too, if it is one) whose servers a
    ``replace`` moves. See the module docstring for the phases."""

    def __init__(
        self, connector: Connector, plan: HostPlan, edges: Mapping[str, Connector] | None = None
    ) -> None:
        self.connector = connector
        self.plan = plan
        self.edges = edges or {}
        self.done = Done()
        self.stand_ins: tuple[list[str], list[str]] = ([], [])
        self.staged: Staged | None = None
        self.driver: Driver | None = None
        #: Whether anything live changed (the files were renamed into place).
        self.live = False

    @property
    def host(self) -> str:
        return self.connector.host

    def _actions(self, *verbs: str) -> list[Action]:
        return [a for a in self.plan.actions if a.verb in verbs]

    async def begin(self) -> None:
        """Pull, write stand-ins and stage every file. Raise PlanChanged, or UserError, with
        nothing live changed (temps and stand-ins removed)."""
        connector, plan = self.connector, self.plan
        try:
            await _pull(connector, plan)
            certs = plan.wanted.get(PROXY_FILES[1])
            if certs is not None:
                self.stand_ins = await ensure_certificates(connector, certs.content)
            self.staged = await stage(connector, plan.changes, plan.wanted, plan.key)
            model = plan.inventory.hosts[connector.host]
            self.driver = await find_driver(connector, model.engine, model.runtime)
        except UserError:
            await self._discard()
            raise

    async def services(self) -> None:
        """Put the files in place and bring the services up (see the module docstring)."""
        assert self.staged is not None, "begin first"
        connector, plan, done = self.connector, self.plan, self.done
        self.live = True
        await commit(connector, self.staged, deletes=False)
        done.files = len(self.staged.committed)
        plan.say(f"{done.files} files in place")
        if self._actions("prepare", *UPS):
            await self._down()
        for action in self._actions("install"):
            plan.say(f"installing {action.reason.partition(' need ')[2]}")
            await run_action(connector, action)
        for action in self._actions("reload-systemd"):
            await run_action(connector, action)
        for action in self._actions("authorize"):
            began(action, done)
            plan.say(f"{action.subject}: {action.reason}")
            await run_action(connector, action)
        await prepare(connector, plan, self.driver, done)
        for action in plan.actions:
            if action.verb in UPS and self.driver is not None:
                await self._up(action, self.driver)
            elif action.verb == "provision":
                plan.say(f"{action.subject}: {action.reason}")
                await run_action(connector, action)

    async def _up(self, action: Action, driver: Driver) -> None:
        connector, plan, done = self.connector, self.plan, self.done
        if action.verb == "replace":
            plan.say(f"{action.subject}: starting the new version beside the old")
            started = await replace.start(connector, driver, plan.inventory, action, plan.wanted)
            done.beside.append(started)
            ports = await replace.published(connector, driver, started)
            await replace.switch(self.edges, plan.inventory, started, ports, done.moved)
            plan.say(f"{action.subject}: the edge sends to {started.beside.name}")
        else:
            await replace.pause(self.edges, plan.inventory, action.subject, done.moved)
        began(action, done)
        done.up.append(action.subject)
        plan.say(f"{action.subject}: up ({action.reason})")
        await run_action(connector, action)
        await wait_up(connector, driver, plan.inventory, action.subject)
        plan.say(f"{action.subject}: running")
        if any(m.service == action.subject for m in done.moved):
            await replace.back(self.edges, plan.inventory, action.subject, done.moved)
            plan.say(f"{action.subject}: the edge sends to it again")

    async def _down(self) -> None:
        """Bring down what leaves (services, timers), once."""
        for action in self._actions("down"):
            if action.subject in self.done.down:
                continue
            began(action, self.done)
            self.done.down.append(action.subject)
            self.plan.say(f"{action.subject}: down ({action.reason})")
            await run_action(self.connector, action)

    async def proxy(self) -> None:
        """Start or reload HAProxy, as the plan says."""
        for action in self._actions("start-proxy", "reload-proxy"):
            if action.verb == "start-proxy":
                await ensure_running(self.connector)
                self.done.started_proxy = True
                self.plan.say("HAProxy started")
            else:
                await reload(self.connector)
                self.done.reloaded_proxy = True
                self.plan.say("HAProxy reloaded")

    async def finish(self) -> None:
        """Take away what left and what ran beside, run the monitors and write the
        manifest. Raise UserError if a monitor fails or something cannot be taken away."""
        assert self.staged is not None, "begin first"
        connector, plan, done = self.connector, self.plan, self.done
        await self._down()
        await delete(connector, self.staged)
        for started in list(done.beside):
            await replace.retire(connector, started)
            done.beside.remove(started)
        watched = list(done.up)
        if done.started_proxy or done.reloaded_proxy:
            watched += derive.served_by(plan.inventory, connector.host)
        failed = await verify(
            plan.inventory, sorted(set(watched)), plan.verify_timeout, plan.unplanned
        )
        if failed:
            raise UserError(f"{connector.host}: after the apply, " + "; ".join(failed))
        if watched:
            plan.say(f"monitors pass: {', '.join(sorted(set(watched)))}")
        for action in self._actions("restart", "note"):  # the watcher: once all is up
            if action.verb == "restart":
                await run_action(connector, action)
                plan.say(f"{action.subject}: restarted ({action.reason})")
            elif action.subject == "watch":
                plan.say(f"{action.subject}: {action.reason}")
        await record(connector, self.staged, plan.wanted, plan.key, plan.scoped)

    async def fail(self, cause: UserError) -> UserError:
        """Put the host back after ``cause`` stopped its apply (see the module docstring);
        return the error to report: ``cause`` itself for a PlanChanged before anything live
        changed, else ApplyFailed saying whether the host was rolled back and what could not
        be put back."""
        if not self.live:
            await self._discard()
            if isinstance(cause, PlanChanged):
                return cause
            return ApplyFailed(self.host, cause, rolled_back=False)
        log.info("%s: %s; rolling back", self.host, cause)
        self.plan.say("rolling back")
        told: list[str] = []
        problems = await self._roll_back(told)
        problems += await _remove(self.connector, self.stand_ins)
        return ApplyFailed(self.host, cause, rolled_back=True, problems=problems, undone=told)

    async def _discard(self) -> None:
        if self.staged is not None:
            await discard(self.connector, self.staged)
        await _remove(self.connector, self.stand_ins)

    async def _roll_back(self, told: list[str]) -> list[str]:
        """Put the host back, telling ``told`` what was put back; return what could not be."""
        assert self.staged is not None
        connector, plan, driver, done = self.connector, self.plan, self.driver, self.done
        problems: list[str] = []
        created = {c.path for c in self.staged.committed if c.kind == "create"}
        undone = {a.subject for a in done.undo if a.verb in UPS}
        undone_down = {a.subject for a in done.undo if a.verb == "down"}
        new_services = []
        if driver is not None:
            new_services = [
                s for s in done.up if driver.project_file(s) in created and s not in undone
            ]
            for service in new_services:
                down = Action(connector.host, "down", service, "rollback", driver.down(service))
                problems += await _attempt(connector, down, told, f"{service} brought down")
        try:
            await rollback(connector, self.staged)
        except UserError as exc:
            return [*problems, str(exc)]
        files = len(self.staged.committed)
        told.insert(0, f"{files} file{'' if files == 1 else 's'} put back")
        undoing = await undo(connector, done)
        if done.undo and not undoing:
            told.append("the engine's steps undone")
        problems += undoing
        if driver is not None:
            for service in done.up:
                if service not in new_services and service not in undone:
                    again = previous_up(driver, plan.inventory, service, created)
                    said = f"{service} up again on its previous files"
                    problems += await _attempt(connector, again, told, said)
            for service in done.down:
                if service not in undone_down and service != "timers":
                    again = Action(connector.host, "up", service, "rollback", driver.up(service))
                    problems += await _attempt(connector, again, told, f"{service} up again")
        problems += await replace.point_back(self.edges, done.moved)
        for started in done.beside:
            try:
                await replace.retire(connector, started)
            except UserError as exc:
                problems.append(str(exc))
        proxy_changed = any(
            c.path in PROXY_FILES and c.kind == "update" for c in self.staged.committed
        )
        if proxy_changed and (done.reloaded_proxy or done.started_proxy):
            try:
                await reload(connector)
                told.append("HAProxy reloaded with its previous configuration")
            except UserError as exc:
                problems.append(str(exc))
        return problems


async def apply_host(
    connector: Connector, plan: HostPlan, edges: Mapping[str, Connector] | None = None
) -> Done:
    """Apply ``plan`` on the opened, locked host alone, every phase in turn (see the module
    docstring). Return what was done. Raise PlanChanged if a file changed since the plan
    (nothing was applied), else ApplyFailed with the first error, saying whether the host was
    rolled back and what the rollback could not put back."""
    run = HostApply(connector, plan, {connector.host: connector, **(edges or {})})
    try:
        await run.begin()
        await run.services()
        await run.proxy()
        await run.finish()
    except UserError as exc:
        raise await run.fail(exc) from None
    return run.done


async def _attempt(connector: Connector, action: Action, told: list[str], done: str) -> list[str]:
    """Run ``action``; return what went wrong (nothing if it worked, ``done`` told then)."""
    try:
        await run_action(connector, action)
    except UserError as exc:
        return [str(exc)]
    told.append(done)
    return []


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
