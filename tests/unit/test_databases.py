"""Database provisioning: what each server is asked and sent (allmende.databases), and what a
plan decides from what a server says it has (allmende.plan.databases), on an in-memory host.
The real servers are driven in tests/end_to_end/test_databases.py."""

from __future__ import annotations

import asyncio

import pytest

from allmende.connectors.base import Ran
from allmende.databases import mariadb, postgres, server
from allmende.databases.roles import Existing, owners, password_in, todo
from allmende.engines import find_driver
from allmende.engines.base import Running
from allmende.errors import UserError
from allmende.inventory import derive
from allmende.inventory.load import load
from allmende.plan.databases import database_actions
from tests.conftest import EXAMPLES
from tests.memory import MemoryHost


def test_a_postgres_verifier_matches_its_password_only() -> None:
    made = postgres.verifier(b"hunter2")
    assert made.startswith("SCRAM-SHA-256$4096:")
    assert postgres.SERVER.matches(made, b"hunter2")
    assert not postgres.SERVER.matches(made, b"hunter3")
    assert not postgres.SERVER.matches("md5abc", b"hunter2")
    assert not postgres.SERVER.matches("", b"hunter2")
    # fresh salt each time: two verifiers of one password differ, both match it
    other = postgres.verifier(b"hunter2")
    assert other != made and postgres.SERVER.matches(other, b"hunter2")


def test_the_mysql_native_hash_is_the_known_one() -> None:
    # SELECT PASSWORD('password') on MySQL 5.7 and MariaDB
    assert mariadb.native_hash(b"password") == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
    assert mariadb.SERVER.matches("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19", b"password")


def test_a_password_is_taken_from_a_database_url() -> None:
    assert password_in(b"postgres://music:s3cr%40t@database/music") == b"s3cr@t"
    assert password_in(b"mysql://root:pw@db:3306/x?ssl=true\n") == b"pw"
    assert password_in(b"just-a-password") == b"just-a-password"
    assert password_in(b"https://example.org/no-password") == b"https://example.org/no-password"


def demo_logins() -> list[derive.Login]:
    return derive.logins(load(EXAMPLES / "demo", {}), "database")


def test_the_demo_database_serves_a_role_per_use() -> None:
    logins = demo_logins()
    assert [(g.role, g.database, g.secret, g.user) for g in logins] == [
        ("pad", "pad", "pad/db-password", "pad"),
        ("wiki", "wiki", "wiki/db-password", "wiki"),
    ]
    assert owners(logins, ["pad", "wiki", "extra"]) == {"pad": "pad", "wiki": "wiki", "extra": None}


def test_what_a_server_lacks() -> None:
    logins = demo_logins()
    passwords = {"pad/db-password": b"p", "wiki/db-password": b"w"}
    matches = postgres.SERVER.matches
    nothing = todo(None, logins, ["pad", "wiki"], passwords, matches)
    assert nothing == [
        "create role pad",
        "create role wiki",
        "create database pad",
        "create database wiki",
    ]
    have = Existing(
        {"pad": postgres.verifier(b"p"), "wiki": postgres.verifier(b"old")}, frozenset({"pad"})
    )
    assert todo(have, logins, ["pad", "wiki"], passwords, matches) == [
        "set the password of wiki",
        "create database wiki",
    ]
    done = Existing(
        {"pad": postgres.verifier(b"p"), "wiki": postgres.verifier(b"w")},
        frozenset({"pad", "wiki"}),
    )
    assert todo(done, logins, ["pad", "wiki"], passwords, matches) == []


def test_postgres_sql_carries_verifiers_never_passwords() -> None:
    logins = demo_logins()
    passwords = {"pad/db-password": b"pad-secret", "wiki/db-password": b"it's"}
    sql = postgres.SERVER.provision(logins, owners(logins, ["pad", "wiki"]), passwords).decode()
    assert "pad-secret" not in sql and "it's" not in sql
    assert "SELECT format('CREATE ROLE %I LOGIN', 'wiki') WHERE NOT EXISTS" in sql
    assert 'ALTER ROLE "wiki" WITH LOGIN PASSWORD \'SCRAM-SHA-256$4096:' in sql
    assert "SELECT format('CREATE DATABASE %I OWNER %I', 'wiki', 'wiki')" in sql
    assert "DROP" not in sql.upper()


def test_mariadb_sql_carries_hashes_never_passwords() -> None:
    logins = demo_logins()
    passwords = {"pad/db-password": b"pad-secret", "wiki/db-password": b"password"}
    sql = mariadb.SERVER.provision(logins, owners(logins, ["pad", "wiki"]), passwords).decode()
    assert "pad-secret" not in sql
    assert "CREATE DATABASE IF NOT EXISTS `wiki`;" in sql
    assert (
        "ALTER USER 'wiki'@'%' IDENTIFIED BY PASSWORD '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19';"
        in sql
    )
    assert "GRANT ALL PRIVILEGES ON `wiki`.* TO 'wiki'@'%';" in sql
    assert "DROP" not in sql.upper()


def test_redis_and_sqlite_are_not_provisioned() -> None:
    assert server("redis") is None and server("sqlite") is None
    assert server("postgres") is postgres.SERVER and server("mysql") is mariadb.SERVER


# --------------------------------------------------------------------------- the plan


PASSWORDS = {"pad/db-password": b"pad-pw", "wiki/db-password": b"wiki-pw"}


def plan_on(host: MemoryHost, running: dict[str, Running] | None) -> list[tuple[str, str]]:
    inventory = load(EXAMPLES / "demo", {})
    driver = asyncio.run(find_driver(host, "compose", "podman"))
    assert driver is not None
    actions = asyncio.run(database_actions(host, driver, inventory, running, PASSWORDS))
    return [(a.verb, a.reason) for a in actions]


def listing(roles: dict[str, bytes], databases: list[str]) -> bytes:
    lines = [f"role\t{r}\t{postgres.verifier(p)}" for r, p in roles.items()]
    lines += [f"database\t{d}\t" for d in databases]
    return ("\n".join(lines) + "\n").encode()


RUNNING = {"database": Running({"server": "running"})}


def test_a_database_not_running_yet_gets_everything() -> None:
    host = MemoryHost("local")
    assert plan_on(host, {}) == [
        (
            "provision",
            "create role pad, create role wiki, create database pad, create database wiki",
        )
    ]
    assert host.ran == []  # nothing asked of a server that is not there


def test_a_running_database_is_asked_and_only_what_it_lacks_is_done() -> None:
    host = MemoryHost("local")
    answer = listing({"pad": b"pad-pw", "wiki": b"changed"}, ["postgres", "pad", "wiki", "old"])
    host.answer(["podman-compose", "-p", "database"], Ran(0, answer, b""))
    assert plan_on(host, RUNNING) == [
        ("provision", "set the password of wiki"),
        ("note", "databases no longer in the inventory are kept: old"),
    ]
    (asked,) = host.ran
    assert asked[:8] == (
        "podman-compose",
        "-p",
        "database",
        "-f",
        "/srv/database/compose.yaml",
        "exec",
        "-T",
        "-u",
    )
    assert asked[8:11] == ("postgres", "server", "psql")


def test_a_database_with_everything_in_place_needs_nothing() -> None:
    host = MemoryHost("local")
    answer = listing(
        {"pad": b"pad-pw", "wiki": b"wiki-pw"}, ["postgres", "template0", "pad", "wiki"]
    )
    host.answer(["podman-compose"], Ran(0, answer, b""))
    assert plan_on(host, RUNNING) == []


def test_a_server_that_runs_but_cannot_be_asked_is_a_clear_error() -> None:
    host = MemoryHost("local")
    host.answer(["podman-compose"], Ran(2, b"", b"psql: error: connection refused"))
    with pytest.raises(UserError, match="database runs but does not say which roles"):
        plan_on(host, RUNNING)


def test_a_missing_password_secret_stops_the_plan_of_that_host() -> None:
    inventory = load(EXAMPLES / "demo", {})
    host = MemoryHost("local")
    driver = asyncio.run(find_driver(host, "compose", "podman"))
    assert driver is not None
    with pytest.raises(UserError, match="wiki/db-password, which are not stored") as told:
        asyncio.run(database_actions(host, driver, inventory, {}, {"pad/db-password": b"x"}))
    assert f"(`allmende secret set wiki/db-password -C {inventory.root}`)" in str(told.value)
    assert host.ran == []  # the server was not asked anything either
