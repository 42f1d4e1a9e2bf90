"""Commands named in hints, written as the user must type them where they stand."""

from __future__ import annotations

import shlex
from pathlib import Path


def typed(root: Path, *words: str) -> str:
    """Return the allmende command line of ``words`` on the inventory at ``root``, as it must be
    typed in the current directory: with ``-C DIR`` (the inventory as it was named, relative or
    not) unless the inventory is the current directory; quoted for a shell."""
    line = ["allmende", *words]
    try:
        here = root.resolve() == Path.cwd().resolve()
    except OSError:  # the current directory is gone
        here = False
    if not here:
        line += ["-C", str(root)]
    return shlex.join(line)
