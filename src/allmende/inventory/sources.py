"""Sources the inventory carries for a component under ``files/<service>/``: configuration
files handed to it (``files``) and the sources its image is built from (``build``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from allmende.inventory.fields import Model


def _relative(value: str) -> str:
    parts = value.split("/")
    if value.startswith("/") or ".." in parts or not value.strip("/."):
        raise ValueError("must be a path under files/<service>/, without `..`")
    return value


class CarriedFile(Model):
    """A configuration file or directory the inventory carries under `files/<service>/` and
    hands to a component at a path inside it."""

    source: str = Field(
        description="The file or directory under `files/<service>/` (a relative path)."
    )
    read_only: bool = Field(False, description="Mounted read-only.")

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        return _relative(value)


def _carried(value: Any) -> Any:
    return {"source": value} if isinstance(value, str) else value


class Build(Model):
    """An image built on the host from sources the inventory carries."""

    context: str = Field(
        description="The directory of the sources under `files/<service>/` (a relative path); "
        "on the host `/srv/<service>/files/<context>`."
    )
    dockerfile: str | None = Field(
        None, description="The Dockerfile, relative to the context; default `Dockerfile`."
    )

    @field_validator("context")
    @classmethod
    def _context(cls, value: str) -> str:
        return _relative(value)

    @field_validator("dockerfile")
    @classmethod
    def _inside(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in value.split("/")):
            raise ValueError("must be a path inside the context, without `..`")
        return value


def _build(value: Any) -> Any:
    return {"context": value} if isinstance(value, str) else value
