"""One compose service becomes one component: image, command, env, ports, volumes,
healthcheck, dependencies, replicas, the restart policy and routes from Traefik labels are
mapped; every other compose key is kept verbatim under the component's ``x-compose`` so that
rendering reproduces it, and listed. The renderer merges ``x-compose`` last (mappings key by
key, anything else replaces), so ``labels`` and ``networks`` are kept in their mapping form,
which merges with what it writes itself.

A service with ``build`` and no ``image`` gets the image name Compose gives what it builds
(``<project>-<service>``). A build context in the project's directory is carried into the
inventory (``files/<service>/<context>``, ``build`` of the component; other build keys kept
under ``x-compose``); one outside it (an absolute path, ``..``, a home directory) is refused
with the reason, unless the service also names its ``image``, which is then pulled instead. A
remote context (a Git URL) is kept verbatim.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from allmende.importers.carry import carry_build
from allmende.importers.composefile import Project, missing_env_file, outside, read_env_file
from allmende.importers.context import ComponentContext
from allmende.importers.mounts import map_ports, map_volumes
from allmende.importers.probes import map_healthcheck
from allmende.importers.traefik import labels_of, map_traefik

#: Compose keys this module maps (everything else is kept verbatim).
MAPPED = frozenset(
    {
        "image",
        "command",
        "environment",
        "env_file",
        "ports",
        "expose",
        "volumes",
        "healthcheck",
        "depends_on",
        "scale",
        "restart",
    }
)
#: Compose's restart policies the inventory says with ``restart``.
RESTART = ("no", "always", "on-failure", "unless-stopped")
_REMOTE = re.compile(r"^(?:[a-z]+://|git@|github\.com/)")


def _env_value(project: Project, path: tuple[Any, ...], value: Any) -> str | None:
    """Return an env value as Compose passes it: text as written (``022`` stays ``022``)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    raw = project.raw(path)
    return raw if raw else str(value)


def environment(ctx: ComponentContext) -> dict[str, str]:
    """Return the component's environment: its ``env_file``s, then ``environment``, resolved."""
    env: dict[str, str] = {}
    files = ctx.compose.get("env_file")
    if isinstance(files, str | dict):
        files = [files]
    for i, entry in enumerate(files or []):
        path, required = entry, True
        if isinstance(entry, dict):
            path, required = entry.get("path"), entry.get("required", True) is not False
        if not isinstance(path, str):
            ctx.problem(("env_file", i), "expected the path of an env file")
            continue
        if outside(ctx.project, path):
            ctx.note(
                ("env_file", i),
                "warning",
                f"env file {path} is outside the project's directory: not read (copy the "
                "variables the service needs into the project, or pass the file with --env-file)",
            )
            continue
        found = read_env_file(ctx.project, path, (*ctx.base, "env_file", i))
        if found is None:
            if required:
                ctx.problem(("env_file", i), *missing_env_file(path))
            else:
                ctx.note(("env_file", i), "info", f"optional env file {path} is not there")
            continue
        env.update(found)
    given = ctx.compose.get("environment")
    items: list[tuple[str, Any, tuple[Any, ...]]] = []
    if isinstance(given, dict):
        items = [(str(k), v, ("environment", k)) for k, v in given.items()]
    elif isinstance(given, list):
        for i, item in enumerate(given):
            key, sep, text = str(item).partition("=")
            items.append((key, text if sep else None, ("environment", i)))
    elif given is not None:
        ctx.problem(("environment",), "expected a mapping or a list of KEY=VALUE")
    for key, value, path in items:
        resolved = _env_value(ctx.project, (*ctx.base, *path), value)
        if resolved is None:
            resolved = ctx.project.env.get(key)
        if resolved is None:
            env.pop(key, None)
            ctx.note(
                path, "info", f"{key} has no value here or in .env: left unset, as Compose does"
            )
            continue
        env[key] = resolved
    return env


def _image(ctx: ComponentContext) -> None:
    """Map ``image`` (or, for a service that is only built, the name Compose gives it)."""
    image = ctx.compose.get("image")
    build = ctx.compose.get("build")
    if image is not None and not isinstance(image, str):
        ctx.problem(("image",), "expected an image name")
        return
    if build is not None:
        _build(ctx, build)
    if image:
        ctx.component["image"] = image
    elif build is not None:
        ctx.component["image"] = f"{ctx.project.name}-{ctx.name}"
        ctx.comment(("image",), "the name Compose gives the image it builds (x-compose.build)")
        ctx.differ("image", f"the image built is named {ctx.component['image']}")
    else:
        ctx.problem(
            (),
            "has neither `image` nor `build`",
            "if this file only adds to another, import the two together: "
            "`allmende import compose -f base.yaml -f this.yaml`",
        )


def _build(ctx: ComponentContext, build: Any) -> None:
    """Carry the sources of ``build`` into the inventory (``carry_build``) as the component's
    ``build``; keep a remote context verbatim. Sources that cannot be carried are refused,
    unless the service names its image too: then that image is pulled, and the import says so."""
    context = build.get("context", ".") if isinstance(build, dict) else build
    if not isinstance(context, str) or _REMOTE.match(context):
        ctx.keep("build", build, "built on the host from a remote context")
        return
    problems = len(ctx.problems)
    carried = carry_build(ctx, context)
    if carried is None:
        if isinstance(ctx.compose.get("image"), str):
            del ctx.problems[problems:]
            ctx.differ("build", f"not built: the image {ctx.compose['image']} is pulled instead")
        return
    where, done = carried
    if not done:
        kept = {**build, "context": where} if isinstance(build, dict) else where
        ctx.keep("build", kept, "built on the host from sources put in the service's directory")
        return
    typed: dict[str, Any] = {"context": where}
    rest = {k: v for k, v in build.items() if k not in ("context", "dockerfile")} if isinstance(
        build, dict
    ) else {}  # fmt: skip
    if isinstance(build, dict) and isinstance(build.get("dockerfile"), str):
        typed["dockerfile"] = build["dockerfile"]
    ctx.component["build"] = typed if len(typed) > 1 else where
    ctx.differ(
        "pull_policy",
        f"built again from the carried sources on every start (pull_policy: build), so that a "
        f"changed source in files/{ctx.service}/{where} is a new image",
    )
    if rest:
        ctx.keep("build", rest, "build settings the inventory does not type")


def _command(ctx: ComponentContext) -> None:
    """Map ``command``: a string split into words as Compose splits it, a list as it is."""
    command = ctx.compose.get("command")
    if command is None:
        return
    if isinstance(command, str):
        try:
            ctx.component["command"] = shlex.split(command)
        except ValueError:
            ctx.keep("command", command, "Compose splits it differently")
    elif isinstance(command, list):
        ctx.component["command"] = [str(c) for c in command]
    else:
        ctx.problem(("command",), "expected a command line or a list of words")


#: Compose's conditions of ``depends_on`` and the inventory's words for them.
CONDITIONS = {
    "service_started": "started",
    "service_healthy": "healthy",
    "service_completed_successfully": "completed",
}


def _depends_on(ctx: ComponentContext, components: dict[str, str]) -> None:
    """Map ``depends_on`` (list or mapping) to names with what each waits for; keep it
    verbatim if it has options the inventory cannot say (``restart``, ``required``)."""
    given = ctx.compose.get("depends_on")
    if given is None:
        return
    entries: dict[str, dict[str, Any]]
    if isinstance(given, list):
        entries = {str(name): {} for name in given}
    elif isinstance(given, dict):
        entries = {str(k): v if isinstance(v, dict) else {} for k, v in given.items()}
    else:
        ctx.problem(("depends_on",), "expected a list or a mapping of services")
        return
    exact = True
    names: dict[str, str] = {}
    for name, options in entries.items():
        if name not in components:
            if options.get("required") is False:
                exact = False
                continue
            ctx.problem(
                ("depends_on",),
                f"depends on `{name}`, which the file does not define",
                "if this file adds to another, import the two together: "
                "`allmende import compose -f base.yaml -f this.yaml`",
            )
            continue
        condition = str(options.get("condition", "service_started"))
        names[components[name]] = CONDITIONS.get(condition, condition)
        exact = exact and condition in CONDITIONS and set(options) <= {"condition"}
    checked = {n for n, c in ctx.project.data["services"].items() if c.get("healthcheck")}
    plain = all(c == "started" for c in names.values()) and not checked & set(entries)
    if names:  # a list waits for a dependency's health check: say `started` where it did not
        ctx.component["depends_on"] = list(names) if plain else names
    if not exact:
        renamed = (
            {components.get(k, k): v for k, v in given.items()}
            if isinstance(given, dict)
            else given
        )
        ctx.keep("depends_on", renamed, "restart or required")


def _replicas(ctx: ComponentContext) -> None:
    """Map ``deploy.replicas`` or ``scale``; keep any other ``deploy`` key verbatim."""
    deploy = ctx.compose.get("deploy")
    scale = ctx.compose.get("scale")
    replicas = deploy.get("replicas") if isinstance(deploy, dict) else None
    replicas = scale if replicas is None else replicas
    if replicas is not None:
        if isinstance(replicas, int) and not isinstance(replicas, bool) and replicas >= 0:
            if replicas != 1:
                ctx.component["replicas"] = replicas
        else:
            ctx.problem(("deploy", "replicas"), "expected a whole number")
    if deploy is not None and (not isinstance(deploy, dict) or set(deploy) - {"replicas"}):
        ctx.keep("deploy", deploy, "deploy hints")


def _restart(ctx: ComponentContext) -> None:
    """Map ``restart``; without one a container is not restarted (Compose's default), which
    the inventory must then say, its own default being ``unless-stopped``. A policy it cannot
    say (``on-failure:5``) is kept verbatim."""
    given = ctx.compose.get("restart", "no")
    if given in RESTART:
        if given != "unless-stopped":
            ctx.component["restart"] = given
    else:
        ctx.keep("restart", given)


def _publish_for_routes(ctx: ComponentContext, routes: list[dict[str, Any]]) -> None:
    """Publish each routed port Traefik reached over the project's network and Compose never
    published: the edge reaches a component only on a published port. The host port is the
    container's (8000 more below 1024), the next free one of the project's when taken."""
    publish: dict[str, Any] = ctx.component.setdefault("publish", {})
    taken = {p["port"] if isinstance(p, dict) else p for p in publish.values()}
    for route in routes:
        port = str(route["to"]).partition(".")[2]
        if port in publish or port not in ctx.component.get("ports", {}):
            continue
        inside = ctx.component["ports"][port]
        number = inside if inside >= 1024 else inside + 8000
        while number in taken or number in ctx.taken_ports:
            number += 1
        taken.add(number)
        ctx.taken_ports.add(number)
        publish[port] = number
        ctx.differ(
            "ports",
            f"container port {inside} is published on the host's address as {number}, where "
            "the edge reaches the route Traefik served over the project's network (say "
            "`bind: 127.0.0.1` when the edge runs on this host)",
        )
    if not publish:
        del ctx.component["publish"]


def _labels(ctx: ComponentContext) -> list[dict[str, Any]]:
    """Turn Traefik labels into routes; keep every label they do not consume verbatim."""
    given = ctx.compose.get("labels")
    labels = labels_of(given)
    if labels is None:
        ctx.problem(("labels",), "expected a mapping or a list of key=value")
        return []
    deploy = ctx.compose.get("deploy")
    swarm = labels_of(deploy.get("labels")) if isinstance(deploy, dict) else None
    routes, consumed = map_traefik(ctx, {**(swarm or {}), **labels})
    _publish_for_routes(ctx, routes)
    if consumed & set(labels):
        ctx.differ(
            "labels",
            "the Traefik labels become routes the edge serves; the container no longer has them",
        )
    rest = {k: v for k, v in labels.items() if k not in consumed}
    if rest:
        ctx.keep("labels", rest)
        leftovers = [k for k in rest if k.startswith("traefik.")]
        if leftovers:
            shown = ", ".join(leftovers[:4]) + (", ..." if len(leftovers) > 4 else "")
            ctx.note(("labels",), "info", f"Traefik labels the edge cannot do: {shown}")
    return routes


def map_component(
    ctx: ComponentContext, definitions: dict[str, Any], components: dict[str, str]
) -> list[dict[str, Any]]:
    """Map one compose service into ``ctx.component`` and ``ctx.verbatim``; return its routes.

    ``definitions`` are the top-level volumes, ``components`` maps every compose service's
    name to its component's.
    """
    _image(ctx)
    _command(ctx)
    env = environment(ctx)
    if env:
        ctx.component["env"] = env
    map_ports(ctx)
    map_volumes(ctx, definitions)
    map_healthcheck(ctx)
    _depends_on(ctx, components)
    _replicas(ctx)
    _restart(ctx)
    routes = _labels(ctx)
    for key, value in ctx.compose.items():
        if key == "networks" and isinstance(value, list):
            ctx.keep(key, {str(n): {} for n in value})
        elif key not in MAPPED and key not in ("build", "deploy", "labels"):
            ctx.keep(key, value)
    return routes
