"""Values kept for Compose under ``x-compose``: the key, and ``$`` written ``$$`` in them.

Compose substitutes variables in every string of a project; values the inventory holds (or an
importer kept) are meant literally, so each ``$`` in them is written ``$$``.
"""

from __future__ import annotations

from typing import Any

#: The key of a component's or service's verbatim Compose keys.
EXTENSION = "x-compose"


def escape(value: Any) -> Any:
    """Given plain data, return it with ``$`` written ``$$`` in every string, so that Compose
    does not substitute variables in values from the inventory."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [escape(v) for v in value]
    if isinstance(value, dict):
        return {k: escape(v) for k, v in value.items()}
    return value
