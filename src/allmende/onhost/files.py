"""File operations on a host that never follow a symbolic link.

A container that can write under ``/srv/<service>`` can plant a link there (``secrets`` ->
``/etc``, ``compose.yaml`` -> ``/etc/shadow``) and swap it in at any moment. So no path is
opened whole: from ``root`` (which stands in for ``/`` and is opened as given: links in it are
the operator's) each directory below is opened relative to its parent with ``O_NOFOLLOW``
(``openat``), and the last component is checked with ``lstat`` and opened with ``O_NOFOLLOW``
too. A link anywhere on a path raises ``Link`` naming it; anything but a regular file where
one is read raises ``Irregular``. Nothing is created through a link, and FIFOs or devices are
never opened.

Used twice: the local connector imports these functions, and on SSH hosts this module runs as
``python3 -I -c <this file> ROOT``, answering one JSON request a line on stdin with one JSON
line on stdout, in order (``serve``): ``{"op": "read", "path": ...}`` gives ``{"ok": <base64
or null>}``, an error ``{"error": "link"|"irregular", "path": ...}`` or ``{"error": "os",
"errno": ..., "reason": ...}``. Paths are host paths (``/srv/wiki/compose.yaml``).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import stat
import sys
from typing import Any

#: Bumped when the requests or answers change.
VERSION = 1

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
#: Directories on the way are opened for lookups only where the system allows it (``O_PATH``
#: needs no read permission).
_WALK = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | _NOFOLLOW
_ABSENT = (errno.ENOENT, errno.ENOTDIR)


class Link(Exception):
    """A component of a path is a symbolic link; ``path`` is that component."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class Irregular(Exception):
    """Something other than a regular file (or a directory, on the way) is at ``path``."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def _parts(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    if not path.startswith("/") or any(p in (".", "..") for p in parts):
        raise ValueError("not an absolute, normalised host path: " + repr(path))
    return parts


def _shown(parts: list[str]) -> str:
    return "/" + "/".join(parts)


def _lstat(name: str, directory: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=directory, follow_symlinks=False)
    except OSError as e:
        if e.errno in _ABSENT:
            return None
        raise


def _open_dir(root: str, parts: list[str], create: bool) -> int | None:
    """Return a descriptor of the directory ``parts`` below ``root``, opened without following
    a link; None if it does not exist (or a file is on its way) and ``create`` is false.
    Raise Link naming the component that is a link, NotADirectoryError for a file on the way
    when creating."""
    current = os.open(root, _WALK & ~os.O_NOFOLLOW)
    try:
        for depth, name in enumerate(parts):
            here = parts[: depth + 1]
            try:
                following = os.open(name, _WALK, dir_fd=current)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    raise
                found = _lstat(name, current)
                if found is not None and stat.S_ISLNK(found.st_mode):
                    raise Link(_shown(here)) from None
                if found is not None and create:
                    raise NotADirectoryError(
                        errno.ENOTDIR, os.strerror(errno.ENOTDIR), name
                    ) from None
                if not create:  # absent, or a file where a directory would be
                    os.close(current)
                    return None
                with contextlib.suppress(FileExistsError):  # made meanwhile: checked below
                    os.mkdir(name, 0o755, dir_fd=current)
                following = os.open(name, _WALK, dir_fd=current)
            info = os.fstat(following)
            if not stat.S_ISDIR(info.st_mode):  # O_PATH may open a link itself
                os.close(following)
                raise Link(_shown(here))
            os.close(current)
            current = following
    except BaseException:
        os.close(current)
        raise
    return current


def _parent(root: str, path: str, create: bool = False) -> tuple[int | None, str, list[str]]:
    parts = _parts(path)
    if not parts:
        raise Irregular("/")
    return _open_dir(root, parts[:-1], create), parts[-1], parts


def _open_file(root: str, path: str) -> int | None:
    """Return a descriptor of the regular file ``path`` opened for reading, None if absent."""
    directory, name, parts = _parent(root, path)
    if directory is None:
        return None
    try:
        found = _lstat(name, directory)
        if found is None:
            return None
        if stat.S_ISLNK(found.st_mode):
            raise Link(_shown(parts))
        if not stat.S_ISREG(found.st_mode):
            raise Irregular(_shown(parts))
        try:
            handle = os.open(name, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW, dir_fd=directory)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise Link(_shown(parts)) from None
            if e.errno in _ABSENT:
                return None
            raise
        now = os.fstat(handle)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (
            found.st_dev,
            found.st_ino,
        ):
            os.close(handle)
            raise Irregular(_shown(parts))
        return handle
    finally:
        os.close(directory)


def read(root: str, path: str) -> bytes | None:
    """Return the content of the regular file ``path``, or None if there is none."""
    handle = _open_file(root, path)
    if handle is None:
        return None
    with os.fdopen(handle, "rb") as opened:
        return opened.read()


def stat_file(root: str, path: str) -> dict[str, Any] | None:
    """Return the mode, owner and sha256 of the regular file ``path``, or None."""
    handle = _open_file(root, path)
    if handle is None:
        return None
    digest = hashlib.sha256()
    with os.fdopen(handle, "rb") as opened:
        info = os.fstat(opened.fileno())
        for block in iter(lambda: opened.read(1 << 20), b""):
            digest.update(block)
    return {
        "mode": stat.S_IMODE(info.st_mode),
        "uid": info.st_uid,
        "gid": info.st_gid,
        "sha256": digest.hexdigest(),
    }


def _sync(directory: int) -> None:
    handle = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=directory)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write(
    root: str, path: str, data: bytes, mode: int, owner: tuple[int, int] | None = None
) -> None:
    """Create ``path`` anew (replacing a file, never writing through a link) with ``data``,
    ``mode`` and ``owner`` (uid, gid) if given, flushed to disk, creating missing directories.
    On failure no file is left."""
    directory, name, _ = _parent(root, path, create=True)
    assert directory is not None
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=directory)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
        handle = os.open(name, flags, 0o600, dir_fd=directory)
        try:
            if owner is not None:
                os.fchown(handle, owner[0], owner[1])
            os.fchmod(handle, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(handle, view) :]
            os.fsync(handle)
        except BaseException:
            os.close(handle)
            os.unlink(name, dir_fd=directory)
            raise
        os.close(handle)
    finally:
        os.close(directory)


def rename(root: str, source: str, target: str) -> None:
    """Replace ``target`` by ``source`` atomically (a link at ``target`` is replaced, not
    followed) and flush the directory."""
    source_dir, source_name, _ = _parent(root, source)
    if source_dir is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), source)
    try:
        target_dir, target_name, _ = _parent(root, target)
        if target_dir is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), target)
        try:
            os.rename(source_name, target_name, src_dir_fd=source_dir, dst_dir_fd=target_dir)
            _sync(target_dir)
        finally:
            os.close(target_dir)
    finally:
        os.close(source_dir)


def _delete(root: str, path: str, how: Any) -> None:
    """Delete ``path`` with ``how`` (``os.unlink``, ``os.rmdir``) relative to its directory,
    if it exists."""
    directory, name, _ = _parent(root, path)
    if directory is None:
        return
    try:
        how(name, dir_fd=directory)
    except FileNotFoundError:
        pass
    finally:
        os.close(directory)


def remove(root: str, path: str) -> None:
    """Delete the file (or link) ``path`` if it exists; never anything a link points to."""
    _delete(root, path, os.unlink)


def make_dir(root: str, path: str) -> bool:
    """Create the directory ``path`` and missing parents, none through a link; return whether
    this call created ``path`` itself."""
    directory, name, parts = _parent(root, path, create=True)
    assert directory is not None
    try:
        try:
            os.mkdir(name, 0o755, dir_fd=directory)
        except FileExistsError:
            found = _lstat(name, directory)
            if found is not None and stat.S_ISLNK(found.st_mode):
                raise Link(_shown(parts)) from None
            if found is None or not stat.S_ISDIR(found.st_mode):
                raise Irregular(_shown(parts)) from None
            return False
        return True
    finally:
        os.close(directory)


def remove_dir(root: str, path: str) -> None:
    """Delete the empty directory ``path`` if it exists."""
    _delete(root, path, os.rmdir)


def list_files(root: str, path: str) -> list[str]:
    """Return the host paths of the regular files below the directory ``path``, sorted; links
    are neither listed nor followed."""
    found: list[str] = []
    pending = [_parts(path)]
    while pending:
        parts = pending.pop()
        directory = _open_dir(root, parts, create=False)
        if directory is None:
            continue
        try:
            listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=directory)
            try:
                names = os.listdir(listing)  # noqa: PTH208 (a descriptor)
            finally:
                os.close(listing)
            for name in names:
                info = _lstat(name, directory)
                if info is None:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    pending.append([*parts, name])
                elif stat.S_ISREG(info.st_mode):
                    found.append(_shown([*parts, name]))
        finally:
            os.close(directory)
    return sorted(found)


def answer(root: str, request: dict[str, object]) -> dict[str, object]:
    """Carry out one request; return its answer (see the module docstring)."""
    op = request.get("op")
    path = str(request.get("path", ""))
    try:
        if op == "hello":
            return {"ok": VERSION}
        if op == "read":
            data = read(root, path)
            return {"ok": None if data is None else base64.b64encode(data).decode()}
        if op == "stat":
            return {"ok": stat_file(root, path)}
        if op == "write":
            data = base64.b64decode(str(request["data"]))
            mode = request["mode"]
            owner = request.get("owner")
            who = (int(owner[0]), int(owner[1])) if isinstance(owner, list) else None
            write(root, path, data, mode if isinstance(mode, int) else 0o600, who)
            return {"ok": None}
        if op == "rename":
            rename(root, str(request["source"]), path)
            return {"ok": None}
        if op == "remove":
            remove(root, path)
            return {"ok": None}
        if op == "make_dir":
            return {"ok": make_dir(root, path)}
        if op == "remove_dir":
            remove_dir(root, path)
            return {"ok": None}
        if op == "list":
            return {"ok": list_files(root, path)}
        return {"error": "request", "reason": "unknown request " + repr(op)}
    except Link as e:
        return {"error": "link", "path": e.path}
    except Irregular as e:
        return {"error": "irregular", "path": e.path}
    except OSError as e:
        return {"error": "os", "errno": e.errno, "reason": e.strerror or str(e)}
    except (ValueError, KeyError) as e:
        return {"error": "request", "reason": str(e)}


def serve(root: str) -> None:
    """Answer every request on stdin, in order, until it ends."""
    out = sys.stdout
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        out.write(json.dumps(answer(root, json.loads(line))) + "\n")
        out.flush()


if __name__ == "__main__":
    serve(sys.argv[1])
