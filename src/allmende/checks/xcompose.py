"""``x-compose``: what a component keeps verbatim for Compose must not say otherwise than its
typed keys, or editing the typed key changes nothing (the verbatim value is merged last)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from allmende.checks.registry import Context, Finding, rule
from allmende.inventory.derive import volume_host_path
from allmende.inventory.hostpaths import carried_file
from allmende.inventory.models import Component
from allmende.inventory.xcompose import EXTENSION

_CONDITIONS = {"service_started": "started", "service_healthy": "healthy"}
_CONDITIONS["service_completed_successfully"] = "completed"


def _target(entry: Any) -> tuple[str, str | None]:
    """Return (path inside, source) of a Compose ``volumes`` entry."""
    if isinstance(entry, Mapping):
        return str(entry.get("target", "")).rstrip("/"), entry.get("source")
    parts = str(entry).split(":")
    return (parts[1] if len(parts) > 1 else parts[0]).rstrip("/"), parts[0] if parts[1:] else None


def _published(entry: Any) -> tuple[str, str]:
    """Return (address, host port) of a Compose ``ports`` entry (no address: every one)."""
    if isinstance(entry, Mapping):
        return str(entry.get("host_ip") or ""), str(entry.get("published", ""))
    text = str(entry).split("/")[0].split(":")
    return ":".join(text[:-2]).strip("[]"), (text[-2] if len(text) > 1 else "")


def contradictions(service: str, component: Component) -> Iterator[tuple[str, str]]:
    """Yield (key under x-compose, what the typed key says) for every contradiction."""
    kept = component.extensions.get(EXTENSION)
    if not isinstance(kept, Mapping):
        return
    if "image" in kept and kept["image"] != component.image:
        yield "image", f"`image` says {component.image}"
    if "command" in kept and component.command is not None:
        yield "command", "`command` says another command"
    env = {**component.env, **dict.fromkeys(component.secrets, None)}
    given = kept.get("environment")
    for key, value in given.items() if isinstance(given, Mapping) else ():
        if key in env and (env[key] is None or str(env[key]) != str(value)):
            yield f"environment.{key}", "`env` or `secrets` sets it"
    check = kept.get("healthcheck")
    if component.healthcheck is not None and isinstance(check, Mapping) and "test" in check:
        yield "healthcheck.test", "`healthcheck` says what is checked"
    built = kept.get("build")
    typed_too = not isinstance(built, Mapping) or {"context", "dockerfile"} & set(built)
    if component.build is not None and built is not None and typed_too:
        yield "build", "`build` says where the sources are"
    if "restart" in kept and kept["restart"] != component.restart:
        yield "restart", f"`restart` says {component.restart}"
    waits = kept.get("depends_on")
    for name, options in waits.items() if isinstance(waits, Mapping) else ():
        condition = _CONDITIONS.get(str((options or {}).get("condition", "")))
        if name in component.depends_on and condition and condition != component.depends_on[name]:
            yield f"depends_on.{name}", f"`depends_on` says {component.depends_on[name]}"
    typed = {
        v.path.rstrip("/"): volume_host_path(service, n, v) for n, v in component.volumes.items()
    }
    typed |= {t.rstrip("/"): carried_file(service, f.source) for t, f in component.files.items()}
    for entry in kept.get("volumes") or []:
        target, source = _target(entry)
        if target in typed and source is not None and source != typed[target]:
            yield f"volumes {target}", f"`volumes` or `files` mounts {typed[target]} there"
    binds = {str(p.port): p.bind for p in component.publish.values()}
    for entry in kept.get("ports") or []:
        udp = "udp" in str(entry.get("protocol") if isinstance(entry, Mapping) else entry)
        address, host = _published(entry)
        if udp or host not in binds:
            continue
        every = {"", "0.0.0.0", "::", None}
        if address in every or binds[host] in every or address == binds[host]:
            yield f"ports {entry}", "`publish` publishes that port"


@rule(
    "xcompose.typed",
    "error",
    "x-compose is merged last and verbatim: where it says otherwise than a typed key, the "
    "typed key is what one edits and what the documentation shows, yet Compose runs the other.",
    "drop the key from x-compose, or say it in the typed key instead",
)
def xcompose_typed(ctx: Context) -> Iterator[Finding]:
    for name, service in sorted(ctx.inventory.services.items()):
        for cname, component in sorted(service.components.items()):
            for key, typed in contradictions(name, component):
                yield ctx.finding(
                    "service",
                    name,
                    ("components", cname, EXTENSION, key.split(" ")[0].split(".")[0]),
                    f"x-compose {key} contradicts the typed key: {typed}",
                )
