"""systemd units that run each service's backup on its schedule.

For every service that holds data (``derive.has_data``: volumes or a database) and whose
effective backup (``derive.backup``) has a consistency other than ``none`` and a schedule, the
host the service runs on gets

- ``<host>/etc/systemd/system/allmende-backup-<service>.timer``: ``OnCalendar=`` the schedule
  (``hourly``, ``daily``, ``weekly`` and ``monthly`` are systemd's own shorthands; any other
  value is an OnCalendar expression, written as it is), ``Persistent=true`` so that a backup
  missed while the machine was off runs when it is up again, and ``RandomizedDelaySec=``
  ``RANDOMIZED_DELAY`` (15 minutes) so that the backups of many services on one host, and of
  hosts sharing one repository server, do not all start in the same second, while an hourly
  schedule still runs roughly on the hour;
- ``<host>/etc/systemd/system/allmende-backup-<service>.service``: a ``Type=oneshot`` unit that
  runs ``BACKUP_COMMAND`` with the service's name, at low CPU and I/O priority, after the network
  is online, and hardened: no new privileges, the whole file system read-only (home directories
  too) except the service's volumes on the host and allmende's state and cache directories
  (``/var/lib/allmende``, ``/var/cache/allmende``, created by systemd through
  ``StateDirectory=``/``CacheDirectory=``), a private /tmp, kernel tunables, modules and control
  groups protected, no set-user-ID files, the execution domain locked.

No unit holds a passphrase or any other secret: the backup command reads the repository key from
allmende's secret store. Values are written with ``%`` doubled (systemd expands ``%`` specifiers
in them, ``OnCalendar=`` included) and line breaks turned into spaces.
"""

from __future__ import annotations

from allmende.inventory import derive
from allmende.inventory.hostpaths import CACHE_DIR, STATE_DIR, STATE_NAME, unit_file
from allmende.inventory.inventory import Inventory
from allmende.render.output import Rendered, service_sources, text

#: The program and verb a backup unit runs; the service's name is the last argument.
BACKUP_COMMAND = ("/usr/local/bin/allmende", "backup")
#: How far systemd may move a start past the scheduled time, at random.
RANDOMIZED_DELAY = "15min"

_HARDENING = (
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "read-only"),
    ("PrivateTmp", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectControlGroups", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
)


def unit_name(service: str) -> str:
    """Return the name shared by the service and timer units of a service's backup."""
    return f"allmende-backup-{service}"


def value(raw: str) -> str:
    """Return ``raw`` safe as a unit file value: line breaks become spaces, ``%`` is doubled."""
    return " ".join(raw.splitlines()).replace("%", "%%")


def word(raw: str) -> str:
    """Return ``raw`` as one word of a space-separated list (``ReadWritePaths=``, a command
    line): quoted with C-style escapes when it holds a space, a quote or a backslash."""
    if any(c.isspace() or c in "\"'\\" for c in raw):
        raw = '"' + raw.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value(raw)


def backed_up(inventory: Inventory) -> dict[str, tuple[str, str]]:
    """Return the services that get backup units (see the module docstring), sorted, each with
    its effective consistency and schedule."""
    chosen: dict[str, tuple[str, str]] = {}
    for name, service in sorted(inventory.services.items()):
        backup = derive.backup(inventory.collective, name, service)
        if derive.has_data(service) and backup.consistency != "none" and backup.schedule:
            chosen[name] = (backup.consistency, backup.schedule)
    return chosen


def render(inventory: Inventory) -> dict[str, Rendered]:
    """Given an inventory, return the ``.service`` and ``.timer`` of every backed-up service
    under its host's ``etc/systemd/system/``."""
    files: dict[str, Rendered] = {}
    for name, (consistency, schedule) in backed_up(inventory).items():
        service = inventory.services[name]
        base = f"{service.host}{unit_file(unit_name(name))}"
        sources = service_sources(inventory, name)
        paths = sorted({path for *_, path in derive.volumes(name, service)})
        files[f"{base}.service"] = text(service_unit(name, consistency, paths), sources)
        files[f"{base}.timer"] = text(timer_unit(name, schedule), sources)
    return files


def service_unit(name: str, consistency: str, paths: list[str]) -> str:
    """Return the body of the ``.service`` unit that backs up service ``name`` once, given its
    consistency and the host paths of its volumes."""
    command = " ".join(word(part) for part in (*BACKUP_COMMAND, name))
    lines = [
        "[Unit]",
        f"Description=Back up the {value(name)} service (allmende)",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        f"# Consistency: {value(consistency)}. No passphrase or other secret belongs here:",
        "# the backup command reads the repository key from allmende's secret store.",
        f"ExecStart={command}",
        "Nice=10",
        "IOSchedulingClass=idle",
        "# Hardening: everything read-only but the service's volumes and allmende's own",
        f"# directories ({STATE_DIR}, {CACHE_DIR}); a volume that does",
        "# not exist yet is skipped (the - prefix) instead of failing the unit.",
        *(f"{key}={setting}" for key, setting in _HARDENING),
        f"StateDirectory={STATE_NAME}",
        f"CacheDirectory={STATE_NAME}",
        *(f"ReadWritePaths={word('-' + path)}" for path in paths),
    ]
    return "\n".join(lines) + "\n"


def timer_unit(name: str, schedule: str) -> str:
    """Return the body of the ``.timer`` unit that starts the backup of ``name`` on
    ``schedule`` (a shorthand such as ``daily`` or an OnCalendar expression)."""
    lines = [
        "[Unit]",
        f"Description=Back up the {value(name)} service on schedule (allmende)",
        "",
        "[Timer]",
        f"OnCalendar={value(derive.SCHEDULES.get(schedule, schedule))}",
        "# Start up to this much later, at random, so that backups do not all start at once.",
        f"RandomizedDelaySec={RANDOMIZED_DELAY}",
        "# Run a backup missed while the machine was off as soon as it is up again.",
        "Persistent=true",
        "",
        "[Install]",
        "WantedBy=timers.target",
    ]
    return "\n".join(lines) + "\n"
