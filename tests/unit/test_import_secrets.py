"""Secrets an import moves: which values, why, how each reaches its program, and what
`secrets.plaintext` still finds written out."""

from __future__ import annotations

from pathlib import Path

from allmende.checks.registry import run as run_checks
from allmende.inventory.load import load
from allmende.inventory.secretlike import in_command, looks_secret
from allmende.inventory.secrets import SecretStore
from tests.unit.test_import_compose import run


def test_only_images_known_to_read_a_file_get_one(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          git:
            image: gitea/gitea:1.22.3
            environment:
              GITEA__security__SECRET_KEY: 0c9f1b7e2d8a4c6f9e3b5a7d1c8e2f4a
              GITEA__database__PASSWD: gitea-db-password
          db:
            image: docker.io/library/postgres:16.4
            environment:
              POSTGRES_PASSWORD: gitea-db-password
        """,
        name="git",
    )
    git = result.component("git")["secrets"]
    assert git == {
        "GITEA__security__SECRET_KEY": {"secret": "git/gitea-security-secret-key", "as": "env"},
        "GITEA__database__PASSWD": {"secret": "git/gitea-database-passwd", "as": "env"},
    }
    assert result.component("db")["secrets"] == {"POSTGRES_PASSWORD": "git/gitea-database-passwd"}
    store = SecretStore(result.inventory, result.env)
    assert store.get("git/gitea-security-secret-key") == b"0c9f1b7e2d8a4c6f9e3b5a7d1c8e2f4a"
    said = "\n".join(result.lines)
    assert "`GITEA__security__SECRET_KEY` holds a password, token or key" in said
    assert "POSTGRES_PASSWORD_FILE, which the official postgres image reads" in said


def test_lists_and_sentences_are_no_random_tokens(tmp_path: Path) -> None:
    order = "YOUTUBE,TWITCH,VIMEO,SOUNDCLOUD,MIXCLOUD,BANDCAMP,PEERTUBE,FACEBOOK"
    assert looks_secret("BUTTON_ORDER", order) is None
    assert looks_secret("GREETING", "Welcome to the hackspace of Nordlicht, dear visitor!") is None
    assert looks_secret("SESSION", "h7Gk2pQ9xV4mN8rT1wZ6bY3cF5jL0sDa") is not None
    result = run(
        tmp_path,
        f"""
        services:
          app:
            image: example/radio:1.0
            environment:
              BUTTON_ORDER: {order}
        """,
    )
    assert result.component()["env"] == {"BUTTON_ORDER": order}
    assert "secrets" not in result.component()


def test_a_url_with_a_leading_space_and_an_authorization_header_are_secrets(
    tmp_path: Path,
) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            environment:
              ME_CONFIG_MONGODB_URL: " mongodb://root:hunter2hunter2@mongo:27017/"
              UPSTREAM_HEADER: "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload"
        """,
    )
    assert set(result.component()["secrets"]) == {"ME_CONFIG_MONGODB_URL", "UPSTREAM_HEADER"}
    said = "\n".join(result.lines)
    assert "(a URL with a password in it)" in said
    assert "(an Authorization value (Bearer, Basic or Token) with its credentials)" in said
    assert "hunter2" not in result.text and "eyJhbGci" not in result.text


def test_a_password_written_into_the_healthcheck_becomes_a_reference(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          db:
            image: mariadb:10.11.9
            environment:
              MARIADB_ROOT_PASSWORD: ${ROOT_PASSWORD}
            healthcheck:
              test: ["CMD-SHELL", "mariadb-admin ping -uroot -p${ROOT_PASSWORD}"]
        """,
        files={".env": "ROOT_PASSWORD=s3cret-root-pw\n"},
    )
    db = result.component("db")
    assert db["secrets"] == {
        "MARIADB_ROOT_PASSWORD": {"secret": "blog/mariadb-root-password", "as": "env"}
    }
    assert db["healthcheck"]["command"] == [
        "/bin/sh",
        "-c",
        "mariadb-admin ping -uroot -p${MARIADB_ROOT_PASSWORD}",
    ]
    assert "s3cret-root-pw" not in result.text
    assert "which its healthcheck now refers to" in "\n".join(result.lines)
    report = run_checks(load(result.inventory, result.env), only=["secrets.plaintext"])
    assert list(report) == []


def test_the_check_finds_secrets_in_commands_healthchecks_and_verbatim_keys(
    tmp_path: Path,
) -> None:
    root = tmp_path / "inventory"
    (root / "hosts").mkdir(parents=True)
    (root / "services").mkdir()
    (root / "allmende.yaml").write_text("name: test\n")
    (root / "hosts" / "box.yaml").write_text("address: 192.0.2.10\n")
    (root / "services" / "db.yaml").write_text(
        "description: db\nhost: box\ncomponents:\n  app:\n    image: mariadb:10.11.9\n"
        "    command: [mariadbd, --password=topsecretpw]\n"
        "    env: {MONGO_URL: ' mongodb://root:pw12345@mongo/'}\n"
        "    healthcheck: {command: [mysqladmin, ping, -pS3cretPw]}\n"
        "    x-compose:\n      labels: {auth: 'Authorization: Bearer abcdefgh12345678'}\n"
    )
    found = run_checks(load(root, {}), only=["secrets.plaintext"])
    assert [f"{f.keypath}: {f.severity}: {f.message}" for f in found] == [
        "components.app.command: error: plaintext secret in a command: `--password` with the "
        "password written out",
        "components.app.env.MONGO_URL: error: plaintext secret: a URL with a password in it",
        "components.app.healthcheck.command: error: plaintext secret in a command: "
        "`mysqladmin -p` with the password written out",
        "components.app.x-compose.labels.auth: error: plaintext secret kept verbatim: an "
        "Authorization value (Bearer, Basic or Token) with its credentials",
    ]


def test_commands_that_name_variables_hold_no_secret() -> None:
    assert list(in_command(["mysqladmin", "ping", "-p$MYSQL_ROOT_PASSWORD"])) == []
    assert list(in_command(["/bin/sh", "-c", "pg_isready -U ${POSTGRES_USER}"])) == []
    assert list(in_command(["redis-cli", "--pass", "${REDIS_PASSWORD}", "ping"])) == []
    assert list(in_command(["sh", "-c", "PGPASSWORD=x9Kq2mVz7Lw psql -h db"])) == [
        "`PGPASSWORD=` with the value written out"
    ]
