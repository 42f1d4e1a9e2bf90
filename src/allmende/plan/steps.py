"""Actions of engines that judge for themselves what differs between what runs and the files.

Most engines are brought ``up`` whenever a service's files change (``plan.actions``). An engine
that can read what runs in detail (Incus reads each instance's configuration and devices)
says instead what exactly brings each service to its project file (``Engine.converge``): create
it, change it in place, make it anew, start it, or nothing; and what the host needs before its
services come up (``Engine.prepare``: Incus's storage pool, bridge and profile, and the
containers that are hosts). Both come with the commands that undo them on a rollback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from allmende.engines.base import Driver, Running, Step
from allmende.plan.changes import Action, Change
from allmende.render.output import Rendered


def _content(rendered: object) -> bytes:
    return rendered.content if isinstance(rendered, Rendered) else b""


def converge(
    driver: Driver,
    service: str,
    wanted: Mapping[str, object],
    running: Mapping[str, Running] | None,
) -> Step | None:
    """Return what the host's engine says brings ``service`` to its project file in ``wanted``
    (None: the engine leaves it to the files). Raise UserError as the engine does."""
    project = _content(wanted.get(driver.project_file(service)))
    return driver.converge(service, project, None if running is None else running.get(service))


def converged(host: str, service: str, step: Step) -> list[Action]:
    """Return the ``up`` action of a converge Step, or none where nothing differs."""
    if not step.commands:
        return []
    return [Action(host, "up", service, step.what, step.commands, step.undo)]


def owned(driver: Driver, changes: Sequence[Change], wanted: Mapping[str, object]) -> bool:
    """Return whether the host has files of the engine's own (``Engine.owns``), wanted or
    going: then what runs is read even without a service."""
    return any(driver.engine.owns(p) for p in wanted) or any(
        driver.engine.owns(c.path) for c in changes
    )


def prepare_actions(
    host: str,
    driver: Driver,
    changes: Sequence[Change],
    wanted: Mapping[str, object],
    running: Mapping[str, Running] | None,
) -> list[Action]:
    """Return the actions that give the host what its services need first, from the
    engine's own files (``Engine.prepare``). Raise UserError as the engine does."""
    engine = driver.engine
    mine = {p: _content(r) for p, r in wanted.items() if engine.owns(p)}
    kinds = {c.path: c.kind for c in changes if engine.owns(c.path)}
    if not mine and not kinds:
        return []
    return [
        Action(host, verb, subject, step.what, step.commands, step.undo)
        for verb, subject, step in engine.prepare(driver.site, mine, kinds, running)
        if step.commands
    ]
