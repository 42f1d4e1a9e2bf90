"""A service's backup job, derived from the inventory: what is copied, how it is made
consistent, and the commands that do it on the service's engine.

- What: the host paths of the service's volumes (``derive.volumes``), less ``exclude``, and, for
  a service that provides databases and is backed up by ``dump``, one dump per database
  (``derive.databases``), streamed into the archive at ``hostpaths.dump_file`` (PostgreSQL as
  plain SQL from ``pg_dump --clean --if-exists``, MariaDB/MySQL as one INSERT per row from
  their dump tool, SQLite as a copy through its backup API, Redis as its RDB file).
- Consistency ``stop``: the service's running containers are stopped for the copy and started
  again (compose and Kubernetes played by podman: the containers carrying the service's labels;
  swarm: its services scaled to 0 and back; Incus: its instances; systemd: its units).
- Consistency ``snapshot`` on an Incus host: besides its volumes, each component's instance
  (``<service>-<component>``), whose own files are read from a snapshot Incus takes of it and
  archived at ``hostpaths.rootfs_copy`` (``/srv/<service>/<component>.rootfs``).
- The secrets that open the repository are files the host gets from apply
  (``hostpaths.backup_passphrase``, ``backup_ssh_key``), never part of the job.
"""

from __future__ import annotations

from allmende.inventory import derive
from allmende.inventory.backupjob import CONTAINER, Argv, Channel, Control, Dump, Instance, Job
from allmende.inventory.hostpaths import dump_file, rootfs_copy
from allmende.inventory.inventory import Inventory
from allmende.inventory.models import Service

#: Where each database's dump is in the archive, by engine: the file name's suffix.
DUMP_SUFFIX = {
    "postgres": "sql",
    "mariadb": "sql",
    "mysql": "sql",
    "sqlite": "sqlite",
    "redis": "rdb",
}
#: The mail server alerts are handed to when a channel names none: the host's own.
SMTP = "localhost:25"
#: Seconds a container is given to stop before it is killed.
STOP_TIMEOUT = "30"
#: What a MariaDB/MySQL client runs under: the root password from the server's own
#: environment (or the file it names) in MYSQL_PWD, never on a command line.
_MYSQL_AUTH = (
    'p="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"; '
    'f="${MARIADB_ROOT_PASSWORD_FILE:-${MYSQL_ROOT_PASSWORD_FILE:-}}"; '
    '[ -n "$f" ] && p=$(cat "$f"); MYSQL_PWD="$p" exec "$@"'
)


def passphrase_secret(service: str) -> str:
    """Return the name of the secret holding a service's repository passphrase."""
    return f"backup/{service}/passphrase"


def ssh_key_secret(service: str) -> str:
    """Return the name of the secret holding the SSH key a service's host reaches its
    ``ssh://`` repository with."""
    return f"backup/{service}/ssh-key"


def key_export_secret(service: str) -> str:
    """Return the name of the secret holding a copy of the repository's key (``borg key
    export``), for a repository whose own copy is damaged."""
    return f"backup/{service}/repository-key"


def watch_key_secret(host: str) -> str:
    """Return the name of the secret holding the SSH key with which the watch host asks
    ``host`` how fresh its backups are (and nothing else)."""
    return f"watch/{host}/ssh-key"


#: How the comment of every watch key begins: ``allmende-watch-<watch host>@<host>``; the
#: ``authorized_keys`` lines of a host whose comment begins so are allmende's to replace.
WATCH_KEY_MARK = "allmende-watch-"


def watch_key_comment(inventory: Inventory, host: str) -> str:
    """Return the comment of the watch host's key to ``host``: what it is for, where."""
    return f"{WATCH_KEY_MARK}{inventory.collective.watch.host}@{host}"


def asked_hosts(inventory: Inventory) -> list[str]:
    """Return the hosts the watch host (``watch.host``) asks over SSH how fresh their backups
    are, sorted: every host reached over SSH that backs a service up, but the watch host
    itself (none without a watch host)."""
    watcher = inventory.collective.watch.host
    if watcher is None:
        return []
    hosts = {inventory.services[name].host for name in backed_up(inventory)}
    return sorted(h for h in hosts if h != watcher and inventory.hosts[h].ssh is not None)


def backed_up(inventory: Inventory) -> list[str]:
    """Return the services that are backed up, sorted: those that hold data, whose effective
    consistency is not ``none`` and to which a repository applies."""
    return [name for name in sorted(inventory.services) if _backs_up(inventory, name)]


def _backs_up(inventory: Inventory, name: str) -> bool:
    """Whether service ``name`` is backed up (see ``backed_up``)."""
    service = inventory.services[name]
    backup = derive.backup(inventory.collective, name, service)
    return derive.has_data(service) and backup.consistency != "none" and bool(backup.repository)


def _labels(inventory: Inventory, name: str, component: str | None = None) -> Argv:
    """Return the ``ps`` command printing the ids of a service's running containers (of one
    component if given), by the labels its engine gives them; () where there is none."""
    host = inventory.hosts[inventory.services[name].host]
    if host.engine == "compose" or (host.engine == "kubernetes" and host.runtime == "podman"):
        keys = (
            ("org.allmende.service", "org.allmende.component")
            if host.engine == "compose"
            else ("app.kubernetes.io/part-of", "app.kubernetes.io/name")
        )
        filters = ["--filter", f"label={keys[0]}={name}"]
        if component is not None:
            filters += ["--filter", f"label={keys[1]}={component}"]
        return (host.runtime, "ps", "--quiet", *filters, "--filter", "status=running")
    if host.engine == "swarm" and component is not None:
        label = f"label=com.docker.swarm.service.name={name}_{component}"
        return ("docker", "ps", "--quiet", "--filter", label, "--filter", "status=running")
    return ()


def control(inventory: Inventory, name: str) -> Control | None:
    """Return how a service is stopped and started again on its engine, or None where
    allmende cannot (an engine it does not know)."""
    service = inventory.services[name]
    host = inventory.hosts[service.host]
    components = sorted(service.components)
    find = _labels(inventory, name)
    if find:
        runtime = find[0]
        return Control(((runtime, "stop", "--time", STOP_TIMEOUT),), ((runtime, "start"),), find)
    if host.engine == "swarm":
        scale = ("docker", "service", "scale", "--detach=false")
        return Control(
            ((*scale, *(f"{name}_{c}=0" for c in components)),),
            ((*scale, *(f"{name}_{c}={service.components[c].replicas}" for c in components)),),
        )
    if host.engine == "kubernetes":
        kubectl = ("kubectl", "--namespace", name, "scale")
        return Control(
            ((*kubectl, "deployment", "--all", "--replicas=0"),),
            tuple(
                (*kubectl, f"deployment/{c}", f"--replicas={service.components[c].replicas}")
                for c in components
            ),
        )
    if host.engine == "incus":
        return Control(
            (("incus", "stop", *(f"{name}-{c}" for c in components)),),
            (("incus", "start", *(f"{name}-{c}" for c in components)),),
        )
    if host.engine == "systemd":
        units = tuple(f"{name}-{c}.service" for c in components)
        return Control((("systemctl", "stop", *units),), (("systemctl", "start", *units),))
    return None


def exec_in(inventory: Inventory, name: str, component: str, user: str | None) -> tuple[Argv, Argv]:
    """Return (find, prefix): the command printing the id of the running container of a
    component (() where none is needed) and the words that run a program inside it, reading
    standard input, as ``user`` if given."""
    host = inventory.hosts[inventory.services[name].host]
    find = _labels(inventory, name, component)
    as_user = ("--user", user) if user else ()
    if find:
        return find, (find[0], "exec", "--interactive", *as_user, CONTAINER)
    if host.engine == "kubernetes":
        return (), ("kubectl", "--namespace", name, "exec", "-i", f"deployment/{component}", "--")
    if host.engine == "incus":
        # ``incus exec --user`` takes only a number, which differs between distributions.
        runuser: Argv = ("runuser", "-u", user, "--") if user else ()
        return (), ("incus", "exec", f"{name}-{component}", "--", *runuser)
    if host.engine == "systemd" and user:
        return (), ("runuser", "-u", user, "--")
    return (), ()


def _dump(inventory: Inventory, name: str, service: Service, database: str) -> Dump | None:
    """Return the dump of one database a service provides, or None for an engine whose
    databases allmende cannot dump."""
    assert service.provides is not None
    kind = service.provides.database
    component = derive.provider_component(service) or sorted(service.components)[0]
    env = service.components[component].env if component in service.components else {}
    path = dump_file(name, database, DUMP_SUFFIX[kind])
    if kind == "sqlite":
        volumes = [p for c, _, _, p in derive.volumes(name, service) if c == component]
        if not volumes:
            return None
        return Dump(database, kind, path, (f"{volumes[0]}/{database}",), (), ())
    user = "postgres" if kind == "postgres" else None
    find, prefix = exec_in(inventory, name, component, user)
    if kind == "postgres":
        role = f"--username={env.get('POSTGRES_USER', 'postgres')}"
        command: Argv = (*prefix, "pg_dump", role, "--clean", "--if-exists", database)
        load: Argv = (
            *prefix,
            "psql",
            role,
            "--no-psqlrc",
            "--quiet",
            "--set=ON_ERROR_STOP=1",
            "--single-transaction",
            f"--dbname={database}",
        )
    elif kind in ("mariadb", "mysql"):
        dump_tool, client = (
            ("mariadb-dump", "mariadb") if kind == "mariadb" else ("mysqldump", "mysql")
        )
        auth = (*prefix, "sh", "-c", _MYSQL_AUTH, "sh")
        command = (
            *auth,
            dump_tool,
            "--user=root",
            "--single-transaction",
            "--routines",
            "--triggers",
            "--skip-extended-insert",
            database,
        )
        load = (*auth, client, "--user=root", database)
    else:  # redis: its RDB file; put back while it is stopped
        command = (*prefix, "redis-cli", "--rdb", "/dev/stdout")
        load = ()
    return Dump(database, kind, path, command, load, find)


def channels_of(inventory: Inventory) -> list[Channel]:
    """Return the collective's ``notify`` channels, as ``operations.notify`` sends to them."""
    return [
        Channel("email", n.email, n.smtp or SMTP)
        if n.email
        else Channel("webhook", n.webhook or "")
        for n in inventory.collective.notify
    ]


def job(inventory: Inventory, name: str) -> Job | None:
    """Return the backup job of service ``name``, or None when it is not backed up (see
    ``backed_up``)."""
    if not _backs_up(inventory, name):
        return None
    service = inventory.services[name]
    host = inventory.hosts[service.host]
    backup = derive.backup(inventory.collective, name, service)
    assert backup.repository is not None
    excluded = set(backup.exclude)
    paths = sorted({p for *_, p in derive.volumes(name, service)} - excluded)
    dumps: list[Dump] = []
    if backup.consistency == "dump" and service.provides is not None:
        for database in derive.databases_of(inventory, name):
            found = _dump(inventory, name, service, database)
            if found is not None:
                dumps.append(found)
    instances: tuple[Instance, ...] = ()
    if backup.consistency == "snapshot" and host.engine == "incus":
        instances = tuple(
            Instance(c, f"{name}-{c}", rootfs_copy(name, c)) for c in sorted(service.components)
        )
    keep = backup.keep or derive.DEFAULT_KEEP
    periods = ("hourly", "daily", "weekly", "monthly", "yearly")
    channels = tuple(
        Channel("email", n.email, n.smtp or SMTP)
        if n.email
        else Channel("webhook", n.webhook or "")
        for n in inventory.collective.notify
    )
    return Job(
        service=name,
        host=service.host,
        repository=backup.repository,
        consistency=backup.consistency,
        schedule=backup.schedule or derive.DEFAULT_SCHEDULE,
        encryption=backup.encryption or derive.DEFAULT_ENCRYPTION,
        append_only=backup.append_only,
        keep=tuple((p, n) for p in periods if (n := getattr(keep, p)) is not None),
        paths=tuple(paths),
        exclude=tuple(sorted(excluded)),
        control=control(inventory, name),
        dumps=tuple(dumps),
        instances=instances,
        notify=channels,
        engine=f"{host.engine} on {host.runtime}",
        collective=inventory.collective.name,
    )
