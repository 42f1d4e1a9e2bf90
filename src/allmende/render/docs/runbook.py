"""Restore runbooks: the concrete steps to get a service's data back out of Borg.

Derived from the service's effective backup (``derive.backup``), its host, its engine and its
volumes, so the steps name the real repository, host paths and commands. Conventions assumed
about the backups (kept in one place here, shared with the backup job):

- archives are made on the service's host and hold each volume's host path, stored by Borg
  without the leading ``/`` (``srv/wiki/images``), so ``borg extract`` run in ``/`` puts
  files back where they were;
- with ``consistency: dump`` a service that provides a database also stores one dump per
  database at ``hostpaths.dump_file`` (``srv/<service>/dumps/<database>.<suffix>`` in the
  archive; PostgreSQL and MariaDB/MySQL as SQL, SQLite as a copy of its file, Redis as its RDB
  file), as ``inventory.backups`` makes them;
- the repository's passphrase is on the host, in the file apply wrote
  (``hostpaths.backup_passphrase``), and Borg's files under ``/var/lib/allmende/borg``.

The first steps are allmende's own (``allmende backup list``/``restore``, from a checkout of
the inventory with the age key); the rest does the same by hand on the host, with Borg alone.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from allmende.inventory import derive
from allmende.inventory.backups import DUMP_SUFFIX
from allmende.inventory.hostpaths import (
    BORG_BASE,
    backup_passphrase,
    backup_ssh_key,
    dump_file,
    project_file,
)
from allmende.inventory.models import Host, Service
from allmende.render.docs.blocks import Code, Link, Step, line

CONSISTENCY = {
    "dump": "databases are dumped while the service runs; volumes are copied as they are",
    "stop": "the service is stopped while its volumes are copied, then started again",
    "snapshot": "a filesystem snapshot of the volumes is copied while the service runs",
    "none": "not backed up",
}


@dataclass(frozen=True)
class Place:
    """Where a service runs, as its commands need it: the host's engine and runtime."""

    engine: str
    runtime: str = "docker"

    def compose(self, name: str) -> list[str]:
        """Return the compose command of the service's project on its host."""
        program = ["podman-compose"] if self.runtime == "podman" else ["docker", "compose"]
        return [*program, "--project-name", name, "--file", project_file(name, "compose")]


@dataclass(frozen=True)
class Runbook:
    """The host paths a restore puts back (none when it loads dumps), and the steps to follow."""

    paths: tuple[str, ...]
    steps: tuple[Step, ...]


def _in_archive(path: str) -> str:
    """Return a host path as Borg stores it in an archive: without the leading ``/``."""
    return path.removeprefix("/")


def _quote(words: Sequence[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)


def stop(place: Place, name: str, service: Service) -> str:
    """Return the command that stops every component of a service on its engine."""
    components = sorted(service.components)
    if place.engine == "swarm":
        return _quote(["docker", "service", "scale", *(f"{name}_{c}=0" for c in components)])
    if place.engine == "kubernetes":
        return _quote(
            ["kubectl", "--namespace", name, "scale", "deployment", "--all", "--replicas=0"]
        )
    if place.engine == "incus":
        return _quote(["incus", "stop", *(f"{name}-{c}" for c in components)])
    if place.engine == "systemd":
        return _quote(["systemctl", "stop", *(f"{name}-{c}.service" for c in components)])
    return _quote([*place.compose(name), "stop"])


def start(place: Place, name: str, service: Service) -> str:
    """Return the command that starts every component of a service again on its engine."""
    components = sorted(service.components)
    if place.engine == "swarm":
        return _quote(
            [
                "docker",
                "service",
                "scale",
                *(f"{name}_{c}={service.components[c].replicas}" for c in components),
            ]
        )
    if place.engine == "kubernetes":
        return "\n".join(
            _quote(
                [
                    "kubectl",
                    "--namespace",
                    name,
                    "scale",
                    f"deployment/{c}",
                    f"--replicas={service.components[c].replicas}",
                ]
            )
            for c in components
        )
    if place.engine == "incus":
        return _quote(["incus", "start", *(f"{name}-{c}" for c in components)])
    if place.engine == "systemd":
        return _quote(["systemctl", "start", *(f"{name}-{c}.service" for c in components)])
    return _quote([*place.compose(name), "start"])


def run_in(place: Place, name: str, component: str, words: Sequence[str]) -> str:
    """Return the command that runs ``words`` inside a component, reading standard input."""
    if place.engine == "swarm":
        prefix = f"docker exec -i $(docker ps --quiet --filter name={name}_{component} | head -n1)"
        return f"{prefix} {_quote(words)}"
    if place.engine == "kubernetes":
        return _quote(
            ["kubectl", "--namespace", name, "exec", "-i", f"deployment/{component}", "--", *words]
        )
    if place.engine == "incus":
        return _quote(["incus", "exec", f"{name}-{component}", "--", *words])
    if place.engine == "systemd":
        return _quote(words)
    return _quote([*place.compose(name), "exec", "-T", component, *words])


def login(host_name: str, host: Host) -> Step:
    """Return the step that opens a shell on the host (or says it is this machine)."""
    if host.ssh is None:
        return Step(
            line(
                "Open a shell on ",
                Link(host_name, page=f"hosts/{host_name}"),
                ": it is the machine allmende runs on, no SSH needed.",
            )
        )
    port = [] if host.ssh.port == 22 else ["-p", str(host.ssh.port)]
    command = _quote(["ssh", *port, f"{host.ssh.user}@{host.address or host_name}"])
    return Step(line("Log in to ", Link(host_name, page=f"hosts/{host_name}"), "."), command)


def _database_restore(place: Place, name: str, service: Service, db: str, repo: str) -> Step:
    """Return the step that loads one database's dump back into the running server."""
    assert service.provides is not None
    kind = service.provides.database
    component = derive.provider_component(service) or sorted(service.components)[0]
    dump = _in_archive(dump_file(name, db, DUMP_SUFFIX.get(kind, "dump")))
    extract = _quote(["borg", "extract", "--stdout", f"{repo}::"]) + "$ARCHIVE " + _quote([dump])
    if kind == "postgres":
        words = [
            "psql",
            "--username=postgres",
            "--no-psqlrc",
            "--set=ON_ERROR_STOP=1",
            "--single-transaction",
            f"--dbname={db}",
        ]
        return Step(
            line(
                "Load the dump of the database ",
                Code(db),
                " with ",
                Code("psql"),
                " (it drops and recreates what the dump contains):",
            ),
            f"{extract} \\\n  | {run_in(place, name, component, words)}",
        )
    client = "mariadb" if kind == "mariadb" else "mysql"
    words = [client, "--user=root", "--password", db]
    return Step(
        line(
            "Load the dump of the database ",
            Code(db),
            " with ",
            Code(client),
            " (it asks for the root password):",
        ),
        f"{extract} \\\n  | {run_in(place, name, component, words)}",
    )


def _file_restore(
    place: Place, name: str, service: Service, repo: str, dump: str, target: str, what: str
) -> Step:
    """Return the step that puts a database's file (``dump`` in the archive) back at
    ``target`` while the service is stopped."""
    extract = _quote(["borg", "extract", "--stdout", f"{repo}::"]) + "$ARCHIVE " + _quote([dump])
    return Step(
        line(f"Put {what} back while the service is stopped, then start it:"),
        f"{stop(place, name, service)}\n{extract} > {shlex.quote(target)}\n"
        f"{start(place, name, service)}",
    )


def restore(
    hosts: Mapping[str, Host],
    name: str,
    service: Service,
    backup: derive.Backup,
    databases: Sequence[str] = (),
) -> Runbook:
    """Given a service and its effective backup, return the steps that restore its data.

    A service that provides a database and is backed up by ``dump`` is restored from its dumps
    into the running server (its volume files were copied while it ran and are not consistent);
    every other service by extracting its volumes while it is stopped. ``databases`` are the
    names of the databases the service offers (declared or used by others). Return an empty Runbook
    when the service is not backed up (consistency ``none``) or has no repository.
    """
    if backup.consistency == "none" or not backup.repository:
        return Runbook((), ())
    host = hosts[service.host]
    place = Place(host.engine, host.runtime)
    repo = backup.repository
    paths = sorted({p for *_, p in derive.volumes(name, service)})
    dumps = (
        service.provides is not None
        and backup.consistency == "dump"
        and service.provides.database in DUMP_SUFFIX
    )
    steps = [
        Step(
            line(
                "With allmende, from a checkout of the inventory with your age key: list the "
                "archives, look at one in a directory on the host first if you like, then put "
                "the service back (it is stopped, its data moved aside, the archive's put back, "
                "its databases loaded, and it is started again and checked):"
            ),
            f"allmende backup list {name}\n"
            f"allmende backup restore {name} --to /var/tmp/{name}-restore\n"
            f"allmende backup restore {name} --in-place   # or --archive NAME",
        ),
        Step(line("Or by hand, with Borg alone on the host:")),
        login(service.host, host),
    ]
    env = [
        f"export BORG_PASSCOMMAND={shlex.quote('cat ' + backup_passphrase(name))}",
        f"export BORG_BASE_DIR={BORG_BASE}",
    ]
    if repo.startswith("ssh://"):
        env.append(f"export BORG_RSH={shlex.quote('ssh -i ' + backup_ssh_key(name))}")
    steps.append(
        Step(
            line(
                "Let Borg read the repository's passphrase",
                f" ({backup.encryption})" if backup.encryption else "",
                " from the file allmende keeps on the host:",
            ),
            "\n".join(env),
        )
    )
    steps.append(
        Step(
            line("List the archives and choose one (the newest is last):"),
            f"borg list {shlex.quote(repo)}\nARCHIVE='the archive name from the first column'",
        )
    )
    steps.append(
        Step(
            line("See what the archive holds before touching anything:"),
            f"borg list {shlex.quote(repo + '::')}$ARCHIVE | less",
        )
    )
    if dumps and service.provides is not None:
        kind = service.provides.database
        if kind in ("postgres", "mariadb", "mysql"):
            steps.append(
                Step(
                    line(
                        "If the database server itself is gone (a new host, an empty "
                        "volume), start the service with empty volumes first: the server "
                        "initialises itself, then load the dumps into it."
                    )
                )
            )
            for db in sorted(set(databases)):
                steps.append(_database_restore(place, name, service, db, repo))
        elif kind == "sqlite":
            for db in sorted(set(databases)):
                dump = _in_archive(dump_file(name, db, DUMP_SUFFIX[kind]))
                target = f"{paths[0]}/{db}" if paths else db
                steps.append(
                    _file_restore(place, name, service, repo, dump, target, f"the file of {db}")
                )
        else:
            target = f"{paths[0]}/dump.rdb" if paths else "dump.rdb"
            dump = _in_archive(dump_file(name, "redis", "rdb"))
            steps.append(_file_restore(place, name, service, repo, dump, target, "Redis's dump"))
    elif paths:
        steps.append(
            Step(
                line("Stop the service so nothing writes while files come back:"),
                stop(place, name, service),
            )
        )
        moves = "\n".join(
            f"mv {shlex.quote(p)} {shlex.quote(p + '.before-restore')}" for p in paths
        )
        steps.append(
            Step(
                line("Keep today's data aside, in case the archive is older than you thought:"),
                moves,
            )
        )
        relative = " ".join(shlex.quote(p.lstrip("/")) for p in paths)
        steps.append(
            Step(
                line(
                    "Extract the volumes. Borg stores paths without the leading ",
                    Code("/"),
                    ", so extract in ",
                    Code("/"),
                    " to put them back in place:",
                ),
                f"cd /\nborg extract --list {shlex.quote(repo + '::')}$ARCHIVE {relative}",
            )
        )
        steps.append(Step(line("Start the service again:"), start(place, name, service)))
    if paths and not dumps:
        steps.append(
            Step(
                line(
                    "Check that the service works, then remove the ",
                    Code("*.before-restore"),
                    " copies once you are sure.",
                )
            )
        )
    else:
        steps.append(Step(line("Check that the service works.")))
    return Runbook(() if dumps else tuple(paths), tuple(steps))
