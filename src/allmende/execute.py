"""The only place allmende runs another program.

Commands are argument lists built by pure functions, never shell strings. Each run is logged
with the values of secrets masked; a missing program raises ToolMissing with how to install it,
and a failing one raises CommandFailed with what it printed.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from allmende.errors import CommandFailed, ToolMissing

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


def masked(argv: Sequence[str], secrets: Sequence[str] = ()) -> str:
    """Return the command line as text for logs, with every secret value replaced by ***."""
    text = " ".join(argv)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


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
            env=dict(env) if env is not None else None,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"`{shown}` did not finish within {timeout:.0f} s") from exc
    result = Result(
        tuple(argv), done.returncode, done.stdout, done.stderr, time.monotonic() - started
    )
    log.debug("%s exited %d after %.2f s", argv[0], done.returncode, result.seconds)
    if check and done.returncode != 0:
        said = (
            done.stderr.decode(errors="replace").strip()
            or done.stdout.decode(errors="replace").strip()
        )
        for secret in secrets:
            if secret:
                said = said.replace(secret, "***")
        raise CommandFailed(f"`{shown}` failed (exit {done.returncode}): {said[-2000:]}")
    return result
