"""How every command names the inventory: ``-C DIR`` (``--inventory DIR``), the current
directory when not given.

A command takes it with ``@inventory_option()`` and gets it as its ``inventory`` parameter.
Older spellings are still accepted for a while, hidden from the help: the directory as the
first argument (``allmende check DIR``: ``inventory_option(positional=True)``) and an option of
another name (``allmende import compose --into DIR``: ``inventory_option(old=("--into",))``).
Naming the inventory twice, differently, is a usage error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

HELP = "The inventory's directory (the one holding allmende.yaml); default: the current one."


class _Hidden(click.Argument):
    """A positional argument kept for an older spelling: parsed, but not shown in the usage."""

    def get_usage_pieces(self, ctx: click.Context) -> list[str]:
        return []


def inventory_option(*, positional: bool = False, old: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Return the decorator that gives a command ``-C DIR``/``--inventory DIR`` as its
    ``inventory`` parameter (a Path; ``.`` when not given), accepting the directory as its
    first argument too with ``positional`` and the option names in ``old``."""
    kind = click.Path(file_okay=False, path_type=Path)

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def command(*args: Any, **kwargs: Any) -> Any:
            given = [kwargs.pop("inventory")]
            given += [kwargs.pop(f"inventory_{index}") for index in range(len(old))]
            if positional:
                given.append(kwargs.pop("inventory_argument"))
            named = {path for path in given if path is not None}
            if len(named) > 1:
                shown = " and ".join(sorted(str(p) for p in named))
                raise click.UsageError(f"the inventory is named twice ({shown}): give -C DIR once")
            return function(*args, inventory=named.pop() if named else Path(), **kwargs)

        decorated: Any = command
        if positional:
            decorated = click.argument(
                "inventory_argument", required=False, type=kind, cls=_Hidden
            )(decorated)
        for index, name in enumerate(old):
            decorated = click.option(
                name, f"inventory_{index}", type=kind, default=None, hidden=True
            )(decorated)
        decorated = click.option(
            "-C", "--inventory", "inventory", type=kind, default=None, metavar="DIR", help=HELP
        )(decorated)
        return decorated  # type: ignore[no-any-return]

    return decorate
