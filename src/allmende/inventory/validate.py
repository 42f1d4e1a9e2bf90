"""Validate parsed YAML against the models and turn every validation error into a Problem."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, TypeVar, Union

from pydantic import BaseModel, ValidationError

from allmende.errors import Problem
from allmende.inventory.homes import belongs
from allmende.inventory.models import DURATION_PATTERN, SALVAGE, SIZE_PATTERN
from allmende.inventory.yamlpos import Based, Document, KeyPath, dotted

M = TypeVar("M", bound=BaseModel)

_TYPE_NAMES = {
    bool: "true/false",
    int: "a number",
    float: "a number",
    str: "text",
    Based: "a number",
    dict: "a mapping",
    list: "a list",
    type(None): "nothing",
}


def closest(word: str, choices: typing.Iterable[str]) -> str | None:
    """Given a word and the valid choices, return the most similar choice, if any is close."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, choices: typing.Iterable[str], what: str = "") -> str:
    """Return a hint naming the closest choice, or listing the choices when none is close."""
    choices = sorted(choices)
    match = closest(word, choices)
    if match:
        return f"did you mean `{match}`?"
    if not choices:
        return f"there is no {what} yet" if what else ""
    shown = ", ".join(f"`{c}`" for c in choices[:12])
    more = ", ..." if len(choices) > 12 else ""
    return f"known {what + ' ' if what else ''}names: {shown}{more}"


def _unwrap(annotation: Any) -> list[Any]:
    """Return the concrete types an annotation may hold (Annotated/Optional/Union removed)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_unwrap(arg))
        return out
    return [annotation]


def _model_at(model: type[BaseModel], path: KeyPath) -> type[BaseModel] | None:
    """Given a model class and a key path into its data, return the model class found there."""
    current: list[Any] = [model]
    for part in path:
        following: list[Any] = []
        for candidate in current:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                field = candidate.model_fields.get(str(part))
                if field is not None:
                    following.extend(_unwrap(field.annotation))
                continue
            origin = typing.get_origin(candidate)
            args = typing.get_args(candidate)
            if origin is dict and len(args) == 2 and isinstance(part, str):
                following.extend(_unwrap(args[1]))
            elif origin in (tuple, list) and args and isinstance(part, int):
                following.extend(_unwrap(args[0]))
        current = following
    for candidate in current:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _data_path(data: Any, loc: tuple[int | str, ...], keep_last: bool) -> KeyPath:
    """Drop the parts of a pydantic error location that are not in the data (union labels)."""
    path: list[str | int] = []
    current = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(current, dict) and part in current:
            current = current[part]
            path.append(part)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
            path.append(part)
        elif last and keep_last:
            path.append(part)
    return tuple(path)


def _describe(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"`{value}`"
    if isinstance(value, str):
        return f"`{value}`" if len(value) < 40 else "text"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _message(error: Any, model: type[BaseModel], path: KeyPath) -> tuple[str, str]:
    """Return (message, hint) for one pydantic error at ``path``."""
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    name = str(path[-1]) if path else ""
    if kind == "missing":
        return f"required key `{name}` is missing", f"add `{name}: ...`"
    if kind == "extra_forbidden":
        owner = _model_at(model, path[:-1])
        allowed = [
            f.alias or n
            for n, f in (owner.model_fields.items() if owner else [])
            if n != "extensions"
        ]
        near = difflib.get_close_matches(name, allowed, n=1, cutoff=0.8)
        home = None if near else belongs(model, name, path[:-1])
        hint = home or did_you_mean(name, allowed, "key")
        return (
            f"unknown key `{name}`" + (" here" if home else ""),
            hint or "remove it; keys starting with `x-` are kept as extensions",
        )
    if kind == "missing_key":
        return f"required key `{ctx['key']}` is missing", str(ctx.get("hint", ""))
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        options = [o.strip().strip("'") for o in expected.replace(" or ", ", ").split(",")]
        match = closest(value, options) if isinstance(value, str) else None
        hint = f"did you mean `{match}`?" if match else ""
        return f"{_describe(value)} is not one of {', '.join(options)}", hint
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        if pattern == DURATION_PATTERN:
            return (
                f"{_describe(value)} is not a duration",
                "write a number and a unit: 30s, 5m, 2h, 1d",
            )
        if pattern == SIZE_PATTERN:
            return f"{_describe(value)} is not a size", "write a number and a unit: 512MB, 16GiB"
        return f"{_describe(value)} has the wrong form", f"it must match {pattern}"
    if kind in ("string_type",):
        return f"expected text, got {_describe(value)}", "quote the value"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {_describe(value)}", ""
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {_describe(value)}", ""
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_describe(value)}", ""
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping (key: value), got {_describe(value)}", ""
    if kind in ("tuple_type", "list_type"):
        return f"expected a list, got {_describe(value)}", "write `[a, b]` or one `- item` per line"
    bounds = {
        "less_than_equal": ("at most", "le"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("less than", "lt"),
        "greater_than": ("more than", "gt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"{_describe(value)} is too {'large' if 'less' in kind else 'small'}", (
            f"it must be {words} {ctx.get(key)}"
        )
    if kind == "too_short":
        return "must not be empty", ""
    if kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
        return message, ""
    message = str(error["msg"])
    return message[:1].lower() + message[1:], ""


def validate(model: type[M], doc: Document) -> tuple[M | None, list[Problem], set[KeyPath]]:
    """Given a model class and a parsed document, return the model instance or the problems.

    Every validation error becomes a Problem located at the offending key or value. A document
    with problems is salvaged where it can be (see ``_salvage``): the model then comes back with
    the problems, and the set of key paths that were left out or filled in to build it.
    """
    if not isinstance(doc.data, dict):
        problem = Problem(
            doc.locate(()),
            "",
            f"expected a mapping of keys, got {_TYPE_NAMES.get(type(doc.data), 'something else')}",
            "start the file with `key: value` lines",
        )
        return None, [problem], set()
    try:
        return model.model_validate(doc.data), [], set()
    except ValidationError as exc:
        problems = []
        errors = exc.errors()
        for error in errors:
            kind = error["type"]
            path = _data_path(doc.data, tuple(error["loc"]), keep_last=kind in ("missing",))
            message, hint = _message(error, model, path)
            at_key = kind in ("extra_forbidden", "missing") or error["loc"][-1:] == ("[key]",)
            location = doc.locate(path, key=at_key)
            if kind == "missing":
                location = doc.locate(path[:-1])
            elif kind == "missing_key":
                location = doc.locate(path)
                path = (*path, str(error["ctx"]["key"]))
            problems.append(Problem(location, dotted(path), message, hint))
        salvaged, spoiled = _salvage(model, doc.data)
        return salvaged, sorted(set(problems)), spoiled


def _deepest_last_first(path: KeyPath) -> tuple[int, list[str]]:
    return len(path), [str(part).zfill(9) for part in path]


def _placeholder(model: type[BaseModel], path: KeyPath) -> str | None:
    """Return what stands in for a missing required key at ``path`` while salvaging: an empty
    text for a plain text key (a description, a host name), None for anything else."""
    owner = _model_at(model, path[:-1])
    if owner is None:
        return None
    for name, field in owner.model_fields.items():
        if (field.alias or name) == path[-1]:
            return "" if field.annotation is str and not field.metadata else None
    return None


def _salvage(model: type[M], data: dict[str, Any]) -> tuple[M | None, set[KeyPath]]:
    """Return the model built from ``data`` as far as it goes, and the key paths left out or
    filled in to build it; None when nothing of the file can be salvaged.

    The rules between keys are left out (``models.SALVAGE``), a missing text key is filled with
    an empty text, and every other key that fails is left out. The problems are reported all
    the same; the salvaged model lets references in the rest of the file (and in the files that
    refer to it) be checked too, so that the user sees every problem at once. It never leaves
    the loader.
    """
    spoiled: set[KeyPath] = set()
    for _ in range(4):
        try:
            return model.model_validate(data, context=SALVAGE), spoiled
        except ValidationError as exc:
            errors = exc.errors()
        paths: set[KeyPath] = set()
        for error in errors:
            loc = tuple(error["loc"])
            if error["type"] == "missing":
                full = _data_path(data, loc, keep_last=True)
                filler = _placeholder(model, full)
                if filler is not None and isinstance(_at(data, full[:-1]), dict):
                    data = _copied_along(data, full[:-1])
                    _at(data, full[:-1])[str(full[-1])] = filler
                    spoiled.add(full)
                    continue
            paths.add(_data_path(data, loc, keep_last=False))
        if () in paths:
            return None, spoiled
        spoiled |= paths
        # Deepest and last first, so that removing a list item does not shift the others.
        for path in sorted(paths, key=_deepest_last_first, reverse=True):
            data = _copied_along(data, path[:-1])
            parent = _at(data, path[:-1])
            last = path[-1]
            if isinstance(parent, dict):
                parent.pop(last, None)
            elif isinstance(parent, list) and isinstance(last, int) and last < len(parent):
                del parent[last]
    return None, spoiled


def _at(data: Any, path: KeyPath) -> Any:
    """Return what is at ``path`` in ``data``, or None if nothing is."""
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _copied_along(data: Any, path: KeyPath) -> Any:
    """Return ``data`` with every mapping and list on ``path`` copied (the rest shared), so
    that what is at ``path`` can be changed without changing the parsed document: a deep copy
    would cost as much as the parse again (aliases expanded)."""
    copied: Any = dict(data) if isinstance(data, dict) else list(data)
    if path and _at(data, path[:1]) is not None and isinstance(data[path[0]], (dict, list)):
        copied[path[0]] = _copied_along(data[path[0]], path[1:])
    return copied
