"""Write files so that readers see the old content or the new, never a part of it."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from allmende.errors import UserError


def fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_file(path: Path, data: bytes, mode: int) -> Path:
    """Write data to a new hidden file next to path, synced to disk; return its path."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        temp.chmod(mode)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace path with data so that readers see the old or the new file, never a part.

    Raise OSError if writing fails; then path is unchanged and no temporary file is left.
    """
    temp = temp_file(path, data, mode)
    try:
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def kept_mode(path: Path) -> int:
    """Return the mode a file replacing path gets: that of the file there, else that of a new
    file (0666 less the umask)."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def make_parent(path: Path) -> None:
    """Make the directory ``path`` will be written in. Raise UserError (``file_error``) if it
    cannot be made."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise file_error("write", path, exc) from None


def save(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace path with data atomically (``write_atomic``), making its directory if need be:
    for files the user asked for.

    Raise UserError naming path and what is wrong (``file_error``) if it cannot be written;
    then it is unchanged.
    """
    make_parent(path)
    try:
        write_atomic(path, data, mode)
    except OSError as exc:
        raise file_error("write", path, exc) from None


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


def create_new(path: Path, data: bytes, mode: int) -> None:
    """Create path with data, complete or not at all. Raise FileExistsError if it exists."""
    temp = temp_file(path, data, mode)
    try:
        try:
            path.hardlink_to(temp)  # atomic, and unlike a rename it never replaces a file
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: exclusive, if not atomic
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                os.fsync(file.fileno())
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(path.parent)
