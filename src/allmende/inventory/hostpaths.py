"""Where allmende keeps things on a host: every path it writes or reads there, spelled once.

Paths are absolute, as on the host. Renderers key their files by host and path without a
separator between them (``<host>/srv/<service>/compose.yaml`` is ``host + path``).

- a service's directory ``/srv/<service>``: its project file (by engine), its ``secrets/``
  (mode 0600), its volumes (by default) and its database dumps;
- HAProxy's files where the Debian package has them: configuration, certificates, runtime
  sockets and pidfile, the workers' chroot;
- systemd units, and the drop-in that gives the Debian HAProxy unit allmende's master socket;
- Incus: the preseed of an Incus host and the instances of its containers that are hosts;
- allmende's own state on the host: the manifest of what it wrote, the key of its hashes of
  secret files, the apply lock;
- backups: each service's job file, passphrase and SSH key under ``/etc/allmende/backup``, and
  allmende itself (``/usr/local/lib/allmende/allmende.pyz``), which the backup timers run;
- the watcher: its plan and unit, and under ``/etc/allmende/watch`` the keys with which it asks
  the other hosts how fresh their backups are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

# Services

#: The directory that holds one directory per service.
SERVICES = "/srv"
#: The directory under a service's where its secret files are.
SECRETS = "secrets"
#: The project file of a service, by engine.
PROJECT_FILES = {
    "compose": "compose.yaml",
    "kubernetes": "kubernetes.yaml",
    "swarm": "stack.yaml",
    "incus": "incus.yaml",
}
#: The file under a service's ``secrets/`` that holds its Kubernetes Secret objects.
KUBERNETES_SECRETS = "kubernetes.yaml"


def service_dir(service: str) -> str:
    """Return the directory of a service: ``/srv/<service>``."""
    return f"{SERVICES}/{service}"


def project_file(service: str, engine: str) -> str:
    """Return the project file of a service on an engine of ``PROJECT_FILES``:
    ``/srv/<service>/compose.yaml``, ``stack.yaml`` or ``kubernetes.yaml``."""
    return f"{service_dir(service)}/{PROJECT_FILES[engine]}"


def volume_dir(service: str, volume: str) -> str:
    """Return where a volume without a ``host`` path lives: ``/srv/<service>/<volume>``."""
    return f"{service_dir(service)}/{volume}"


#: The inventory's directory of carried configuration files (``files/<service>/...``), and
#: the directory of a service where the compose engine puts them.
CARRIED = "files"


def carried_file(service: str, source: str) -> str:
    """Return where a carried file ``source`` of a service lies on its host:
    ``/srv/<service>/files/<source>``."""
    return f"{service_dir(service)}/{CARRIED}/{source.strip('/')}"


def secret_file(service: str, flat: str) -> str:
    """Return the file of a secret (by its flat name) of a service:
    ``/srv/<service>/secrets/<flat name>``."""
    return f"{service_dir(service)}/{SECRETS}/{flat}"


def kubernetes_secrets(service: str) -> str:
    """Return the file that holds a service's Kubernetes Secrets:
    ``/srv/<service>/secrets/kubernetes.yaml``."""
    return secret_file(service, KUBERNETES_SECRETS)


def dump_file(service: str, database: str, suffix: str) -> str:
    """Return where the backup job puts the dump of a database a service provides:
    ``/srv/<service>/dumps/<database>.<suffix>``."""
    return f"{service_dir(service)}/dumps/{database}.{suffix}"


def rootfs_copy(service: str, component: str) -> str:
    """Return where a backup puts the files of a component's Incus instance, read from a
    snapshot: ``/srv/<service>/<component>.rootfs`` (no volume's name has a dot)."""
    return f"{service_dir(service)}/{component}.rootfs"


def service_of(path: str) -> str | None:
    """Return the service a host path belongs to (``/srv/<service>/...``), else None."""
    parts = PurePosixPath(path).parts
    return parts[2] if len(parts) > 3 and parts[1] == PurePosixPath(SERVICES).name else None


# HAProxy

HAPROXY_DIR = "/etc/haproxy"
HAPROXY_CONFIG = f"{HAPROXY_DIR}/haproxy.cfg"
#: The crt-list: one certificate file per domain the edge terminates TLS for.
HAPROXY_CERTS_LIST = f"{HAPROXY_DIR}/certs.list"
HAPROXY_CERTS = f"{HAPROXY_DIR}/certs"
#: The page the edge answers with while a service has no server up (HTTP 503).
HAPROXY_MAINTENANCE = f"{HAPROXY_DIR}/errors/allmende-503.http"
#: HAProxy's files whose change means a reload.
PROXY_FILES = (HAPROXY_CONFIG, HAPROXY_CERTS_LIST, HAPROXY_MAINTENANCE)
HAPROXY_RUN = "/run/haproxy"
HAPROXY_ADMIN_SOCKET = f"{HAPROXY_RUN}/admin.sock"
HAPROXY_MASTER_SOCKET = f"{HAPROXY_RUN}/master.sock"
HAPROXY_PIDFILE = f"{HAPROXY_RUN}/haproxy.pid"
#: The chroot of the workers (the configuration's global section says so).
HAPROXY_CHROOT = "/var/lib/haproxy"


def certificate(domain: str) -> str:
    """Return the PEM file (chain and key) of a domain: ``/etc/haproxy/certs/<domain>.pem``;
    of a wildcard ``*.<domain>``: ``/etc/haproxy/certs/_wildcard.<domain>.pem`` (no host name
    starts with ``_``)."""
    if domain.startswith("*."):
        return f"{HAPROXY_CERTS}/_wildcard.{domain[2:]}.pem"
    return f"{HAPROXY_CERTS}/{domain}.pem"


@dataclass(frozen=True)
class ProxyPaths:
    """Where HAProxy's configuration, master socket and pidfile are on the host."""

    config: str = HAPROXY_CONFIG
    master_socket: str = HAPROXY_MASTER_SOCKET
    pidfile: str = HAPROXY_PIDFILE


#: Where the Debian package keeps HAProxy's files.
HAPROXY_PATHS = ProxyPaths()

# systemd

SYSTEMD_DIR = "/etc/systemd/system"
#: The start of the path of every unit file.
UNITS = f"{SYSTEMD_DIR}/"
#: The drop-in that gives the Debian unit allmende's master socket.
HAPROXY_DROP_IN = f"{SYSTEMD_DIR}/haproxy.service.d/allmende.conf"
#: What exists when the host runs systemd.
SYSTEMD_RUNNING = "/run/systemd/system"


def unit_file(unit: str) -> str:
    """Return the file of a systemd unit (``name.service``, ``name.timer``)."""
    return f"{UNITS}{unit}"


# Incus

#: allmende's Incus files on an Incus host: the preseed and its containers that are hosts.
INCUS_DIR = "/etc/allmende/incus"
#: The storage pool, network and profile of the host, for ``incus admin init --preseed``.
INCUS_PRESEED = f"{INCUS_DIR}/preseed.yaml"
#: Where Incus keeps a snapshot's root file system on a ``dir`` or ``btrfs`` pool.
INCUS_POOLS = "/var/lib/incus/storage-pools"


def incus_host_file(host: str) -> str:
    """Return the instance definition of a container that is itself a host (``system:`` in
    its host file), on its Incus parent: ``/etc/allmende/incus/hosts/<host>.yaml``."""
    return f"{INCUS_DIR}/hosts/{host}.yaml"


def incus_snapshot_rootfs(pool: str, instance: str, snapshot: str) -> str:
    """Return where a container snapshot's files are on a ``dir`` or ``btrfs`` pool."""
    return f"{INCUS_POOLS}/{pool}/containers-snapshots/{instance}/{snapshot}/rootfs"


def incus_rootfs(pool: str, instance: str) -> str:
    """Return where a container's own files are on a ``dir`` or ``btrfs`` pool."""
    return f"{INCUS_POOLS}/{pool}/containers/{instance}/rootfs"


# allmende's own

#: allmende's directory under /var/lib and /var/cache on every host (systemd's
#: ``StateDirectory=``/``CacheDirectory=`` name).
STATE_NAME = "allmende"
STATE_DIR = f"/var/lib/{STATE_NAME}"
CACHE_DIR = f"/var/cache/{STATE_NAME}"
#: What allmende wrote on the host, with hashes and sources (written last by apply).
MANIFEST = f"{STATE_DIR}/manifest.json"
#: The host's random key for the hashes of files that carry secrets (mode 0600; see
#: ``plan.digest``).
HASH_KEY = f"{STATE_DIR}/hash.key"
#: Held while apply changes the host: a directory, since creating one is atomic.
APPLY_LOCK = f"{STATE_DIR}/apply.lock"

# Backups

#: What a host needs to back up its services on its own: one job file per service (what the
#: timer runs), the repository passphrase of each (mode 0600, from the secret store), and the
#: SSH key (0600) and known_hosts of ``ssh://`` repositories.
BACKUP_DIR = "/etc/allmende/backup"
#: allmende itself on the host, as one zip application run by the host's python3.
PROGRAM_DIR = "/usr/local/lib/allmende"
PROGRAM = f"{PROGRAM_DIR}/allmende.pyz"
#: The host's own state database: the runs its timers made.
HOST_STATE = f"{STATE_DIR}/state.sqlite"
#: Borg's own files on the host: its security and key directories, and its (large) cache.
BORG_BASE = f"{STATE_DIR}/borg"
BORG_CACHE = f"{CACHE_DIR}/borg"
#: Where a restore drill extracts an archive, one directory per drill.
SCRATCH = "/var/tmp"


# Certificates

#: What an edge host needs to renew its certificates on its own: the job its timer runs, the
#: collective's ACME account key and the TSIG keys of the zones dns-01 updates (mode 0600).
CERTS_DIR = "/etc/allmende/certs"
CERTS_JOB = f"{CERTS_DIR}/job.json"
ACME_ACCOUNT_KEY = f"{CERTS_DIR}/account.pem"
#: Where the http-01 responder keeps its control files (``ready``, ``stop``) while it runs.
ACME_RESPONDER_DIR = f"{STATE_DIR}/acme-responder"


def tsig_key(zone: str) -> str:
    """Return the file holding the TSIG key of a zone's updates on an edge host:
    ``/etc/allmende/certs/tsig/<zone>.key``."""
    return f"{CERTS_DIR}/tsig/{zone}.key"


def backup_job(service: str) -> str:
    """Return the job file of a service's backup: ``/etc/allmende/backup/<service>.json``."""
    return f"{BACKUP_DIR}/{service}.json"


def backup_passphrase(service: str) -> str:
    """Return the file holding a service's repository passphrase (mode 0600)."""
    return f"{BACKUP_DIR}/{service}.passphrase"


def backup_ssh_key(service: str) -> str:
    """Return the private SSH key with which a service's host reaches its repository."""
    return f"{BACKUP_DIR}/{service}.ssh-key"


def backup_known_hosts(service: str) -> str:
    """Return the known_hosts file of a service's ``ssh://`` repository server."""
    return f"{BACKUP_DIR}/{service}.known_hosts"


def backup_manifest(service: str) -> str:
    """Return where a backup's manifest is in its archive (as a host path): what the archive
    should hold, read back by restore drills."""
    return f"{service_dir(service)}/dumps/allmende-manifest.json"


def backup_file_list(service: str) -> str:
    """Return where a backup's file list (every file's size and checksum, every link) is in its
    archive (as a host path), beside the manifest that names it: the same bytes while the
    files are unchanged, so that Borg stores it once."""
    return f"{service_dir(service)}/dumps/allmende-files.json"


def stopped_file(service: str) -> str:
    """Return the file naming the containers a backup stopped, until it starts them again (a
    backup killed half-way leaves it for the next run to start them)."""
    return f"{STATE_DIR}/backup/{service}.stopped"


def hash_cache(service: str) -> str:
    """Return the file caching the checksums of a service's unchanged files between runs."""
    return f"{CACHE_DIR}/backup/{service}.hashes.json"


# The watcher

#: What the watch host's unit runs: the probes, alerts and settings derived from the inventory.
WATCH_PLAN = "/etc/allmende/watch.json"
#: The systemd unit of the watcher on the watch host.
WATCH_UNIT = "allmende-watch.service"
#: What the watch host needs to ask the other hosts how fresh their backups are: one private
#: SSH key per host (mode 0600) and the known_hosts file their host keys are checked against.
WATCH_DIR = "/etc/allmende/watch"
WATCH_KNOWN_HOSTS = f"{WATCH_DIR}/known_hosts"
#: On each host the watch host asks: the ``authorized_keys`` lines allmende keeps for it in
#: the SSH user's ``~/.ssh/authorized_keys`` (a record; apply puts them there).
WATCH_AUTHORIZED = f"{WATCH_DIR}/authorized_keys"


def watch_key(host: str) -> str:
    """Return the private SSH key with which the watch host asks ``host`` how fresh its
    backups are: ``/etc/allmende/watch/<host>.ssh-key``."""
    return f"{WATCH_DIR}/{host}.ssh-key"


#: The only places allmende deletes from, whatever a manifest says.
MANAGED = (
    f"{SERVICES}/",
    f"{HAPROXY_DIR}/",
    UNITS,
    f"{INCUS_DIR}/",
    f"{BACKUP_DIR}/",
    f"{PROGRAM_DIR}/",
    WATCH_PLAN,
    f"{WATCH_DIR}/",
)
