"""Hash many files on a host in one run.

Reads one JSON string (a path) per line on stdin and prints one JSON line per path: null when
there is no file (as SFTP's "No such file": ENOENT, ENOTDIR, ELOOP), ``{"mode", "uid", "gid",
"sha256"}`` for a regular file, ``{"error": "irregular"}`` for anything else, and ``{"error":
"unreadable", "reason": ...}`` when it cannot be read (with SFTP's reason text for a permission
error).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import sys

ABSENT = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


def one(path: bytes) -> dict[str, object] | None:
    """Return what the host says about ``path`` (see the module docstring)."""
    try:
        info = os.stat(path)  # noqa: PTH116 (bytes paths, any python3)
        if not stat.S_ISREG(info.st_mode):
            return {"error": "irregular"}
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        if e.errno in ABSENT:
            return None
        if e.errno in (errno.EACCES, errno.EPERM):
            return {"error": "unreadable", "reason": "Permission denied"}
        return {"error": "unreadable", "reason": e.strerror or str(e)}
    mode = stat.S_IMODE(info.st_mode)
    return {"mode": mode, "uid": info.st_uid, "gid": info.st_gid, "sha256": digest.hexdigest()}


def main() -> None:
    """Answer every path on stdin, in order."""
    out = sys.stdout
    for line in sys.stdin.buffer:
        if line.strip():
            path = json.loads(line).encode("utf-8", "surrogateescape")
            out.write(json.dumps(one(path)) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
