"""Keep allmende's lines in a user's ``~/.ssh/authorized_keys``, every other line as it is.

Arguments: ``show`` or ``set``, the user, the mark (how the comment of allmende's keys
begins), and for ``set`` the lines. ``show`` prints the user's lines whose key comment begins
with the mark; ``set`` replaces them with the given lines (none: removes them). A changed file
is written anew beside itself and renamed over the old one, with its mode and owner (a new one:
0600 and the user's, in ``~/.ssh`` made 0700); a symbolic link there is refused.
"""

from __future__ import annotations

import os
import pwd
import stat
import sys
from pathlib import Path


def marked(line: str, mark: str) -> bool:
    """Return whether ``line`` is a key whose comment (its last word) begins with ``mark``."""
    words = line.split()
    return len(words) > 2 and not words[0].startswith("#") and words[-1].startswith(mark)


def read(path: Path) -> list[str]:
    """Return the lines of ``path`` ([] if there is none). Raise OSError."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return []
    with os.fdopen(handle, encoding="utf-8", errors="surrogateescape") as text:
        return text.read().splitlines()


def write(path: Path, lines: list[str], owner: pwd.struct_passwd) -> None:
    """Write ``lines`` to ``path`` (see the module docstring). Raise OSError."""
    if not path.parent.is_dir():
        path.parent.mkdir(0o700)
        os.chown(path.parent, owner.pw_uid, owner.pw_gid)
    try:
        now = path.lstat()
        mode, uid, gid = stat.S_IMODE(now.st_mode), now.st_uid, now.st_gid
    except FileNotFoundError:
        mode, uid, gid = 0o600, owner.pw_uid, owner.pw_gid
    temp = path.with_name(f"{path.name}.allmende-new")
    temp.unlink(missing_ok=True)
    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchown(handle, uid, gid)
        os.fchmod(handle, mode)
        data = "".join(f"{line}\n" for line in lines).encode("utf-8", "surrogateescape")
        os.write(handle, data)
        os.fsync(handle)
    finally:
        os.close(handle)
    temp.rename(path)


def main(args: list[str]) -> int:
    """Show or set the marked lines (see the module docstring)."""
    what, user, mark, given = args[0], args[1], args[2], args[3:]
    try:
        owner = pwd.getpwnam(user)
    except KeyError:
        sys.stderr.write(f"there is no user {user} here\n")
        return 1
    path = Path(owner.pw_dir) / ".ssh" / "authorized_keys"
    try:
        if path.is_symlink():
            sys.stderr.write(f"{path} is a symbolic link: allmende does not write through one\n")
            return 1
        lines = read(path)
        if what == "show":
            sys.stdout.write("".join(f"{line}\n" for line in lines if marked(line, mark)))
            return 0
        kept = [line for line in lines if not marked(line, mark)]
        if kept + given != lines:
            write(path, kept + given, owner)
    except OSError as exc:
        sys.stderr.write(f"cannot {what} the keys in {path}: {exc.strerror or exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
