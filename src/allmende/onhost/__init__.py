"""Small Python programs allmende runs on hosts with ``python3 -I -S -c``.

Each is a module of this package, so that lint and type checks see it like any other code, and
each imports only the standard library and runs as a script (``__name__ == "__main__"``) on
whatever ``python3`` the host has. ``source`` returns a program's text to send.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def source(name: str) -> str:
    """Return the text of the program ``name`` (a module of this package, ``files``)."""
    return resources.files(__package__).joinpath(f"{name}.py").read_text(encoding="utf-8")


def command(name: str, *args: str) -> list[str]:
    """Return the argument list that runs the program ``name`` on a host with ``args``:
    isolated (``-I``) and without the ``site`` module (``-S``), which the standard library
    alone does not need and which takes about half of the interpreter's start."""
    return ["python3", "-I", "-S", "-c", source(name), *args]
