"""What a host needs installed to back up its services: Borg, and python3 for allmende's copy.

A host that backs something up (it gets allmende's program, ``hostpaths.PROGRAM``) and lacks
``borg`` or ``python3`` gets an ``install`` action: Debian's packages through ``apt-get``,
before anything else follows the files, so that a freshly applied host backs up with nothing
installed by hand. A host without ``apt-get`` gets none; its backup then fails saying what is
missing.
"""

from __future__ import annotations

from collections.abc import Mapping

from allmende.connectors.base import Connector
from allmende.inventory.hostpaths import PROGRAM
from allmende.plan.changes import Action

#: Program -> the Debian package that has it.
NEEDED = {"borg": "borgbackup", "python3": "python3"}


async def missing(connector: Connector) -> list[str]:
    """Return the Debian packages of the programs a backing-up host lacks."""
    return [
        package
        for program, package in NEEDED.items()
        if not await connector.succeeds([program, "--version"])
    ]


async def install_actions(connector: Connector, wanted: Mapping[str, object]) -> list[Action]:
    """Return the action that installs what backups need on the (opened) host, if any."""
    if PROGRAM not in wanted:
        return []
    packages = await missing(connector)
    if not packages or not await connector.succeeds(["apt-get", "--version"]):
        return []
    apt = ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get")
    commands = ((*apt, "update", "-qq"), (*apt, "install", "-y", "-qq", *packages))
    reason = f"backups need {', '.join(packages)}"
    return [Action(connector.host, "install", "backup tools", reason, commands)]
