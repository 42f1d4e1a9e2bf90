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
from allmende.inventory.hostpaths import BACKUP_DIR, PROGRAM, WATCH_PLAN
from allmende.plan.changes import Action

#: Program -> the Debian package that has it.
NEEDED = {"borg": "borgbackup", "python3": "python3"}
#: The Python modules the watcher needs on its host -> the Debian package that has each.
WATCH_MODULES = {
    "aiohttp": "python3-aiohttp",
    "prometheus_client": "python3-prometheus-client",
    "dns": "python3-dnspython",
    "cryptography": "python3-cryptography",
}


async def missing(connector: Connector) -> list[str]:
    """Return the Debian packages of the programs a backing-up host lacks."""
    return [
        package
        for program, package in NEEDED.items()
        if not await connector.succeeds([program, "--version"])
    ]


async def watch_missing(connector: Connector) -> list[str]:
    """Return the Debian packages of the Python modules the watcher lacks on the host."""
    return [
        package
        for module, package in WATCH_MODULES.items()
        if not await connector.succeeds(["python3", "-I", "-c", f"import {module}"])
    ]


async def install_actions(connector: Connector, wanted: Mapping[str, object]) -> list[Action]:
    """Return the action that installs what backups (and the watcher, on the watch host)
    need on the (opened) host, if any."""
    if PROGRAM not in wanted:
        return []
    watcher = WATCH_PLAN in wanted
    packages = await missing(connector)
    if watcher and not any(path.startswith(f"{BACKUP_DIR}/") for path in wanted):
        packages = [p for p in packages if p != NEEDED["borg"]]  # it watches, backs nothing up
    if watcher:
        packages += [p for p in await watch_missing(connector) if p not in packages]
    if not packages or not await connector.succeeds(["apt-get", "--version"]):
        return []
    apt = ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get")
    commands = ((*apt, "update", "-qq"), (*apt, "install", "-y", "-qq", *packages))
    reason = f"{'backups and the watcher' if watcher else 'backups'} need {', '.join(packages)}"
    return [Action(connector.host, "install", "backup tools", reason, commands)]
