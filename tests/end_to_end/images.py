"""Debian images for the end-to-end tests, made without any registry: a debootstrap rootfs with
Debian's packages (TESTBED 7d-7f), imported into the test podman's storage.

A rootfs takes about a minute to make, so its tarball is kept in a cache directory the tests of
one run share (``ALLMENDE_TEST_CACHE`` to keep it across runs too) and made only once per set of
packages and files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

#: The entry point of the PostgreSQL image: initialise the cluster once (local connections by
#: peer only: allmende reaches it with `podman exec --user postgres`), then run the server.
POSTGRES_ENTRY = """\
#!/bin/sh
set -e
data=/var/lib/postgresql/data
bin=/usr/lib/postgresql/15/bin
mkdir -p "$data" /run/postgresql
chown postgres:postgres "$data" /run/postgresql
chmod 0700 "$data"
if [ ! -f "$data/PG_VERSION" ]; then
  su postgres -c "$bin/initdb -D $data --auth-local=peer --auth-host=reject \\
    -E UTF8 --locale=C.UTF-8 --no-sync" >/dev/null
fi
exec su postgres -c "exec $bin/postgres -D $data -c listen_addresses='' -c fsync=off"
"""


#: The entry point of the MariaDB image: initialise the data directory once (root logs in by
#: its Unix socket only, as Debian sets it up), then run the server without networking.
MARIADB_ENTRY = """\
#!/bin/sh
set -e
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null
fi
exec mariadbd --user=mysql --datadir=/var/lib/mysql --skip-networking
"""


def cache_dir(factory: pytest.TempPathFactory) -> Path:
    """Return the directory the tests of this run keep slow artefacts in."""
    configured = os.environ.get("ALLMENDE_TEST_CACHE")
    path = Path(configured) if configured else factory.getbasetemp() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def mirror() -> str:
    """Return the Debian mirror apt already uses."""
    for line in Path("/etc/apt/sources.list.d/debian.sources").read_text().splitlines():
        if line.startswith("URIs: "):
            return line.split()[1]
    return "http://deb.debian.org/debian"


def rootfs_tar(
    factory: pytest.TempPathFactory, packages: Sequence[str], files: Mapping[str, str]
) -> Path:
    """Return a tarball of a minimal Debian 12 rootfs with ``packages`` and ``files`` (path in
    the rootfs -> text, made executable), made once and cached."""
    if shutil.which("debootstrap") is None:
        pytest.fail("debootstrap is missing: run `script/bootstrap test`", pytrace=False)
    key = hashlib.sha256(repr((sorted(packages), sorted(files.items()))).encode()).hexdigest()
    tar = cache_dir(factory) / f"debian-12-{key[:16]}.tar"
    if tar.exists():
        return tar
    with tempfile.TemporaryDirectory(dir=cache_dir(factory)) as scratch:
        root = Path(scratch) / "root"
        done = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                "bookworm",
                str(root),
                mirror(),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        if done.returncode != 0:
            pytest.fail(f"debootstrap failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        for directory in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for child in (root / directory).glob("*"):
                if child.is_file():
                    child.unlink()
        for path, text in files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            target.chmod(0o755)
        partial = tar.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.rename(tar)
    return tar


def import_image(env: Mapping[str, str], tar: Path, name: str, changes: Sequence[str]) -> str:
    """Import ``tar`` as image ``name`` into the podman of ``env``; return the name."""
    words = [word for change in changes for word in ("--change", change)]
    with tar.open("rb") as data:
        done = subprocess.run(
            ["podman", "import", "-q", *words, "-", name],
            stdin=data,
            env=dict(env),
            capture_output=True,
            check=False,
            timeout=300,
        )
    if done.returncode != 0:
        pytest.fail(f"podman import failed: {done.stderr.decode()}", pytrace=False)
    return name
