"""The inventory's JSON Schema, generated from the models: one schema per kind of file.

Editors that speak JSON Schema (VS Code and others through yaml-language-server) complete and
check inventory files when a file starts with
``# yaml-language-server: $schema=<path or URL of service.json>``.
"""

from __future__ import annotations

import json
from typing import Any

from allmende import version
from allmende.inventory.inventory import Kind
from allmende.inventory.load import MODELS

DIALECT = "https://json-schema.org/draft/2020-12/schema"
KINDS: tuple[Kind, ...] = ("collective", "host", "service", "zone")
FILES: dict[Kind, str] = {
    "collective": "allmende.yaml",
    "host": "hosts/<host>.yaml",
    "service": "services/<service>.yaml",
    "zone": "zones/<domain>.yaml",
}


def _extensions(node: Any) -> None:
    """Replace the internal `extensions` field by what users write: keys starting with `x-`."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict) and "extensions" in properties:
            del properties["extensions"]
            node["patternProperties"] = {"^x-": {}}
        for value in node.values():
            _extensions(value)
    elif isinstance(node, list):
        for value in node:
            _extensions(value)


def kind_schema(kind: Kind) -> dict[str, Any]:
    """Return the JSON Schema of one kind of inventory file."""
    schema = MODELS[kind].model_json_schema(mode="validation")
    _extensions(schema)
    return {
        "$schema": DIALECT,
        "$id": f"https://allmende.invalid/schema/{version()}/{kind}.json",
        "title": f"allmende {kind} ({FILES[kind]})",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def inventory_schema() -> dict[str, Any]:
    """Return one schema holding all four kinds under `$defs`; a file is one of them."""
    defs: dict[str, Any] = {}
    for kind in KINDS:
        schema = kind_schema(kind)
        defs.update(schema.pop("$defs", {}))
        for key in ("$schema", "$id"):
            schema.pop(key)
        defs[kind] = schema
    return {
        "$schema": DIALECT,
        "$id": f"https://allmende.invalid/schema/{version()}/inventory.json",
        "title": "allmende inventory file",
        "anyOf": [{"$ref": f"#/$defs/{kind}"} for kind in KINDS],
        "$defs": dict(sorted(defs.items())),
    }


def dumps(schema: dict[str, Any]) -> str:
    """Return a schema as stable, indented JSON text ending in a newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
