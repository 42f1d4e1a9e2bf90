"""Write a generated directory (a site, a rendered tree) as a whole or not at all.

Everything goes into a temporary directory next to the target, which is then swapped in for the
previous one (renamed aside, the new one renamed in, the old one deleted). A failed write leaves
the previous directory as it was. A directory allmende did not generate (no marker file in it)
is never replaced unless it is empty.

Writers of one target take turns: ``locked`` holds an advisory lock on the directory it is in
(which dies with its process, and leaves no file) from the check of what is there to the swap,
so two renders into one OUT never trip over each other, and whatever a writer that was killed
left beside it (``.<name>.new-*``, ``.<name>.old-*``) is removed by the next.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath

from allmende.errors import InternalError, UserError
from allmende.inventory.atomic import file_error


def target(out: Path) -> Path:
    """Return ``out`` absolute, with symbolic links (to the directory they name) resolved.

    Raise UserError if its symbolic links form a loop or cannot be read.
    """
    try:
        return out.resolve()
    except RuntimeError:  # Python before 3.13 says a loop so
        raise UserError(f"cannot use {out}: its symbolic links form a loop") from None
    except OSError as exc:
        raise file_error("use", out, exc) from None


def refuse_foreign(out: Path, marker: str, what: str) -> None:
    """Raise UserError if ``out`` exists and is neither empty nor marked as generated."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(
            f"{out} exists and is not a directory: refusing to replace it with the "
            f"{what}; choose another --out"
        )
    if (out / marker).is_file():
        return
    try:
        empty = not any(out.iterdir())
    except OSError as exc:
        raise file_error("read", out, exc) from None
    if not empty:
        raise UserError(
            f"{out} exists and does not look like a {what} allmende built (no {marker} in it): "
            "refusing to replace what is there; choose another --out, or empty the directory"
        )


@contextlib.contextmanager
def locked(out: Path, what: str = "site") -> Iterator[None]:
    """Hold the lock of the target ``out`` (waiting for another writer), and remove what
    writers killed half-way left beside it. Raise UserError if its directory cannot be made
    (``what`` names the target in that message)."""
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise file_error(f"write the {what} to", out, exc) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        for leftover in sorted(parent.glob(f".{glob.escape(out.name)}.[no][el][wd]-*")):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
        yield
    finally:
        os.close(handle)


def _safe(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise InternalError(f"a renderer returned an unsafe path: {name!r}")
    return path


def publish(
    out: Path,
    files: Mapping[str, bytes],
    modes: Mapping[str, int] | None = None,
    what: str = "site",
) -> None:
    """Write ``files`` (relative path -> bytes) as the directory ``out``, all or nothing.

    ``modes`` gives a file mode per path (default 0644). Everything is written into a temporary
    directory next to ``out`` first; then the old ``out`` (if any) is renamed aside, the new one
    renamed in and the old one deleted. On any failure the temporary directory is removed and
    ``out`` is left as it was.
    """
    parent = out.parent
    modes = modes or {}
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=parent))
    except OSError as exc:
        raise file_error(f"write the {what} to", out, exc) from None
    aside: Path | None = None
    try:
        staging.chmod(0o755)
        for name, data in sorted(files.items()):
            path = staging.joinpath(*_safe(name).parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(modes.get(name, 0o644))
        if out.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            out.rename(aside / out.name)
        try:
            staging.rename(out)
        except BaseException:
            if aside is not None:
                (aside / out.name).rename(out)
                aside.rmdir()
                aside = None
            raise
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise file_error(f"write the {what} to", out, exc) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
