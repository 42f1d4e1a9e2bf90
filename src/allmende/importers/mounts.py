"""Ports and volumes of a compose service: what the inventory can say, and what stays verbatim.

Ports: ``[host_ip:][published:]target[/protocol]`` and the long syntax. A TCP port published
on one port of the host becomes ``ports`` + ``publish`` with the address it is bound to; the
other entries (UDP, ranges, an unpublished ``"80"`` that Compose publishes on a random port)
stay verbatim under ``x-compose.ports``, which the renderer adds to the ports it writes, the
ports still named in the inventory. ``expose`` becomes named ``ports``.

Volumes: a bind mount keeps its host path (made absolute from the project's directory, as
Compose does); a named volume without options lives at ``/srv/<service>/<volume>``. An entry
with what the inventory cannot hold (``:ro``, ``:z``, tmpfs, anonymous volumes, external or
driver volumes) stays verbatim under ``x-compose.volumes`` with the same path rewritten; the
renderer puts it in place of the typed mount at the same target.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, replace
from typing import Any

from allmende.importers.carry import carry, data_volume, relative_source
from allmende.importers.context import ComponentContext
from allmende.importers.naming import PORT_NAMES, port_name, sanitize, unique, valid
from allmende.inventory.hostpaths import service_dir, volume_dir

_RANGE = re.compile(r"^[0-9]+(?:-[0-9]+)?$")
_HARMLESS_MODES = frozenset({"", "rw", "consistent", "cached", "delegated"})


@dataclass(frozen=True)
class PortSpec:
    """One entry of ``ports`` or ``expose``, read."""

    target: int | None
    published: int | None
    exact: bool
    protocol: str
    host_ip: str
    name: str | None


def _int(text: Any) -> int | None:
    text = str(text).strip()
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def parse_port(entry: Any) -> PortSpec | None:
    """Given a ``ports`` entry, return it read, or None if it is malformed."""
    if isinstance(entry, int) and not isinstance(entry, bool):
        entry = str(entry)
    if isinstance(entry, str):
        text, _, protocol = entry.strip().partition("/")
        parts = text.split(":")  # as Docker does: the address is whatever precedes the last two
        target_text = parts[-1]
        published = parts[-2] if len(parts) > 1 else None
        ip = ":".join(parts[:-2]).strip("[]") if len(parts) > 2 else ""
        if not _RANGE.match(target_text) or (published and not _RANGE.match(published)):
            return None
        protocol = (protocol or "tcp").lower()
        target = _int(target_text)
        pub = _int(published) if published else None
        exact = pub is not None and target is not None and protocol == "tcp"
        return PortSpec(target, pub, exact, protocol, ip, None)
    if isinstance(entry, dict) and "target" in entry:
        target = _int(entry["target"])
        pub = _int(entry.get("published", "")) if entry.get("published") is not None else None
        protocol = str(entry.get("protocol") or "tcp").lower()
        ip = str(entry.get("host_ip") or "")
        simple = set(entry) <= {"target", "published", "protocol", "host_ip", "name", "mode"}
        exact = (
            simple
            and pub is not None
            and target is not None
            and protocol == "tcp"
            and entry.get("mode") in (None, "ingress")
        )
        name = entry.get("name") if isinstance(entry.get("name"), str) else None
        return PortSpec(target, pub, exact, protocol, ip, name)
    return None


def _name_for(ctx: ComponentContext, spec: PortSpec, wanted: str | None = None) -> str | None:
    """Return the component's port name for this container port, naming it if new."""
    if spec.target is None or spec.protocol not in ("tcp", "udp"):
        return None
    ports: dict[str, int] = ctx.component.setdefault("ports", {})
    udp = ctx.udp
    for name, number in ports.items():
        if number == spec.target and (name in udp) == (spec.protocol == "udp"):
            return name
    if wanted and valid(wanted) and wanted not in ports:
        name = wanted
    elif spec.protocol == "udp":
        name = unique(f"{PORT_NAMES.get(spec.target, f'port-{spec.target}')}-udp", ports)
    else:
        name = port_name(spec.target, ports)
    ports[name] = spec.target
    if spec.protocol == "udp":
        udp.add(name)
        ctx.comment(("ports", name), "UDP")
    return name


def port_for(ctx: ComponentContext, number: int, wanted: str | None = None) -> str:
    """Return the name of the component's TCP port ``number``, adding it if it is not there."""
    spec = PortSpec(number, None, True, "tcp", "", None)
    name = _name_for(ctx, spec, wanted)
    assert name is not None
    return name


def _bind(host_ip: str) -> str:
    """Return the address a port published on ``host_ip`` listens on, as the inventory says it:
    no address is every interface (``0.0.0.0``, as the Compose specification says)."""
    return host_ip if host_ip not in ("", "[::]") else ("::" if host_ip == "[::]" else "0.0.0.0")


def map_ports(ctx: ComponentContext) -> None:
    """Map ``ports`` and ``expose`` of the compose service into the component: each TCP port
    published on one port of the host becomes ``publish`` with the address it listens on;
    every other entry (UDP, ranges, a port Compose picks) stays under ``x-compose.ports``,
    which the renderer adds to those it writes."""
    entries = ctx.compose.get("ports")
    if entries is not None and not isinstance(entries, list):
        ctx.problem(("ports",), "expected a list of ports")
        entries = None
    publish: dict[str, dict[str, Any]] = {}
    rest: list[Any] = []
    for i, entry in enumerate(entries or []):
        spec = parse_port(entry)
        if spec is None:
            ctx.problem(
                ("ports", i),
                f"cannot read the port {entry!r}",
                "write [ADDRESS:]HOST:CONTAINER[/PROTOCOL]; is a variable in it unset?",
            )
            continue
        name = _name_for(ctx, spec, spec.name)
        if not spec.exact or name is None or spec.published is None or name in publish:
            rest.append(entry)
            continue
        publish[name] = {"port": spec.published, "bind": _bind(spec.host_ip)}
    if publish:
        ctx.component["publish"] = publish
    if rest:
        ctx.keep("ports", rest, "UDP, port ranges or ports Compose picks")
    _expose(ctx)
    if not ctx.component.get("ports"):
        ctx.component.pop("ports", None)


def _expose(ctx: ComponentContext) -> None:
    entries = ctx.compose.get("expose")
    if entries is None:
        return
    if not isinstance(entries, list):
        ctx.problem(("expose",), "expected a list of ports")
        return
    exact = True
    for i, entry in enumerate(entries):
        text = str(entry)
        match = re.fullmatch(r"([0-9]+)(?:/(tcp|udp))?", text.strip())
        if match is None or _int(match.group(1)) is None:
            exact = exact and bool(re.fullmatch(r"[0-9]+-[0-9]+(/(tcp|udp))?", text.strip()))
            if not exact:
                ctx.problem(("expose", i), f"cannot read the port {entry!r}")
                return
            continue
        number = _int(match.group(1))
        _name_for(ctx, PortSpec(number, None, True, match.group(2) or "tcp", "", None))
    ctx.keep("expose", entries, "" if exact else "port ranges")


# --------------------------------------------------------------------------- volumes


@dataclass(frozen=True)
class Mount:
    """One entry of ``volumes``, read: where it comes from and what the inventory can say."""

    kind: str  # bind | volume | anonymous | other
    source: str
    target: str
    host: str | None  # the host path after rewriting (binds, plain named volumes)
    exact: bool


def _host_path(ctx: ComponentContext, source: str) -> str | None:
    if source.startswith("~"):
        home = ctx.project.env.get("HOME")
        if not home:
            return None
        source = home + source[1:]
    if not source.startswith("/"):
        source = posixpath.join(ctx.project.directory.absolute().as_posix(), source)
    return posixpath.normpath(source)


def _plain(definitions: dict[str, Any], name: str) -> bool:
    return name in definitions and definitions[name] in (None, {})


def read_mount(ctx: ComponentContext, entry: Any, definitions: dict[str, Any]) -> Mount | None:
    """Given a ``volumes`` entry and the top-level volume definitions, return it read."""
    if isinstance(entry, str):
        parts = entry.split(":")
        if len(parts) == 1:
            return Mount("anonymous", "", parts[0], None, False)
        if len(parts) > 3 or re.match(r"^[A-Za-z]:[\\/]", entry):
            return Mount("other", entry, entry, None, False)
        source, target = parts[0], parts[1]
        if not source or not target:
            return None
        options = set(parts[2].split(",")) if len(parts) == 3 else set()
        exact = options <= _HARMLESS_MODES
    elif isinstance(entry, dict) and "target" in entry:
        kind = str(entry.get("type") or "volume")
        source, target = str(entry.get("source") or ""), str(entry["target"])
        if kind not in ("bind", "volume") or not source:
            return Mount("other", source, target, None, False)
        allowed = {"type", "source", "target", "consistency", "bind", "volume"}
        bind_options = entry.get("bind") or {}
        volume_options = entry.get("volume") or {}
        exact = (
            set(entry) <= allowed
            and not entry.get("read_only")
            and set(bind_options) <= {"create_host_path"}
            and set(volume_options) <= {"nocopy"}
        )
    else:
        return None
    if source.startswith(("/", ".", "~")):
        host = _host_path(ctx, source)
        return Mount("bind", source, target, host, exact and host is not None)
    if _plain(definitions, source):
        return Mount("volume", source, target, volume_dir(ctx.service, sanitize(source)), exact)
    return Mount("volume", source, target, None, False)


def _rewrite(entry: Any, mount: Mount) -> Any:
    """Return the entry with its source replaced by the host path it now has."""
    if mount.host is None or mount.host == mount.source:
        return entry
    if isinstance(entry, str):
        rest = entry.split(":", 1)[1]
        return f"{mount.host}:{rest}"
    rewritten = {**entry, "source": mount.host}
    if mount.kind == "volume":
        rewritten["type"] = "bind"
        rewritten.pop("volume", None)
    return rewritten


def _volume_name(ctx: ComponentContext, mount: Mount) -> str:
    if mount.kind == "volume":
        return sanitize(mount.source)
    assert mount.host is not None
    under = f"{service_dir(ctx.service)}/"
    if mount.host.startswith(under):
        return sanitize(mount.host[len(under) :].split("/")[0])
    return sanitize(posixpath.basename(mount.target.rstrip("/")) or "data")


def _options(entry: Any) -> set[str]:
    """Return the options of a ``volumes`` entry (``ro`` for a read-only long one)."""
    if isinstance(entry, str):
        parts = entry.split(":")
        return set(parts[2].split(",")) - {""} if len(parts) == 3 else set()
    return {"ro"} if entry.get("read_only") else set()


def _relative_mount(
    ctx: ComponentContext, index: int, entry: Any, mount: Mount, taken: set[str]
) -> tuple[bool, Any, Mount]:
    """Place a mount of a path of the project (``carry``): configuration is carried (True:
    ``files`` says it, unless options beyond ``:ro`` need the verbatim entry returned), data
    becomes a volume under /srv/<service>/; return the entry and mount rewritten."""
    options = _options(entry)
    plain = isinstance(entry, str) or set(entry) <= {"type", "source", "target", "read_only"}
    host = carry(ctx, mount.source, mount.target, "ro" in options)
    if host is not None:
        carried = replace(mount, host=host, exact=plain and options - {"ro"} <= _HARMLESS_MODES)
        return True, _rewrite(entry, carried), carried
    relative = relative_source(mount.source) or "data"
    name = unique(sanitize(relative.replace("/", "-")), taken)
    host = data_volume(ctx, index, mount.source, name)
    moved = replace(mount, host=host, exact=plain and options <= _HARMLESS_MODES)
    return False, _rewrite(entry, moved), moved


def map_volumes(ctx: ComponentContext, definitions: dict[str, Any]) -> None:
    """Map ``volumes`` of the compose service into the component (see the module's text)."""
    entries = ctx.compose.get("volumes")
    if entries is None:
        return
    if not isinstance(entries, list):
        ctx.problem(("volumes",), "expected a list of volumes")
        return
    volumes: dict[str, Any] = {}
    rest: list[Any] = []
    for i, entry in enumerate(entries):
        mount = read_mount(ctx, entry, definitions)
        if mount is None:
            ctx.problem(
                ("volumes", i),
                f"cannot read the volume {entry!r}",
                "write SOURCE:TARGET[:MODE]; is a variable in it unset?",
            )
            continue
        if mount.kind == "bind" and relative_source(mount.source) is not None:
            carried, entry, mount = _relative_mount(ctx, i, entry, mount, set(volumes))
            if carried:
                rest += [] if mount.exact else [entry]
                continue
        if mount.kind == "volume" and mount.source not in definitions:
            ctx.problem(
                ("volumes", i),
                f"refers to the volume `{mount.source}`, which the file does not define",
                f"add `{mount.source}:` under the top-level `volumes`",
            )
            continue
        if not mount.exact:
            rest.append(_rewrite(entry, mount))
        if mount.host is None or not mount.target.startswith("/"):
            continue
        if mount.kind == "volume":
            ctx.differ(
                "volumes",
                f"the compose volume {mount.source} is the directory {mount.host}: "
                "empty until its data is copied there",
            )
        name = _volume_name(ctx, mount)
        default = volume_dir(ctx.service, name)
        value: Any = mount.target if mount.host == default else {"path": mount.target}
        if isinstance(value, dict):
            value["host"] = mount.host
        if name in volumes and volumes[name] != value:
            name = unique(name, volumes)
            value = {"path": mount.target, "host": mount.host}
        volumes[name] = value
    if volumes:
        ctx.component["volumes"] = volumes
    if rest:
        ctx.keep("volumes", rest, "mount options (:ro, :z), tmpfs or compose volumes")
