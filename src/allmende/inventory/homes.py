"""Where a key belongs: the places in the inventory's models where a key of that name is
written, so that a key written at the wrong level can be told where it goes."""

from __future__ import annotations

import types
import typing
from functools import cache
from typing import Any, Union

from pydantic import BaseModel

#: A place as users read it: the keys from the top of a file, ``<name>`` for any name of a
#: mapping of names (a component, a person), ``[]`` for any item of a list.
Place = tuple[str, ...]

#: What stands under the places that name their own thing.
_THINGS = {
    ("components", "<name>"): "a component",
    ("routes", "[]"): "a route",
    ("expose", "[]"): "an exposed port",
    ("uses", "[]"): "a `uses` entry",
    ("people", "<name>"): "a person",
    ("records", "[]"): "a record",
    ("notify", "[]"): "a `notify` entry",
    ("monitor", "[]"): "a monitor",
}


def _types(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _types(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _types(arg)]
    return [annotation]


def _below(annotation: Any) -> list[tuple[Place, type[BaseModel]]]:
    """Return the models an annotation holds, each with the place parts that lead to it."""
    found: list[tuple[Place, type[BaseModel]]] = []
    for kind in _types(annotation):
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found.append(((), kind))
            continue
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        if origin is dict and len(args) == 2:
            found += [(("<name>", *p), m) for p, m in _below(args[1])]
        elif origin in (tuple, list) and args:
            found += [(("[]", *p), m) for p, m in _below(args[0])]
    return found


@cache
def places(model: type[BaseModel]) -> dict[str, tuple[Place, ...]]:
    """Given the model of a whole file, return every key it may hold -> the places it is
    written, shallowest first."""
    out: dict[str, list[Place]] = {}

    def walk(current: type[BaseModel], at: Place, seen: frozenset[type[BaseModel]]) -> None:
        for name, field in current.model_fields.items():
            key = field.alias or name
            if name == "extensions":
                continue
            out.setdefault(key, []).append((*at, key))
            for parts, inner in _below(field.annotation):
                if inner not in seen:
                    walk(inner, (*at, key, *parts), seen | {inner})

    walk(model, (), frozenset({model}))
    return {key: tuple(sorted(found, key=len)) for key, found in out.items()}


def spelled(place: Place) -> str:
    """Return a place as users write it: ``components.<name>.healthcheck``, ``routes[].to``."""
    out = ""
    for part in place:
        out += part if part == "[]" else ("." if out else "") + part
    return out


def belongs(model: type[BaseModel], key: str, at: tuple[str | int, ...]) -> str | None:
    """Given the model of a file and a key found unknown at the key path ``at`` (the key's
    parent), return where such a key belongs, as a hint, or None when no place has it."""
    found = places(model).get(key)
    if not found:
        return None
    written = tuple("[]" if isinstance(p, int) else p for p in at)

    def shared(place: Place) -> int:
        return sum(1 for a, b in zip(place, written, strict=False) if a in (b, "<name>"))

    place = max(found, key=lambda p: (shared(p), -len(p)))
    if len(place) == 1:
        return f"`{key}` belongs at the top of the file, not under `{spelled(written)}`"
    parent = place[:-1]
    for prefix, thing in _THINGS.items():
        if parent == prefix:
            return f"`{key}` belongs under {thing}: {spelled(place)}"
    return f"`{key}` belongs under `{spelled(parent)}`: {spelled(place)}"
