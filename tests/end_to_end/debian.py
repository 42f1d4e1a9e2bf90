"""Real database servers and a real application, in podman images made without a registry.

One Debian rootfs (``debootstrap --variant=minbase`` with Debian's ``postgresql``,
``mariadb-server``, ``python3-psycopg2`` and ``python3-pymysql``) becomes two images of the
test storage: ``localhost/allmende-test/debian:12`` and ``localhost/allmende-test/debian-5001:12``
(the same, running as uid 5001, as images that drop root do). Three programs are added:

- ``/usr/local/bin/pg-entry``: initialises ``/var/lib/postgresql/data`` on the first start
  (superuser ``postgres`` with the password of ``POSTGRES_PASSWORD`` or the file
  ``POSTGRES_PASSWORD_FILE`` names, local connections by ``peer``, TCP by SCRAM), then runs
  PostgreSQL 15 as ``postgres``, listening on every address of the container;
- ``/usr/local/bin/mariadb-entry``: the same for MariaDB (root by unix socket);
- ``/usr/local/bin/app``: an application on port 8000 that logs in to its database
  (``DB_KIND`` postgres or mariadb, ``DB_HOST``, ``DB_PORT``, ``DB_NAME``, ``DB_USER`` and the
  password from ``DB_PASS`` or the file ``DB_PASS_FILE``), writes a row into a table of its
  own and answers ``/health`` with JSON: the user it logged in as, its uid and the rows so far
  (500 with the error when it cannot).

Making the rootfs takes about a minute and a half; it is made once per test session, or kept in
``$ALLMENDE_TEST_CACHE`` when that names a directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

IMAGE = "localhost/allmende-test/debian:12"
IMAGE_5001 = "localhost/allmende-test/debian-5001:12"
PACKAGES = "postgresql,mariadb-server,python3,python3-psycopg2,python3-pymysql"

PG_ENTRY = """#!/bin/sh
set -e
data=/var/lib/postgresql/data
bin=/usr/lib/postgresql/15/bin
mkdir -p "$data" /run/postgresql
chown postgres:postgres "$data" /run/postgresql
chmod 700 "$data"
if [ ! -s "$data/PG_VERSION" ]; then
  password="${POSTGRES_PASSWORD:-}"
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then password="$(cat "$POSTGRES_PASSWORD_FILE")"; fi
  printf '%s' "$password" > /run/postgresql/pwfile
  chown postgres /run/postgresql/pwfile
  runuser -u postgres -- "$bin/initdb" -D "$data" -U postgres --auth-local=peer \\
    --auth-host=scram-sha-256 --pwfile=/run/postgresql/pwfile >/dev/null
  rm -f /run/postgresql/pwfile
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$data/pg_hba.conf"
fi
exec runuser -u postgres -- "$bin/postgres" -D "$data" -c listen_addresses=*
"""

MARIADB_ENTRY = """#!/bin/sh
set -e
mkdir -p /var/lib/mysql /run/mysqld
chown mysql:mysql /var/lib/mysql /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
fi
exec mariadbd --user=mysql --datadir=/var/lib/mysql --bind-address=0.0.0.0 --skip-name-resolve
"""

APP = '''#!/usr/bin/python3
"""Log in to the database as told, write a row, say who logged in."""
import http.server
import json
import os


def password():
    path = os.environ.get("DB_PASS_FILE")
    if path:
        with open(path) as handle:
            return handle.read()
    return os.environ["DB_PASS"]


def visit():
    where = dict(
        host=os.environ["DB_HOST"],
        port=int(os.environ["DB_PORT"]),
        user=os.environ["DB_USER"],
        password=password(),
    )
    if os.environ["DB_KIND"] == "postgres":
        import psycopg2

        db = psycopg2.connect(dbname=os.environ["DB_NAME"], connect_timeout=3, **where)
        who = "SELECT current_user"
    else:
        import pymysql

        db = pymysql.connect(database=os.environ["DB_NAME"], connect_timeout=3, **where)
        who = "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)"
    try:
        cursor = db.cursor()
        cursor.execute("CREATE TABLE IF NOT EXISTS visits (at TIMESTAMP)")
        cursor.execute("INSERT INTO visits VALUES (CURRENT_TIMESTAMP)")
        cursor.execute("SELECT count(*) FROM visits")
        rows = cursor.fetchone()[0]
        cursor.execute(who)
        user = cursor.fetchone()[0]
        db.commit()
    finally:
        db.close()
    return {"user": user, "uid": os.getuid(), "rows": rows}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            code, body = 200, json.dumps(visit())
        except Exception as error:
            code, body = 500, f"{type(error).__name__}: {error}"
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


http.server.HTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
'''


def _mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def _rootfs_tar(directory: Path) -> Path:
    """Return the rootfs as a tarball in ``directory``, made with debootstrap unless there."""
    tar = directory / "debian-db-rootfs.tar"
    if tar.exists():
        return tar
    root = directory / "rootfs"
    mirror = _mirror()
    done = subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={PACKAGES}",
            "bookworm",
            str(root),
            mirror,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"debootstrap failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    pack(root, tar)
    return tar


def pack(root: Path, tar: Path) -> None:
    """Add the three programs to the rootfs ``root``, drop apt's caches, write it to ``tar``
    and remove it."""
    for name, text in {"pg-entry": PG_ENTRY, "mariadb-entry": MARIADB_ENTRY, "app": APP}.items():
        program = root / "usr/local/bin" / name
        program.write_text(text)
        program.chmod(0o755)
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        shutil.rmtree(root / cache, ignore_errors=True)
    partial = tar.with_name(tar.name + ".partial")
    with tarfile.open(partial, "w") as archive:
        archive.add(root, arcname=".")
    partial.rename(tar)
    shutil.rmtree(root)


def build_images(env: dict[str, str], scratch: Path) -> None:
    """Import the two images into the podman storage ``env`` names (see the module docstring)."""
    cache = os.environ.get("ALLMENDE_TEST_CACHE")
    directory = Path(cache) if cache else scratch
    directory.mkdir(parents=True, exist_ok=True)
    tar = _rootfs_tar(directory)
    path = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    with tar.open("rb") as archive:
        subprocess.run(
            ["podman", "import", "-q", "--change", path, "--change", 'CMD ["/bin/sh"]', "-", IMAGE],
            stdin=archive,
            env=env,
            capture_output=True,
            check=True,
            timeout=300,
        )
    with tempfile.TemporaryDirectory(dir=scratch) as context:
        (Path(context) / "Containerfile").write_text(f"FROM {IMAGE}\nUSER 5001\n")
        subprocess.run(
            ["podman", "build", "--pull=never", "-q", "-t", IMAGE_5001, context],
            env=env,
            capture_output=True,
            check=True,
            timeout=300,
        )
