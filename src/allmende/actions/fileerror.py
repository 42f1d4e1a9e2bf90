"""An OSError on a file or directory the user named, said as a UserError they can act on.

``cannot write the site to notes/site: notes is a file, not a directory`` rather than a
traceback, or than ``File exists`` for a directory that cannot be made as a file is in its way.
"""

from __future__ import annotations

import errno
from pathlib import Path

from allmende.errors import UserError


def in_the_way(path: Path) -> Path | None:
    """Return the first of ``path``'s parents that exists and is not a directory, if any."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def why(exc: OSError, path: Path) -> str:
    """Given an OSError met on ``path`` (or on a file made beside or inside it), return what
    went wrong: which file is where a directory must be, else the system's words
    (``Permission denied``, ``No space left on device``, ...)."""
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        blocking = in_the_way(path)
        if blocking is not None:
            return f"{blocking} is a file, not a directory"
    return exc.strerror or str(exc)


def file_error(doing: str, path: Path, exc: OSError) -> UserError:
    """Return the UserError ``cannot <doing> <path>: <why>`` for an OSError met on ``path``."""
    return UserError(f"cannot {doing} {path}: {why(exc, path)}")
