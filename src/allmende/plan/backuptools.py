"""What a host needs installed for the jobs allmende runs there: backups, certificate renewals
and the watcher.

A host that backs something up (it gets a backup job, ``hostpaths.backup_job``) needs Borg and
python3 for allmende's copy (``hostpaths.PROGRAM``); an edge host that renews its certificates
(it gets ``hostpaths.CERTS_JOB``) needs python3 with Debian's ``python3-acme`` and
``python3-dnspython``, which allmende's copy imports there; the watch host (it gets
``hostpaths.WATCH_PLAN``) needs the watcher's Python modules from Debian's packages, and the
OpenSSH client where it asks other hosts how fresh their backups are. Where one
is missing the host gets an ``install`` action: Debian's packages through ``apt-get``, before
anything else follows the files, so that a freshly applied host runs its jobs with nothing
installed by hand. A host without ``apt-get`` gets none; its job's run then fails saying what
is missing.
"""

from __future__ import annotations

from collections.abc import Mapping

from allmende.connectors.base import Connector
from allmende.inventory.hostpaths import (
    BACKUP_DIR,
    CERTS_JOB,
    PROGRAM,
    WATCH_KNOWN_HOSTS,
    WATCH_PLAN,
)
from allmende.plan.changes import Action


def _imports(module: str) -> tuple[str, ...]:
    return ("python3", "-I", "-c", f"import {module}")


#: Debian package -> the probe that succeeds where the host has what it gives.
PROBES = {
    "python3": ("python3", "--version"),
    "borgbackup": ("borg", "--version"),
    "python3-acme": _imports("acme.client, josepy"),
    "python3-dnspython": _imports("dns.update, dns.tsigkeyring"),
    "python3-aiohttp": _imports("aiohttp"),
    "python3-prometheus-client": _imports("prometheus_client"),
    "python3-cryptography": _imports("cryptography"),
    "openssh-client": ("ssh", "-V"),
}
#: What each kind of job needs, and the word its reason uses.
NEEDS = {
    "backups": ("borgbackup", "python3"),
    "certificates": ("python3", "python3-acme", "python3-dnspython"),
    "the watcher": (
        "python3",
        "python3-aiohttp",
        "python3-prometheus-client",
        "python3-dnspython",
        "python3-cryptography",
    ),
    "asking other hosts": ("openssh-client",),
}


def jobs(wanted: Mapping[str, object]) -> list[str]:
    """Return the kinds of job (``NEEDS``) the host's wanted files give it."""
    found = []
    if any(path.startswith(BACKUP_DIR + "/") for path in wanted):
        found.append("backups")
    if CERTS_JOB in wanted:
        found.append("certificates")
    if WATCH_PLAN in wanted:
        found.append("the watcher")
    if WATCH_KNOWN_HOSTS in wanted:
        found.append("asking other hosts")
    return found


async def missing(connector: Connector, packages: list[str]) -> list[str]:
    """Return those of the Debian ``packages`` whose program the host lacks."""
    return [p for p in packages if not await connector.succeeds(list(PROBES[p]))]


async def install_actions(connector: Connector, wanted: Mapping[str, object]) -> list[Action]:
    """Return the action that installs what the host's jobs need on the (opened) host, if
    anything is missing and the host has apt-get."""
    if PROGRAM not in wanted:  # no job of allmende's runs there
        return []
    kinds = jobs(wanted)
    packages = list(dict.fromkeys(p for kind in kinds for p in NEEDS[kind]))
    absent = await missing(connector, packages)
    if not absent or not await connector.succeeds(["apt-get", "--version"]):
        return []
    apt = ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get")
    commands = ((*apt, "update", "-qq"), (*apt, "install", "-y", "-qq", *absent))
    verb = "needs" if kinds == ["the watcher"] else "need"
    reason = f"{' and '.join(kinds)} {verb} {', '.join(absent)}"
    subject = "backup tools" if kinds == ["backups"] else "tools"
    return [Action(connector.host, "install", subject, reason, commands)]
