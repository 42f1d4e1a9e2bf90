"""Host keys of hosts reached over SSH: where the trusted ones are, and what to tell a user
whose host offers an unknown or changed key (the commands to check and add it, every word
quoted for a shell)."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Mapping
from pathlib import Path

import asyncssh


def known_hosts_path(env: Mapping[str, str]) -> Path:
    """Return the known_hosts file host keys are checked against."""
    if env.get("ALLMENDE_KNOWN_HOSTS"):
        return Path(env["ALLMENDE_KNOWN_HOSTS"])
    return Path(env.get("HOME") or Path.home()) / ".ssh" / "known_hosts"


def keyscan(address: str, port: int, known_hosts: Path) -> str:
    """Return the command that adds the host's key to ``known_hosts``."""
    command = shlex.join(["ssh-keyscan", "-p", str(port), address])
    return f"{command} >> {shlex.quote(str(known_hosts))}"


def forget(address: str, port: int, known_hosts: Path) -> str:
    """Return the command that removes the host's recorded key from ``known_hosts``."""
    return shlex.join(["ssh-keygen", "-R", f"[{address}]:{port}", "-f", str(known_hosts)])


async def host_key_problem(address: str, port: int, known_hosts: Path, timeout: float) -> str:
    """Return what to say of a host key that could not be verified: unknown or changed, the
    fingerprint the host offers, and how to add it once checked."""
    try:
        trusted = asyncssh.read_known_hosts(str(known_hosts)).match(address, address, port)[0]
    except (OSError, ValueError, asyncssh.Error):
        trusted = []
    offered = ""
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(address, port, config=None), timeout
        )
        if key is not None:
            offered = f" The host offers {key.get_fingerprint('sha256')}."
    except (OSError, asyncssh.Error, TimeoutError):
        pass
    add = keyscan(address, port, known_hosts)
    if trusted:
        return (
            f"the host key has CHANGED since it was recorded in {known_hosts}; refusing to "
            f"connect.{offered} If the host was reinstalled, check the new fingerprint with its "
            f"admin, remove the old line ({forget(address, port, known_hosts)}), then add the "
            f"new one: {add}"
        )
    return (
        f"the host key is unknown (not in {known_hosts}); refusing to connect.{offered} Check "
        "the fingerprint with the host's admin (on the host: ssh-keygen -lf "
        f"/etc/ssh/ssh_host_ed25519_key.pub), then add it: {add}"
    )
