"""The `schema` verb: the inventory's JSON Schema, whole or one kind, printed or as files."""

from __future__ import annotations

from pathlib import Path

from allmende.errors import UserError
from allmende.inventory.atomic import save
from allmende.inventory.schema import KINDS, dumps, inventory_schema, kind_schema


def text(kind: str | None = None) -> str:
    """Return the JSON Schema of one kind of file (``KINDS``), or of the whole inventory."""
    return dumps(kind_schema(kind) if kind else inventory_schema())  # type: ignore[arg-type]


def write(out: Path) -> list[Path]:
    """Write one schema file per kind (``collective.json``, ...) into the directory ``out``,
    made with its parents if missing, each file atomically; return the files written.

    Raise UserError naming the path if the directory cannot be made or a file written.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot make the directory {out}: {exc.strerror or exc}") from None
    written = []
    for kind in KINDS:
        target = out / f"{kind}.json"
        save(target, dumps(kind_schema(kind)).encode("utf-8"))
        written.append(target)
    return written
