"""How the command line speaks: colour only at a terminal, warnings without logger names, and a
progress line on long work. Every command prints through here (and ``terminal.echo``).

- ``paint(text, role, err=...)`` colours ``text`` for its role (``error``, ``warning``, ``ok``,
  ``heading``, ``dim``) when that stream is a terminal, ``NO_COLOR`` is unset and ``TERM`` is
  not ``dumb`` (https://no-color.org); elsewhere the text is left as it is.
- ``setup_logging(verbose)`` makes what the library logs readable: ``warning: ...`` on stderr,
  ``info:`` with ``-v``, and only with ``-vv`` the logger's name, for debugging.
- ``Progress`` shows one line that rewrites itself at a terminal (``reading hosts: 3 of 10``),
  and nothing elsewhere; what is done is printed as lines by the command itself.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Literal

import click

from allmende.errors import visible

Role = Literal["error", "warning", "ok", "heading", "dim"]

_STYLES: dict[Role, dict[str, object]] = {
    "error": {"fg": "red", "bold": True},
    "warning": {"fg": "yellow"},
    "ok": {"fg": "green"},
    "heading": {"bold": True},
    "dim": {"dim": True},
}


def _stream(err: bool) -> IO[str]:
    return sys.stderr if err else sys.stdout


def coloured(err: bool = False) -> bool:
    """Whether text for stdout (stderr with ``err``) is coloured: only at a terminal, and not
    when ``NO_COLOR`` is set (to anything) or ``TERM`` is ``dumb``."""
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    stream = _stream(err)
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def paint(text: str, role: Role, *, err: bool = False) -> str:
    """Return ``text`` styled for ``role`` when its stream is coloured (see ``coloured``)."""
    if not coloured(err):
        return text
    return click.style(text, **_STYLES[role])  # type: ignore[arg-type]


def say(text: str, role: Role | None = None, *, err: bool = False) -> None:
    """Print one line, made harmless for a terminal, painted for ``role``."""
    shown = visible(text, keep="\n\t")
    click.echo(paint(shown, role, err=err) if role else shown, err=err)


class _Readable(logging.Formatter):
    """``warning: text``; the logger's name only when debugging."""

    def __init__(self, named: bool) -> None:
        super().__init__()
        self.named = named

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        where = f" {record.name}" if self.named else ""
        message = visible(record.getMessage(), keep="\n\t")
        role: Role | None = "warning" if record.levelno == logging.WARNING else None
        if record.levelno >= logging.ERROR:
            role = "error"
        prefix = f"{level}{where}:"
        return f"{paint(prefix, role, err=True) if role else prefix} {message}"


def setup_logging(verbose: int) -> None:
    """Send allmende's log to stderr, readable (see the module docstring): warnings by
    default, ``-v`` info, ``-vv`` debug with the logger names."""
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler()
    handler.setFormatter(_Readable(named=verbose >= 2))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "allmende", False):
            root.removeHandler(old)
    handler.allmende = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


#: What erases a terminal's line from the cursor to its end (ECMA-48 EL): nothing is left
#: behind, not even spaces.
ERASE = "\x1b[K"


class Progress:
    """One line on stderr that says how far long work is, rewritten in place at a terminal
    and cleared when done; nothing at all when stderr is no terminal."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.stream = _stream(True)
        self.live = self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self.shown = 0
        self.text = ""

    def update(self, text: str) -> None:
        """Show ``what: text`` instead of the previous line."""
        self.text = text
        if not self.live:
            return
        line = visible(f"{self.what}: {text}")
        line = line[: max(shutil.get_terminal_size().columns - 1, 20)]
        self.stream.write("\r" + line + ERASE + "\r")
        self.stream.flush()
        self.shown = len(line)

    def clear(self) -> None:
        """Take the line away, so that what is printed next starts on a clean line."""
        self.text = ""
        if self.live and self.shown:
            self.stream.write("\r" + ERASE)
            self.stream.flush()
            self.shown = 0

    def above(self, line: str) -> None:
        """Print ``line`` on stderr, the progress line staying below it."""
        text = self.text
        self.clear()
        say(line, err=True)
        if text:
            self.update(text)

    def counter(self, what: str, noun: str = "host") -> Callable[[int, int], None]:
        """Return what to tell how many ``noun``s of how many are done: the line says
        ``what: 2 of 5 hosts`` until the last is done, then goes away."""

        def told(done: int, total: int) -> None:
            self.what = what
            if done < total:
                self.update(f"{done} of {plural(total, noun)}")
            else:
                self.clear()

        return told


@contextmanager
def progress(what: str) -> Iterator[Progress]:
    """Show a ``Progress`` line for the work in the ``with`` block; clear it afterwards."""
    shown = Progress(what)
    try:
        yield shown
    finally:
        shown.clear()


def plural(count: int, noun: str) -> str:
    """``1 file``, ``3 files``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
