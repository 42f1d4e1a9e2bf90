"""The inventory reference page, written from the same models as the JSON Schema."""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Union

from pydantic import BaseModel, WithJsonSchema
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from allmende.inventory.load import MODELS
from allmende.inventory.schema import FILES, KINDS

INTRO = """\
# Inventory reference

Generated from allmende's models (`allmende schema` prints the same as JSON Schema); do not
edit by hand. An inventory is a directory:

```
allmende.yaml            the collective (required)
hosts/<host>.yaml        one file per host; the file name is the host's name
services/<service>.yaml  one file per service; the file name is the service's name
zones/<domain>.yaml      optional: DNS records beyond those derived from routes and hosts
secrets/                 encrypted secret values (`allmende secret`)
```

Names of hosts, services, components, ports, volumes and people: lowercase letters, digits and
`-`, starting with a letter, at most 63 characters. Scalars follow YAML 1.2: only `true` and
`false` are booleans, so `no`, `on` and country codes such as `NO` stay text. Keys starting with
`x-` are kept verbatim as extensions wherever a section says so.
"""


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin in (Union, types.UnionType):
        return " or ".join(_type(a) for a in args if a is not type(None))
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (tuple, list):
        return f"list of {_type(args[0])}"
    if origin is dict:
        return f"mapping of name to {_type(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    names = {str: "text", int: "integer", float: "number", bool: "true/false"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _field_type(field: FieldInfo) -> str:
    """Return a field's type for people: its choices where its schema lists them."""
    for extra in field.metadata:
        if isinstance(extra, WithJsonSchema) and extra.json_schema and "enum" in extra.json_schema:
            return " \\| ".join(f"`{a}`" for a in extra.json_schema["enum"])
    return _type(field.annotation)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default is PydanticUndefined or field.default in (None, (), {}):
        return ""
    return f"`{json.dumps(field.default)}`"


def _models(model: type[BaseModel], seen: dict[str, type[BaseModel]]) -> None:
    """Collect a model and every model it refers to, in order of first appearance."""
    if model.__name__ in seen:
        return
    seen[model.__name__] = model
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            current = stack.pop(0)
            if isinstance(current, type) and issubclass(current, BaseModel):
                _models(current, seen)
            stack.extend(typing.get_args(current))


def _section(model: type[BaseModel], heading: str) -> list[str]:
    lines = [f"{heading} {model.__name__}", "", (model.__doc__ or "").strip(), ""]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name == "extensions":
            continue
        meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {_field_type(field)} | {_default(field)} | {meaning} |")
    if "extensions" in model.model_fields:
        lines.append("| `x-...` | anything | | Extension keys, kept verbatim. |")
    return [*lines, ""]


def markdown() -> str:
    """Return the whole inventory reference as Markdown."""
    lines = [INTRO]
    seen: dict[str, type[BaseModel]] = {}
    for kind in KINDS:
        _models(MODELS[kind], seen)
    tops = {MODELS[kind].__name__: kind for kind in KINDS}
    for kind in KINDS:
        lines += [f"## `{FILES[kind]}`", ""]
        lines += _section(MODELS[kind], "###")[1:]
    lines += ["## Sections", ""]
    for name, model in seen.items():
        if name not in tops:
            lines += _section(model, "###")
    return "\n".join(lines).rstrip() + "\n"
