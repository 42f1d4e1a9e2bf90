"""Incus: system containers (and, on Incus 6.3 and later, OCI application containers).

A service's project file ``/srv/<service>/incus.yaml`` holds one instance definition per
component (``allmende.render.incus``); the host's own files under ``/etc/allmende/incus/`` hold
its preseed (storage pool, bridge, profile) and the definitions of the containers on it that are
hosts themselves (the art school's HAProxy container). What runs is read with ``incus query
/1.0/instances?recursion=1``, and the engine judges per instance what differs
(``allmende.engines.incus.judge``): plans show creates, changes in place, instances made anew,
starts, and deletes, with the exact ``incus`` commands, each with its undo for a rollback.
Before an apply changes an instance it takes a snapshot ``before-apply-<date>-<time>``;
``allmende rollback`` goes back to any snapshot.

Every command runs on the Incus host through ``Connector.run``, so a remote host is driven over
SSH. A container host on an Incus host is reached through ``incus exec`` on its parent
(``allmende.engines.incus.reach``) when its host file names no ``ssh``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any, Literal

from allmende.connectors.base import Connector
from allmende.engines.base import Command, Commands, Engine, Running, Site, Snapshot, Step
from allmende.engines.incus import commands as c
from allmende.engines.incus.judge import combine, definitions, judge, set_aside, with_snapshot
from allmende.engines.incus.reach import IncusExecConnector
from allmende.errors import ToolMissing, UserError
from allmende.inventory.hostpaths import (
    INCUS_DIR,
    INCUS_PRESEED,
    PROJECT_FILES,
)
from allmende.render.incus_plan import COMPONENT, HOST, SERVICE

#: The API extension of an Incus that runs OCI application containers.
OCI = "instance_oci"
#: Where ``parse`` puts what it read for the containers that are hosts (no service has
#: this name).
HOSTS = ""


class Incus(Engine):
    """Incus instances, one per component, and the host's pool, bridge and profile."""

    name = "incus"
    project_file = PROJECT_FILES["incus"]

    async def find(self, connector: Connector, runtime: str) -> Site:
        """Return the host as found: which API extensions its Incus has (none where Incus is
        not there yet: reading what runs says so, if it matters)."""
        site = await super().find(connector, runtime)
        try:
            ran = await connector.run(("incus", "query", "/1.0"), ok=None, timeout=60.0)
            server = json.loads(ran.stdout) if ran.exit == 0 else {}
            features = frozenset(str(e) for e in server.get("api_extensions", []))
        except (ToolMissing, ValueError, AttributeError):
            features = frozenset()
        return Site(site.host, site.runtime, site.root, site.program, features)

    def up(self, site: Site, service: str, secrets: Sequence[str] = ()) -> Commands:
        return (c.sh(c.START_SERVICE, service),)

    def down(self, site: Site, service: str) -> Commands:
        return (c.sh(c.DELETE_SERVICE, service),)

    def observe(self, site: Site) -> Command:
        return ("incus", "query", "/1.0/instances?recursion=1")

    def parse(self, site: Site, output: bytes) -> dict[str, Running]:
        instances = json.loads(output or b"[]")
        if not isinstance(instances, list):
            raise ValueError("not a list of instances")
        everything = {str(i["name"]): i for i in instances}
        states: dict[str, dict[str, str]] = {}
        for name, instance in everything.items():
            config = instance.get("config") or {}
            service, component = config.get(SERVICE), config.get(COMPONENT)
            if service and component and name == f"{service}-{component}":
                states.setdefault(service, {})[component] = str(instance["status"]).lower()
        found = {s: Running(states[s], observed=everything) for s in sorted(states)}
        found[HOSTS] = Running(observed=everything)
        return found

    # ------------------------------------------------------------------ judging

    def converge(
        self, site: Site, service: str, project: bytes, running: Running | None
    ) -> Step | None:
        where = f"{site.host}:{self.project(service)}"
        wanted = definitions(project, where)
        self._can_run(site, where, wanted)
        observed = running.observed if running is not None else {}
        steps = [self._one(site, body, observed.get(name)) for name, body in wanted.items()]
        for component in sorted(running.states if running is not None else ()):
            name = f"{service}-{component}"
            if name not in wanted and name in observed:
                steps.append(set_aside(name, observed[name], "its component left the service"))
        return combine(steps)

    def _one(self, site: Site, body: Mapping[str, Any], found: Mapping[str, Any] | None) -> Step:
        return with_snapshot(str(body["name"]), judge(body, found, site.real), found is not None)

    def _can_run(self, site: Site, where: str, wanted: Mapping[str, Mapping[str, Any]]) -> None:
        oci = sorted(n for n, b in wanted.items() if b.get("source", {}).get("protocol") == "oci")
        if oci and OCI not in site.features:
            raise UserError(
                f"{where}: {', '.join(oci)} would be OCI application containers (a component "
                f"with `image:`), which the Incus on {site.host} cannot run (it lacks the API "
                f"extension {OCI}: Incus 6.3 or later has it); make the component a `system:` "
                "container, or run it on a compose host"
            )

    def owns(self, path: str) -> bool:
        return path.startswith(f"{INCUS_DIR}/")

    def prepare(
        self,
        site: Site,
        wanted: Mapping[str, bytes],
        changes: Mapping[str, str],
        running: Mapping[str, Running] | None,
    ) -> list[tuple[Literal["prepare", "down"], str, Step]]:
        found: list[tuple[Literal["prepare", "down"], str, Step]] = []
        if INCUS_PRESEED in changes and changes[INCUS_PRESEED] != "delete":
            again = c.sh(c.PRESEED, site.real(INCUS_PRESEED))
            new = changes[INCUS_PRESEED] == "create"
            what = ("set up" if new else "change") + " its storage pool, bridge and profile"
            found.append(("prepare", "incus", Step(what, (again,), () if new else (again,))))
        observed = dict(running[HOSTS].observed) if running and HOSTS in running else {}
        for path, content in sorted(wanted.items()):
            if path == INCUS_PRESEED:
                continue
            host = PurePosixPath(path).stem
            instances = definitions(content, f"{site.host}:{path}")
            self._can_run(site, f"{site.host}:{path}", instances)
            step = combine([self._one(site, b, observed.get(n)) for n, b in instances.items()])
            found.append(("prepare", host, step))
        for path, kind in sorted(changes.items()):
            host = PurePosixPath(path).stem
            if kind == "delete" and path != INCUS_PRESEED and host in observed:
                gone = set_aside(host, observed[host], "it left the inventory")
                found.append(("down", host, gone))
        return found

    def reach(self, parent: Connector, host: str) -> Connector | None:
        return IncusExecConnector(parent, host)

    # ------------------------------------------------------------------ snapshots

    def list_snapshots(self, site: Site, service: str, components: Sequence[str]) -> Commands:
        return tuple(
            ("incus", "query", f"/1.0/instances/{service}-{component}/snapshots?recursion=1")
            for component in components
        )

    def parse_snapshots(
        self, site: Site, service: str, outputs: Mapping[str, bytes]
    ) -> list[Snapshot]:
        found = []
        for component, output in outputs.items():
            for item in json.loads(output or b"[]"):
                expires = str(item.get("expires_at") or "")
                found.append(
                    Snapshot(
                        component,
                        str(item["name"]),
                        str(item.get("created_at") or ""),
                        None if not expires or expires.startswith("0001-") else expires,
                    )
                )
        return sorted(found, key=lambda s: (s.created, s.component, s.name))

    def snapshot(self, site: Site, service: str, component: str, name: str) -> Commands:
        return (c.incus("snapshot", "create", f"{service}-{component}", name, "--reuse"),)

    def restore(self, site: Site, service: str, component: str, name: str) -> Commands:
        return (c.incus("snapshot", "restore", f"{service}-{component}", name),)

    def forget(self, site: Site, service: str, component: str, name: str) -> Commands:
        return (c.incus("snapshot", "delete", f"{service}-{component}", name),)


ENGINE = Incus()

__all__ = ["ENGINE", "HOST", "Incus"]
