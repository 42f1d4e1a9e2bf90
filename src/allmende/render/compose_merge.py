"""``x-compose``: what a component or service says verbatim to Compose, merged into what is
rendered from its typed keys (for Compose projects and Swarm stacks alike)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from allmende.inventory.models import Component, Service
from allmende.inventory.xcompose import EXTENSION


def extension(model: Component | Service) -> Mapping[str, Any]:
    """Given a component or a service, return its ``x-compose`` mapping (empty when it has
    none or it is not a mapping)."""
    value = model.extensions.get(EXTENSION)
    return value if isinstance(value, Mapping) else {}


#: Keys of a component's ``x-compose`` whose entries are added to those rendered from the
#: typed keys (ports and mounts the inventory cannot say), never put in their place.
ADDED = ("ports", "volumes")


def merge_service(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Given a rendered Compose service and its component's ``x-compose``, return them merged
    as ``merge`` does, except that the entries of ``ports`` and ``volumes`` under ``x-compose``
    follow those rendered: an entry equal to one of them is not repeated, and a volume mounted
    where a rendered one is takes its place (it says the options, such as ``:ro``, of the same
    mount; ``xcompose.typed`` reports one whose source contradicts the inventory's)."""
    added = {k: v for k, v in extra.items() if k in ADDED and isinstance(v, list)}
    result = merge(base, {k: v for k, v in extra.items() if k not in added})
    for key, entries in added.items():
        current = list(result.get(key) or [])
        if key == "volumes":
            replacing = {mount_target(e): e for e in entries}
            current = [replacing.pop(mount_target(e), e) for e in current]
            entries = [e for e in entries if mount_target(e) in replacing]
        result[key] = current + [e for e in entries if e not in current]
    return result


def mount_target(entry: Any) -> str | None:
    """Given a Compose ``volumes`` entry, return the path it is mounted at inside (or None)."""
    if isinstance(entry, Mapping):
        target = entry.get("target")
        return str(target).rstrip("/") or "/" if target is not None else None
    parts = str(entry).split(":")
    target = parts[1] if len(parts) > 1 else parts[0]
    return target.rstrip("/") or "/"


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Given a mapping and an extension, return the mapping with the extension merged in:
    mappings merge key by key, any other value of the extension replaces the base's."""
    result = dict(base)
    for key, value in extra.items():
        current = result.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            result[key] = merge(current, value)
        else:
            result[key] = value
    return result
