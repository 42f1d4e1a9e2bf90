"""The only place allmende runs another program.

Commands are argument lists built by pure functions, never shell strings. Each run is logged
with the values of secrets masked; a missing program raises ToolMissing with how to install it,
one that runs too long CommandTimedOut, and a failing one CommandFailed with what it printed.
Programs on hosts run through ``Connector.run``, which uses this module for the local machine
and interprets exit statuses the same way for every host (``allmende.connectors.base``).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from allmende.errors import CommandFailed, CommandTimedOut, ToolMissing

log = logging.getLogger(__name__)

#: How to get each outside program on Debian/Ubuntu, for the ToolMissing message.
PACKAGES = {
    "dot": "graphviz",
    "haproxy": "haproxy",
    "borg": "borgbackup",
    "named-checkzone": "bind9-utils",
    "podman": "podman",
    "podman-compose": "podman-compose (pip)",
}


@dataclass(frozen=True)
class Result:
    """What a finished program returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float


def masked(argv: Sequence[str] | str, secrets: Sequence[str] = ()) -> str:
    """Return the command line (or any text) for logs and messages, with every secret value
    replaced by *** and every argument that spans lines (a program given with ``-c``) shown as
    ``<program of N lines>``."""
    if isinstance(argv, str):
        text = argv
    else:
        text = " ".join(
            f"<program of {a.count(chr(10)) + 1} lines>" if "\n" in a.strip() else a for a in argv
        )
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def tail(stdout: bytes, stderr: bytes, secrets: Sequence[str] = (), limit: int = 2000) -> str:
    """Return the end of what a program printed (its errors, else its output) as text, secrets
    masked, at most ``limit`` characters."""
    said = stderr.decode(errors="replace").strip() or stdout.decode(errors="replace").strip()
    return masked(said, secrets)[-limit:]


def require(program: str) -> str:
    """Return the full path of ``program``. Raise ToolMissing saying how to install it."""
    path = shutil.which(program)
    if path is None:
        package = PACKAGES.get(program, program)
        raise ToolMissing(
            f"`{program}` is not installed (on Debian/Ubuntu: apt-get install {package})"
        )
    return path


def run(
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
    check: bool = True,
    timeout: float | None = 300,
) -> Result:
    """Run a program with the given argument list and return its Result.

    Raise ToolMissing if the program is not installed, and CommandFailed if it exits non-zero
    (when ``check``) or runs longer than ``timeout`` seconds.
    """
    program = require(argv[0])
    shown = masked(argv, secrets)
    log.debug("running %s", shown)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [program, *argv[1:]],
            input=input,
            # Without input, standard input is empty: a program reading it when it is not a
            # terminal (`incus snapshot create`) must not wait on allmende's own.
            stdin=subprocess.DEVNULL if input is None else None,
            env=dict(env) if env is not None else None,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandTimedOut(
            f"`{shown}` did not finish within {timeout:.0f} s",
            argv=[masked(a, secrets) for a in argv],
        ) from exc
    result = Result(
        tuple(argv), done.returncode, done.stdout, done.stderr, time.monotonic() - started
    )
    log.debug("%s exited %d after %.2f s", argv[0], done.returncode, result.seconds)
    if check and done.returncode != 0:
        said = tail(done.stdout, done.stderr, secrets)
        raise CommandFailed(
            f"`{shown}` failed (exit {done.returncode}): {said}",
            argv=[masked(a, secrets) for a in argv],
            exit=done.returncode,
            output=said,
        )
    return result
