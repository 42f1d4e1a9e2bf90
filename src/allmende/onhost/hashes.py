"""The checksum of every file under some directories: the file list of a backup or a drill.

``hashes.py SPEC`` — SPEC is JSON ``{"root", "paths", "exclude", "cache", "out"}``. Walks each
of ``paths`` (absolute, as on the host; read under ``root``), leaving out those under
``exclude``, and makes one JSON object: ``{"files": {path: [size, sha256]}, "links": {path:
target}, "special": [path, ...]}``, paths without the leading ``/`` (as Borg stores them), keys
sorted, so that an unchanged tree gives the same bytes. It is printed, or with ``out`` (a file,
a backup's named pipe that Borg reads) written there and only its counts printed: ``{"files":
N, "links": N, "special": [...]}``. Special files (devices, named pipes, sockets, and links to
them) are listed, not read: a backup leaves them out, since Borg reads named pipes to capture
dumps. With ``cache`` (a file), the checksum of a file whose inode, size, modification and
change times are unchanged since the last run is taken from there (Borg's own files cache keys
its files alike), so that an unchanged tree is not read again; the device is left out of the
key, since a snapshot of the same files shows them on a device of its own at every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys


def _digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _under(path: str, excluded: tuple[str, ...]) -> bool:
    path = path.rstrip("/")
    return any(path == e or path.startswith(e + "/") for e in excluded)


def _special(mode: int) -> bool:
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode))


def walk(spec: dict[str, object]) -> dict[str, object]:
    root = str(spec.get("root") or "/").rstrip("/")
    excluded = tuple(str(e).rstrip("/") for e in spec.get("exclude", []))  # type: ignore[attr-defined]
    cache_file = spec.get("cache")
    cache: dict[str, list[object]] = {}
    if cache_file:
        try:
            with open(str(cache_file), encoding="utf-8") as handle:
                cache = json.load(handle)
        except (OSError, ValueError):
            cache = {}
    fresh: dict[str, list[object]] = {}
    files: dict[str, list[object]] = {}
    links: dict[str, str] = {}
    special: list[str] = []

    def one(entry: os.DirEntry[str], host_path: str) -> None:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            return
        key = host_path.lstrip("/")
        if stat.S_ISLNK(info.st_mode):
            links[key] = os.readlink(entry.path)
            try:
                if _special(os.stat(entry.path).st_mode):
                    special.append(key)
            except OSError:
                pass
        elif _special(info.st_mode):
            special.append(key)
        elif stat.S_ISREG(info.st_mode):
            stamp = [info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]
            known = cache.get(key)
            if known is not None and known[:-1] == stamp:
                digest = str(known[-1])
            else:
                digest = _digest(entry.path)
            fresh[key] = [*stamp, digest]
            files[key] = [info.st_size, digest]

    def tree(real: str, host_dir: str) -> None:
        """Walk one directory (one ``scandir``: the kind of each entry comes with its name),
        in name order, not into links to directories."""
        if _under(host_dir, excluded):
            return
        try:
            with os.scandir(real) as found:
                entries = sorted(found, key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            host_path = f"{host_dir.rstrip('/')}/{entry.name}"
            try:
                directory = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if directory:
                tree(entry.path, host_path)
            elif not _under(host_path, excluded):
                one(entry, host_path)

    for top in sorted(str(p) for p in spec.get("paths", [])):  # type: ignore[attr-defined]
        tree(root + top, top)
    if cache_file and fresh != cache:
        os.makedirs(os.path.dirname(str(cache_file)), exist_ok=True)
        temp = f"{cache_file}.tmp"
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(fresh))
        os.replace(temp, str(cache_file))
    return {"files": files, "links": links, "special": sorted(special)}


def _widen(fd: int, size: int) -> None:
    """Make the pipe ``fd`` (if it is one) hold ``size`` bytes where the system allows it, so
    that its reader (Borg) gets them at once instead of taking turns with this program for
    every 64 KiB, which on a busy machine costs each a wait for the CPU."""
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        return
    import fcntl

    try:
        with open("/proc/sys/fs/pipe-max-size", encoding="ascii") as handle:
            limit = int(handle.read())
    except (OSError, ValueError):
        limit = 1 << 20
    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), min(max(size, 1 << 16), limit))
    except OSError:  # the pipe keeps its size: slower, not wrong
        return


def main(spec: dict[str, object]) -> None:
    found = walk(spec)
    # One string made by the JSON module's C encoder (``json.dump`` writes piece by piece
    # through the pure-Python one: most of an unchanged run's time).
    text = json.dumps(found, sort_keys=True) + "\n"
    out = spec.get("out")
    if out:
        data = text.encode()
        with open(str(out), "wb") as handle:
            _widen(handle.fileno(), len(data))
            handle.write(data)
        counts = {"files": len(found["files"]), "links": len(found["links"])}  # type: ignore[arg-type]
        text = json.dumps({**counts, "special": found["special"]}) + "\n"
    sys.stdout.write(text)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
