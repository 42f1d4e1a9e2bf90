"""Borg's command lines, its environment, and what its answers and failures mean.

Pure functions that build argument lists (borgmatic's ``borg/`` modules are the model); the
policy that decides when to run them is in ``operations.backup`` and its neighbours. Every
command is run on the service's host, in a directory given with ``env -C`` so that paths are
stored relative (``srv/wiki/data``) and extracted where they belong.

The passphrase never appears in an argument list, the environment or a log: Borg reads it from
its standard input (``BORG_PASSPHRASE_FD=0``), which carries nothing else.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from allmende.errors import CommandFailed, UserError
from allmende.inventory.backupjob import Job
from allmende.inventory.hostpaths import BORG_BASE, BORG_CACHE, STATE_DIR, backup_ssh_key

#: The known_hosts file of repository servers: written on first contact (it must be writable
#: under the backup unit's ``ProtectSystem=strict``, so it sits in allmende's state directory).
KNOWN_HOSTS = f"{STATE_DIR}/known_hosts"
#: Borg exits 1 for warnings (a file that changed while it was read): the archive is made.
OK = (0, 1)


def environment(job: Job, real: Callable[[str], str] = str) -> dict[str, str]:
    """Return the variables every Borg command of ``job`` runs with: the passphrase from
    standard input, Borg's own files under allmende's directories (host paths, where they
    ``real``-ly are), no questions asked, and for ``ssh://`` repositories the service's key
    and host-key checking."""
    env = {
        "BORG_PASSPHRASE_FD": "0",
        "BORG_BASE_DIR": real(BORG_BASE),
        "BORG_CACHE_DIR": real(BORG_CACHE),
        "BORG_HOSTNAME_IS_UNIQUE": "yes",
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
        "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING": "NO",
        "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING": "NO",
        "LANG": "C.UTF-8",
        # Borg writes archive times in local time without a zone: make that UTC.
        "TZ": "UTC",
    }
    if job.remote:
        env["BORG_RSH"] = shlex.join(
            [
                "ssh",
                "-i",
                real(backup_ssh_key(job.service)),
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-o",
                f"UserKnownHostsFile={real(KNOWN_HOSTS)}",
                "-o",
                "ConnectTimeout=20",
                "-o",
                "ServerAliveInterval=30",
            ]
        )
    return env


def in_dir(directory: str, argv: Sequence[str]) -> list[str]:
    """Return ``argv`` run in ``directory`` (``env -C``)."""
    return ["env", "-C", directory, *argv]


def archive_prefix(service: str) -> str:
    """Return how every archive of a service's backup starts (``<service>-``)."""
    return f"{service}-"


def archive(job: Job, name: str) -> str:
    """Return ``REPOSITORY::NAME``."""
    return f"{job.repository}::{name}"


def init(job: Job) -> list[str]:
    """Return ``borg init`` of the job's repository (append-only if the job says so)."""
    flags = ["--append-only"] if job.append_only else []
    return [
        "borg",
        "init",
        f"--encryption={job.encryption}",
        "--make-parent-dirs",
        *flags,
        job.repository,
    ]


def create(
    job: Job, name: str, paths: Sequence[str], excludes: Sequence[str], comment: str = ""
) -> list[str]:
    """Return ``borg create`` of archive ``name`` from ``paths`` (relative to the host's root,
    in this order), leaving out the patterns ``excludes``; named pipes are read (the dumps)."""
    words = [
        "borg",
        "create",
        "--json",
        "--read-special",
        "--one-file-system",
        f"--compression={job.compression}",
        "--exclude-caches",
    ]
    for pattern in excludes:
        words += ["--exclude", pattern]
    if comment:
        words += ["--comment", comment]
    return [*words, archive(job, name), *paths]


def list_archives(job: Job, last: int | None = None, lock: bool = True) -> list[str]:
    """Return ``borg list --json`` of the service's archives (the last ``last`` if given;
    without taking the repository's lock unless ``lock``: see ``archives.archives``)."""
    words = ["borg", "list", "--json", f"--glob-archives={archive_prefix(job.service)}*"]
    if last is not None:
        words.append(f"--last={last}")
    if not lock:
        words.append("--bypass-lock")
    return [*words, job.repository]


def info(job: Job, name: str) -> list[str]:
    """Return ``borg info --json`` of one archive (its size, duration, comment)."""
    return ["borg", "info", "--json", archive(job, name)]


def check(job: Job, verify_data: bool = False) -> list[str]:
    """Return ``borg check`` of the repository and archives (and, with ``verify_data``,
    every chunk decrypted and checked)."""
    return ["borg", "check", *(["--verify-data"] if verify_data else []), job.repository]


def extract(job: Job, name: str, paths: Sequence[str] = (), stdout: bool = False) -> list[str]:
    """Return ``borg extract`` of ``paths`` (all if none) of an archive, into the current
    directory (``in_dir``) or, with ``stdout``, to standard output. Files of Incus instances
    get back their owners' numbers, not whichever of this host's users bear the names the
    host they came from gave those numbers."""
    words = ["borg", "extract", *(["--stdout"] if stdout else [])]
    if job.instances:
        words.append("--numeric-ids")
    return [*words, archive(job, name), *paths]


def prune(job: Job) -> list[str]:
    """Return ``borg prune`` of the service's archives by its ``keep`` policy."""
    keep = [f"--keep-{period}={count}" for period, count in job.keep]
    return [
        "borg",
        "prune",
        f"--glob-archives={archive_prefix(job.service)}*",
        *keep,
        job.repository,
    ]


def delete(job: Job, name: str) -> list[str]:
    """Return ``borg delete`` of one archive (in an append-only repository, only marked)."""
    return ["borg", "delete", archive(job, name)]


def path_pattern(host_path: str) -> str:
    """Return Borg's pattern of everything under a host path (``pp:srv/wiki/cache``)."""
    return "pp:" + host_path.strip("/")


def full_pattern(archive_path: str) -> str:
    """Return Borg's pattern of exactly one path (``pf:srv/wiki/data/fifo``)."""
    return "pf:" + archive_path.strip("/")


@dataclass(frozen=True)
class Archive:
    """One archive in the repository: its name, when it was made (UTC, ISO 8601) and id."""

    name: str
    time: str
    id: str = ""


def parse_list(output: bytes) -> list[Archive]:
    """Return the archives of ``borg list --json``, oldest first. Raise ValueError."""
    data = json.loads(output)
    return [
        Archive(str(a["name"]), str(a.get("time") or a.get("start") or ""), str(a.get("id", "")))
        for a in data.get("archives", [])
    ]


def parse_stats(output: bytes) -> dict[str, float]:
    """Return the sizes and duration Borg reports for one archive (``create --json`` or
    ``info --json``): original, compressed and deduplicated bytes, files, seconds."""
    data = json.loads(output)
    found = data.get("archive") or (data.get("archives") or [{}])[0]
    stats: Mapping[str, float] = found.get("stats", {})
    return {
        "original": float(stats.get("original_size", 0)),
        "compressed": float(stats.get("compressed_size", 0)),
        "deduplicated": float(stats.get("deduplicated_size", 0)),
        "files": float(stats.get("nfiles", 0)),
        "seconds": float(found.get("duration", 0)),
    }


#: What Borg says (words, or a pattern searched in its output), and what it means for the user;
#: the first that matches counts.
_MEANINGS: tuple[tuple[str | re.Pattern[str], str], ...] = (
    (
        re.compile(r"Archive \S+ already exists"),
        "an archive of that name is already in the repository (another run made it at the "
        "same moment): run the backup again",
    ),
    (
        re.compile(r"Archive \S+ does not exist"),
        "there is no archive of that name in the repository: `allmende backup list` shows "
        "those there are",
    ),
    ("passphrase supplied in BORG_PASSPHRASE", "the repository passphrase is wrong"),
    ("passphrase supplied in", "the repository passphrase is wrong"),
    (
        "is not a valid repository",
        "there is no Borg repository there: create it with `allmende backup init`",
    ),
    ("does not exist", "there is no Borg repository there: create it with `allmende backup init`"),
    ("No space left on device", "the repository's disk is full: nothing of this run was kept"),
    ("Connection closed by remote host", "the repository server cannot be reached"),
    ("Connection refused", "the repository server cannot be reached (connection refused)"),
    ("Could not resolve hostname", "the repository server's name does not resolve"),
    (
        "Permission denied (publickey",
        "the repository server refuses this host's SSH key: "
        "add the line `allmende backup authorized-keys` prints to its authorized_keys",
    ),
    ("Repository path not allowed", "the repository server allows this key another path only"),
    ("Failed to create/acquire the lock", "another Borg command holds the repository's lock"),
    ("Host key verification failed", "the repository server's host key has changed"),
    ("A repository already exists at", "a repository already exists there"),
)


def meaning(output: str) -> str:
    """Return what a failed Borg command's output means, in a sentence ("" when unknown)."""
    for needle, said in _MEANINGS:
        if needle in output if isinstance(needle, str) else needle.search(output):
            return said
    return ""


def failure(exc: CommandFailed, service: str, doing: str) -> UserError:
    """Translate a failed Borg command into a UserError saying what it means."""
    said = meaning(exc.output)
    text = f"{service}: {doing} failed"
    if said:
        text += f": {said}"
    return UserError(f"{text}\n{exc.output[-1500:]}" if exc.output else text)
