"""A compose project becomes one service: components, secrets, databases, routes, and every
compose field the inventory cannot express kept verbatim under ``x-compose``.

``x-compose`` holds complete values of compose keys (never part of a list), after interpolation
and with relative paths made absolute: the renderer lets such a key replace what it would write
for it, so that the rendered project does what the original did. On the component it holds
service keys (``cap_add``, ``networks``, ...); on the service, the project's own top-level keys
(``networks``, compose ``secrets`` and ``configs``, volumes that stay compose volumes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from allmende.importers.component import map_component
from allmende.importers.composefile import Project
from allmende.importers.context import ComponentContext
from allmende.importers.databases import PORTS, connections, offered, server
from allmende.importers.mounts import parse_port, port_for
from allmende.importers.naming import sanitize, service_names, software, unique, valid
from allmende.importers.result import Imported, ImportRefused, Note
from allmende.importers.secretmove import move_secrets
from allmende.inventory.hostpaths import volume_dir
from allmende.inventory.xcompose import escape

COMPONENT_ORDER = (
    "image",
    "command",
    "env",
    "secrets",
    "ports",
    "publish",
    "volumes",
    "files",
    "build",
    "healthcheck",
    "depends_on",
    "replicas",
    "restart",
    "x-compose",
)
HEADER = (
    "Imported by `allmende import compose` (compose project {project}) from\n"
    "  {source}\n"
    "Keys the inventory cannot express are kept verbatim under `x-compose`; values that\n"
    "looked secret are in the secret store. Edit freely: importing again keeps your changes."
)


def candidates(project: Project) -> list[str]:
    """Return the service names this project could have, best first (see naming)."""
    services = project.data.get("services") or {}
    images = [s.get("image") for s in services.values() if isinstance(s, dict)]
    stem = Path(project.first).stem
    return service_names(project.name, stem, [i for i in images if isinstance(i, str)])


def _renames(services: dict[str, Any]) -> dict[str, str]:
    """Return compose service name -> component name (valid names, the same where possible)."""
    names: dict[str, str] = {}
    for name in services:
        names[name] = name if valid(name) else unique(sanitize(name, "app"), names.values())
    return names


def _rewrite_references(compose: dict[str, Any], names: dict[str, str], old: str) -> dict[str, Any]:
    """Point ``links``, ``volumes_from`` and ``network_mode`` at renamed components, and keep
    the old name reachable as a network alias."""
    if all(k == v for k, v in names.items()):
        return compose
    out = dict(compose)

    def rename(text: str) -> str:
        head, sep, rest = text.partition(":")
        return names.get(head, head) + sep + rest

    if isinstance(out.get("links"), list):
        out["links"] = [rename(str(x)) for x in out["links"]]
    if isinstance(out.get("volumes_from"), list):
        out["volumes_from"] = [rename(str(x)) for x in out["volumes_from"]]
    mode = out.get("network_mode")
    if isinstance(mode, str) and mode.startswith("service:"):
        out["network_mode"] = "service:" + names.get(mode[8:], mode[8:])
    if names[old] != old and "network_mode" not in out:
        networks = out.get("networks") or ["default"]
        if isinstance(networks, list):
            networks = {str(n): None for n in networks}
        out["networks"] = {
            n: {
                **(v if isinstance(v, dict) else {}),
                "aliases": [*((v or {}).get("aliases") or []), old],
            }
            if isinstance(v, dict | type(None))
            else v
            for n, v in networks.items()
        }
    return out


def _project_keys(project: Project, out: Imported, definitions: dict[str, Any]) -> None:
    """Map or keep the project's own top-level keys (see the module's text)."""
    kept: dict[str, Any] = {}
    for key, value in project.data.items():
        where = project.where((key,), key=True)
        if key in ("services", "name"):
            continue
        if key == "version":
            out.notes.append(Note(where, "info", "ignored `version`: Compose ignores it too"))
        elif key.startswith("x-"):
            out.notes.append(
                Note(where, "info", f"ignored `{key}`: Compose ignores it; its anchors are used")
            )
        elif key == "volumes":
            rest = {k: v for k, v in definitions.items() if v not in (None, {})}
            for name in definitions:
                if name not in rest:
                    now = volume_dir(out.name, sanitize(name))
                    out.notes.append(
                        Note(
                            project.where((key, name), key=True),
                            "warning",
                            f"volume {name} is now {now}: copy the data "
                            f"of the compose volume {project.name}_{name} there before the first "
                            "start from the rendered files",
                        )
                    )
            if rest:
                kept[key] = rest
        else:
            kept[key] = value
    if kept:
        out.data["x-compose"] = escape(kept)
        out.kept += [f"({key})" for key in kept]


def _provides(
    out: Imported, components: dict[str, dict[str, Any]], contexts: list[ComponentContext]
) -> None:
    """Make the service ``provide`` the database its surest server serves (``server``: the one
    owning the engine's data directory first; postgres, mariadb and mysql before redis), on
    its database port."""
    found = [(c.cname, server(c.compose.get("image"), c.compose)) for c in contexts]
    servers = [(n, s) for n, s in found if s is not None]
    if not servers:
        return
    servers.sort(key=lambda s: (-s[1][1], s[1][0] == "redis"))
    cname, (name, _) = servers[0]
    ctx = next(c for c in contexts if c.cname == cname)
    port = port_for(ctx, PORTS[name][1], PORTS[name][0])
    provides: dict[str, Any] = {"database": name}
    if len(components) > 1:
        provides["component"] = cname
    provides["port"] = port
    ctx.differ(
        "networks",
        f"also on the network allmende-{out.name}, where services of other projects on the "
        f"host reach its database as {out.name}",
    )
    databases = offered(name, components[cname].get("env", {}))
    if databases:
        provides["databases"] = databases
    out.data["provides"] = provides


def map_project(project: Project, name: str, host: str) -> Imported:
    """Given a read project and the service name and host it gets, return the Imported service.

    Raise ImportRefused with every problem found (an unreadable port, a missing env file...).
    """
    services: dict[str, Any] = project.data["services"]
    definitions = project.data.get("volumes") or {}
    if not isinstance(definitions, dict):
        raise ImportRefused([project.problem(("volumes",), "expected a mapping of volumes")])
    images = ", ".join(
        dict.fromkeys(
            software(s["image"]) for s in services.values() if isinstance(s.get("image"), str)
        )
    )
    out = Imported(
        name=name,
        source=project.shown,
        origin=project.origin,
        header=HEADER.format(source=project.origin, project=project.name),
        data={
            "description": f"{name.capitalize()} ({images or project.name})",
            "host": host,
        },
    )
    out.comments[("description",)] = "say what it offers to people"
    names = _renames(services)
    contexts: list[ComponentContext] = []
    routes: list[dict[str, Any]] = []
    taken = {
        spec.published
        for compose in services.values()
        if isinstance(compose, dict) and isinstance(compose.get("ports"), list)
        for spec in map(parse_port, compose["ports"])
        if spec is not None and spec.published is not None
    }
    for compose_name, compose in services.items():
        ctx = ComponentContext(
            project,
            name,
            compose_name,
            names[compose_name],
            _rewrite_references(compose, names, compose_name),
            taken_ports=taken,
        )
        routes += map_component(ctx, definitions, names)
        contexts.append(ctx)
    problems = [p for c in contexts for p in c.problems]
    if problems:
        raise ImportRefused(problems)
    components: dict[str, dict[str, Any]] = {c.cname: c.component for c in contexts}
    move_secrets(out, contexts)
    _provides(out, components, contexts)
    for ctx in contexts:
        env = ctx.component.get("env", {})
        secret_env = {
            k: out.secrets[v if isinstance(v, str) else v["secret"]]
            for k, v in ctx.component.get("secrets", {}).items()
        }
        where = project.where((*ctx.base, "environment"))
        out.connections += connections(ctx.cname, {**env, **secret_env}, where)
    out.data["components"] = {}
    for ctx in contexts:
        if ctx.verbatim:
            ctx.component["x-compose"] = ctx.verbatim
            for key in ctx.verbatim:
                reason = ctx.reasons.get(key)
                out.kept.append(f"{ctx.cname}.{key}" + (f" ({reason})" if reason else ""))
        ordered = {k: ctx.component[k] for k in COMPONENT_ORDER if k in ctx.component}
        out.data["components"][ctx.cname] = ordered
        for path, text in ctx.comments.items():
            out.comments[("components", ctx.cname, *path)] = text
        out.notes += ctx.notes
        out.differences += ctx.differences
        out.files.update(ctx.carried)
        out.executable |= ctx.executable
        if ctx.cname != ctx.name:
            out.notes.append(
                Note(
                    project.where(ctx.base, key=True),
                    "info",
                    f"component {ctx.name} is named {ctx.cname}; its old name stays an alias",
                )
            )
    if "provides" in out.data:
        out.data["provides"] = out.data.pop("provides")
    if routes:
        out.data["routes"] = routes
    _project_keys(project, out, definitions)
    out.notes += project.notes
    return out
