"""The watcher on the host the inventory names in ``watch.host``: its plan and its unit.

- ``<host>/etc/allmende/watch.json``: everything it probes (``render.watch_plan``, as run on
  that host: the backups of the services there, and how to ask the other hosts for theirs),
  where alerts go and how results are kept; mode 0600, since a webhook's URL may carry a token.
- ``<host>/etc/systemd/system/allmende-watch.service``: runs ``WATCH_COMMAND`` (allmende's
  copy on the host, by the host's python3, with Debian's aiohttp, prometheus_client,
  dnspython and cryptography, which apply installs there) for as long as the machine is up,
  started again 5 seconds after it stops, at low priority, recording into the host's state
  database (``/var/lib/allmende/state.sqlite``), hardened like the backup units: the file
  system read-only but allmende's own directories, a private /tmp, no new privileges.

``apply`` enables and restarts the unit when either file changes, after everything else on
the host is up (``plan.actions``); an inventory without ``watch.host`` renders neither.
"""

from __future__ import annotations

from allmende.inventory.hostpaths import (
    BORG_BASE,
    HOST_STATE,
    PROGRAM,
    STATE_NAME,
    WATCH_PLAN,
    WATCH_UNIT,
    unit_file,
)
from allmende.inventory.inventory import Inventory
from allmende.render.output import Rendered, generated, text
from allmende.render.systemd import word
from allmende.render.watch_plan import plan

#: What the unit runs.
WATCH_COMMAND = ("/usr/bin/python3", "-I", PROGRAM, "watch", "--plan", WATCH_PLAN)
#: What the watch host's key may run on each host it asks how fresh its backups are (the
#: forced command of its ``authorized_keys`` line there), whatever the watch host asks for.
FRESHNESS_COMMAND = ("/usr/bin/python3", "-I", PROGRAM, "backup", "freshness")


def sources(inventory: Inventory) -> list[str]:
    """Return the inventory files the watcher's plan is made from: all of them."""
    return sorted({inventory.file("collective"), *inventory.files.values()})


def render(inventory: Inventory) -> dict[str, Rendered]:
    """Given an inventory, return the watch host's plan file and unit (none without one)."""
    host = inventory.collective.watch.host
    if host is None:
        return {}
    made = plan(inventory, where=host)
    files = sources(inventory)
    owner = inventory.collective.name
    comment = f"{generated(owner)} from the inventory; changes here are overwritten."
    return {
        f"{host}{WATCH_PLAN}": Rendered(made.to_json(comment).encode(), tuple(files), 0o600),
        f"{host}{unit_file(WATCH_UNIT)}": text(unit(), files, collective=owner),
    }


def unit() -> str:
    """Return the body of the watcher's ``.service`` unit."""
    lines = [
        "[Unit]",
        "Description=Watch the collective's services and alert on changes (allmende)",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={' '.join(word(part) for part in WATCH_COMMAND)}",
        f"Environment=ALLMENDE_STATE={HOST_STATE}",
        # Borg, reading the repositories of the services on this host, keeps its files there;
        # the other hosts are asked with the keys under /etc/allmende/watch (ssh writes nothing).
        f"Environment=BORG_BASE_DIR={BORG_BASE}",
        "Restart=always",
        "RestartSec=5",
        "Nice=5",
        "# Hardening: everything read-only but allmende's own directories.",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        f"StateDirectory={STATE_NAME}",
        f"CacheDirectory={STATE_NAME}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"
