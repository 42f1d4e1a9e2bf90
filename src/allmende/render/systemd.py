"""systemd units that run each service's backup on its schedule.

For every backed-up service (``inventory.backups.backed_up``: it holds data, its effective
consistency is not ``none`` and a repository applies to it), the host the service runs on gets

- ``<host>/etc/systemd/system/allmende-backup-<service>.timer``: ``OnCalendar=`` the schedule
  (``hourly``, ``daily``, ``weekly`` and ``monthly`` are systemd's own shorthands; any other
  value is an OnCalendar expression, written as it is), ``Persistent=true`` so that a backup
  missed while the machine was off runs when it is up again, and ``RandomizedDelaySec=``
  ``RANDOMIZED_DELAY`` (15 minutes) so that the backups of many services on one host, and of
  hosts sharing one repository server, do not all start in the same second, while an hourly
  schedule still runs roughly on the hour;
- ``<host>/etc/systemd/system/allmende-backup-<service>.service``: a ``Type=oneshot`` unit that
  runs ``BACKUP_COMMAND`` with the service's name (allmende's own copy, which apply puts on the
  host, running the job apply wrote to ``/etc/allmende/backup/<service>.json``), at low CPU and
  I/O priority, after the network is online, and hardened: no new privileges, the whole file
  system read-only (home directories too) except the service's directory ``/srv/<service>``
  (where the dumps pass through named pipes), a local repository, allmende's state and cache
  directories (``/var/lib/allmende``, ``/var/cache/allmende``, created by systemd through
  ``StateDirectory=``/``CacheDirectory=``), a private /tmp, control groups, kernel tunables and
  modules protected, no set-user-ID files, the execution domain locked (the Incus client's own
  settings in the cache directory, ``INCUS_CONF``, since home is read-only). A backup that drives
  podman (stopping and starting a service, or dumping its databases with ``podman exec``) gets
  no mount namespace of its own (``own_namespace``: no ``ProtectSystem=``, ``ProtectHome=``,
  ``PrivateTmp=``, ``ProtectControlGroups=``): podman mounts the file systems of the containers
  it starts, makes their control groups and keeps its state where it runs.

No unit holds a passphrase or any other secret: the job reads the repository passphrase from the
file apply wrote with mode 0600 (``/etc/allmende/backup/<service>.passphrase``). Values are
written with ``%`` doubled (systemd expands ``%`` specifiers in them, ``OnCalendar=``
included) and line breaks turned into spaces.
"""

from __future__ import annotations

from allmende.inventory import backups, derive
from allmende.inventory.hostpaths import (
    CACHE_DIR,
    PROGRAM,
    STATE_DIR,
    STATE_NAME,
    service_dir,
    unit_file,
)
from allmende.inventory.inventory import Inventory
from allmende.render.output import Rendered, service_sources, text

#: The program and verb a backup unit runs (allmende's copy on the host, by the host's
#: python3); the service's name is the last argument. ``allmende backup job`` is the same.
BACKUP_COMMAND = ("/usr/bin/python3", "-I", PROGRAM, "backup", "job")


def own_namespace(inventory: Inventory, name: str) -> bool:
    """Return whether a service's backup unit may have a mount namespace of its own: not when
    it drives podman (``stop`` of a service, or ``dump`` of the databases a service provides,
    on a podman host). podman mounts the file system of a container it starts where it runs,
    where the host would never see it, and keeps the state of every container and ``exec``
    session in its own files under /var/lib/containers and /run. docker is asked through its
    socket and does all that in its own daemon."""
    service = inventory.services[name]
    host = inventory.hosts[service.host]
    backup = derive.backup(inventory.collective, name, service)
    drives = backup.consistency == "stop" or (
        backup.consistency == "dump" and service.provides is not None
    )
    return not (host.runtime == "podman" and host.engine in ("compose", "kubernetes") and drives)


#: The Incus client's settings directory in a backup unit (created by the client).
INCUS_CONF = f"{CACHE_DIR}/incus"

#: How far systemd may move a start past the scheduled time, at random.
RANDOMIZED_DELAY = "15min"

#: Hardening that gives the unit a mount namespace of its own.
_NAMESPACED = (
    ("ProtectSystem", "strict"),
    ("ProtectHome", "read-only"),
    ("PrivateTmp", "yes"),
    ("ProtectControlGroups", "yes"),
)
_HARDENING = (
    ("NoNewPrivileges", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
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
    for name in backups.backed_up(inventory):
        backup = derive.backup(inventory.collective, name, inventory.services[name])
        chosen[name] = (backup.consistency, backup.schedule or derive.DEFAULT_SCHEDULE)
    return chosen


def writable(inventory: Inventory, name: str) -> list[str] | None:
    """Return the paths a service's backup unit may write besides allmende's directories (the
    service's directory, a local repository), or None when it has no namespace of its own
    (``own_namespace``) and may write anywhere."""
    if not own_namespace(inventory, name):
        return None
    backup = derive.backup(inventory.collective, name, inventory.services[name])
    paths = {service_dir(name)}
    if backup.repository and backup.repository.startswith("/"):
        paths.add(backup.repository)
    return sorted(paths)


def render(inventory: Inventory) -> dict[str, Rendered]:
    """Given an inventory, return the ``.service`` and ``.timer`` of every backed-up service
    under its host's ``etc/systemd/system/``."""
    files: dict[str, Rendered] = {}
    for name, (consistency, schedule) in backed_up(inventory).items():
        service = inventory.services[name]
        base = f"{service.host}{unit_file(unit_name(name))}"
        sources = service_sources(inventory, name)
        paths = writable(inventory, name)
        owner = inventory.collective.name
        files[f"{base}.service"] = text(
            service_unit(name, consistency, paths), sources, collective=owner
        )
        files[f"{base}.timer"] = text(timer_unit(name, schedule), sources, collective=owner)
    return files


def service_unit(name: str, consistency: str, paths: list[str] | None) -> str:
    """Return the body of the ``.service`` unit that backs up service ``name`` once, given its
    consistency and the paths it may write (``writable``; None: no namespace of its own)."""
    command = " ".join(word(part) for part in (*BACKUP_COMMAND, name))
    if paths is None:
        confined = [
            "# Hardening without a mount namespace of its own (no ProtectSystem=): the backup",
            "# starts podman containers again, whose file systems must be mounted where the",
            "# host sees them.",
        ]
    else:
        confined = [
            "# Hardening: everything read-only but the service's directory, a local repository",
            f"# and allmende's own directories ({STATE_DIR}, {CACHE_DIR}); a",
            "# path that does not exist is skipped (the - prefix).",
            *(f"{key}={setting}" for key, setting in _NAMESPACED),
        ]
    lines = [
        "[Unit]",
        f"Description=Back up the {value(name)} service (allmende)",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        f"# Consistency: {value(consistency)}. No passphrase or other secret belongs here:",
        "# the job reads the repository passphrase from the file apply wrote (mode 0600).",
        f"ExecStart={command}",
        "Nice=10",
        "IOSchedulingClass=idle",
        *confined,
        *(f"{key}={setting}" for key, setting in _HARDENING),
        f"StateDirectory={STATE_NAME}",
        f"CacheDirectory={STATE_NAME}",
        "# The Incus client (snapshots, stop and start on an Incus host) keeps its settings",
        "# under HOME, read-only here: it gets a directory of its own in the cache.",
        f"Environment={word(f'INCUS_CONF={INCUS_CONF}')}",
        *(f"ReadWritePaths={word('-' + path)}" for path in paths or ()),
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
