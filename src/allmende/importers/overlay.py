"""Several compose files of one project, merged the way Compose merges ``-f a.yaml -f b.yaml``.

Mappings merge key by key, the later file winning; sequences are appended, except that
``command``, ``entrypoint`` and ``healthcheck.test`` are replaced, ``ports`` are unique by
address, published port, target and protocol, and ``volumes``, ``secrets`` and ``configs`` by
their target (a later entry replaces an earlier one with the same target). ``environment``,
``labels``, ``depends_on`` and ``networks`` merge as mappings whichever form they are written
in. In a later file, ``!override`` replaces a value whole and ``!reset`` removes it.
"""

from __future__ import annotations

from typing import Any

import yaml

from allmende.inventory.yamlpos import KeyPath

REPLACED = frozenset({"command", "entrypoint"})
AS_MAPPING = frozenset(
    {"environment", "labels", "depends_on", "networks", "sysctls", "annotations"}
)
UNIQUE_BY_TARGET = frozenset({"volumes", "secrets", "configs"})


def merge_tags(text: str) -> dict[KeyPath, str]:
    """Given a compose file's text, return the key paths tagged ``!override`` or ``!reset``."""
    found: dict[KeyPath, str] = {}

    def walk(node: yaml.Node, path: KeyPath) -> None:
        if node.tag in ("!override", "!reset"):
            found[path] = node.tag
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    walk(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return found
    if root is not None:
        walk(root, ())
    return found


def as_mapping(key: str, value: Any) -> Any:
    """Return a list-form ``environment``, ``labels``, ``depends_on`` or ``networks`` as the
    mapping Compose reads it as; any other value unchanged."""
    if not isinstance(value, list):
        return value
    if key == "depends_on":
        return {str(v): {"condition": "service_started"} for v in value}
    if key == "networks":
        return {str(v): None for v in value}
    out: dict[str, Any] = {}
    for item in value:
        name, sep, text = str(item).partition("=")
        out[name] = text if sep else None
    return out


def _target(key: str, entry: Any) -> Any:
    if isinstance(entry, dict):
        if key == "volumes":
            return entry.get("target")
        return entry.get("target") or entry.get("source")
    text = str(entry)
    if key == "volumes":
        parts = text.split(":")
        return parts[1] if len(parts) > 1 else parts[0]
    return text


def _port_key(entry: Any) -> Any:
    if isinstance(entry, dict):
        return tuple(str(entry.get(k, "")) for k in ("host_ip", "published", "target", "protocol"))
    return str(entry)


def _unique(key: str, base: list[Any], extra: list[Any]) -> list[Any]:
    identify = _port_key if key == "ports" else lambda e: _target(key, e)
    out = list(base)
    for entry in extra:
        marker = identify(entry)
        out = [e for e in out if identify(e) != marker]
        out.append(entry)
    return out


def _merge(base: Any, extra: Any, path: KeyPath, tags: dict[KeyPath, str]) -> Any:
    key = str(path[-1]) if path else ""
    if tags.get(path) == "!override":
        return extra
    in_service = len(path) == 3 and path[0] == "services"
    if in_service and key in AS_MAPPING:
        base, extra = as_mapping(key, base), as_mapping(key, extra)
    if isinstance(base, dict) and isinstance(extra, dict):
        out = dict(base)
        for name, value in extra.items():
            here = (*path, name)
            if tags.get(here) == "!reset":
                out.pop(name, None)
            elif name in out:
                out[name] = _merge(out[name], value, here, tags)
            else:
                out[name] = value
        return out
    if isinstance(base, list) and isinstance(extra, list):
        if in_service and key in REPLACED:
            return extra
        if in_service and (key in UNIQUE_BY_TARGET or key == "ports"):
            return _unique(key, base, extra)
        if path[-2:] == ("healthcheck", "test") or key == "test":
            return extra
        return [*base, *extra]
    return extra


def merge_files(
    base: dict[str, Any], extra: dict[str, Any], tags: dict[KeyPath, str]
) -> dict[str, Any]:
    """Given the data of a compose file, that of a later one and the later one's merge tags,
    return the data Compose would use."""
    merged = _merge(base, extra, (), tags)
    assert isinstance(merged, dict)
    return merged
