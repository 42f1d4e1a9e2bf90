"""The building blocks of the inventory's models: the base classes, the field types users
write (names, ports, durations, sizes, DNS names) and their validators."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from allmende.inventory import dnsnames
from allmende.inventory.safenames import why_unsafe

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
DURATION_PATTERN = r"^[0-9]+(ms|s|m|h|d|w)$"
SIZE_PATTERN = r"^[0-9]+(\.[0-9]+)?\s*(B|[KMGTP]i?B)$"

Duration = Annotated[
    str,
    StringConstraints(pattern=DURATION_PATTERN),
    Field(description="A duration: a number and a unit, ms, s, m, h, d or w (e.g. `30s`, `5m`)."),
]
Size = Annotated[
    str,
    StringConstraints(pattern=SIZE_PATTERN),
    Field(description="A size such as `16GiB` or `512GB`."),
]


def _whole_number(value: Any) -> Any:
    """Accept a port written as a decimal whole number only: not `true`, `1e3`, `"80"` or
    `0o17` (the YAML reader keeps the octal and hex forms apart)."""
    if type(value) is int:
        return value
    written = f"`{value}`" if isinstance(value, int | float) else "that"
    if isinstance(value, bool):
        written = f"`{str(value).lower()}`"
    elif isinstance(value, str):
        written = f'the text "{value}"' if value.isprintable() and len(value) < 40 else "text"
    raise ValueError(f"{written} is not a port: write a whole number from 1 to 65535")


Port = Annotated[
    int, BeforeValidator(_whole_number, json_schema_input_type=int), Field(ge=1, le=65535)
]


def _safe_name(value: str) -> str:
    why = why_unsafe(value)
    if why is not None:
        raise ValueError(why)
    return value


#: A name that becomes part of a path, a project name or a command argument (see
#: ``inventory.safenames``); its house style is the check ``names.format``.
SafeName = Annotated[str, AfterValidator(_safe_name)]


def _dns(check: Callable[[str], str]) -> Callable[[Any], Any]:
    """Return a validator that runs one of ``dnsnames``' checks on a value (None passes)."""

    def validate(value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except dnsnames.BadName as exc:
            raise ValueError(str(exc)) from None

    return validate


_domain = _dns(dnsnames.domain)


def _host_address(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return dnsnames.host_address(value)
    except dnsnames.BadName as exc:
        raise ValueError(str(exc)) from None


#: A DNS name: ASCII (IDNA for other letters), lowercase, without the final dot.
DomainName = Annotated[str, AfterValidator(_domain)]

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(duration: str) -> float:
    """Given a duration such as ``5m``, return it in seconds (300.0)."""
    match = re.match(DURATION_PATTERN, duration)
    if not match:
        raise ValueError(f"not a duration: {duration!r}")
    unit = match.group(1)
    return float(duration[: -len(unit)]) * _DURATION_UNITS[unit]


def _text(value: Any) -> Any:
    """Accept numbers and booleans where text is expected, written the way YAML shows them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


EnvValue = Annotated[str, BeforeValidator(_text, json_schema_input_type=str | int | float | bool)]


def _command(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split the command into words: {exc}") from exc
    return value


#: The validation context under which the loader salvages a file that has problems: the
#: rules between keys ("exactly one of") are left out, so that the rest of the file can still be
#: checked; such a model never leaves the loader.
SALVAGE = {"salvage": True}


def salvaging(info: ValidationInfo) -> bool:
    """Whether the model is validated to salvage a file already known to have problems."""
    return bool(info.context and info.context.get("salvage"))


def missing_key(key: str, hint: str) -> PydanticCustomError:
    """Return the error of a required key that a rule between keys found missing (the loader
    reports it as it reports any missing key, at the mapping that lacks it)."""
    return PydanticCustomError(
        "missing_key", "required key `{key}` is missing", {"key": key, "hint": hint}
    )


class Model(BaseModel):
    """Base of every inventory model: frozen, no unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Extensible(Model):
    """A model that also keeps ``x-`` extension keys verbatim (as Compose does)."""

    extensions: dict[str, Any] = Field(
        default_factory=dict,
        exclude=True,
        description="Keys starting with `x-`, kept verbatim for tools and importers.",
    )

    @model_validator(mode="before")
    @classmethod
    def _collect_extensions(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(str(k).startswith("x-") for k in data):
            data = dict(data)
            data["extensions"] = {k: data.pop(k) for k in list(data) if str(k).startswith("x-")}
        return data


class Allow(Model):
    """A finding accepted on purpose, written in the file the finding is located in."""

    rule: str = Field(description="The rule id, e.g. `volumes.under_srv`.")
    reason: str = Field(min_length=1, description="Why this is fine here.")
