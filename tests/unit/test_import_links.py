"""Routes from Traefik labels, databases and who uses them, service names, and projects of
several files: the importer's decisions that look beyond one field."""

from __future__ import annotations

from pathlib import Path

import pytest

from allmende.actions.importing import Options, import_compose
from allmende.importers.traefik import parse_rule
from tests.unit.test_import_compose import inventory, project, run

# --------------------------------------------------------------------------- Traefik


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("Host(`a.example`)", [("a.example", "/")]),
        ("Host(`a.example`) && PathPrefix(`/p`)", [("a.example", "/p")]),
        ('Host("a.example", "b.example")', [("a.example", "/"), ("b.example", "/")]),
        ("Host(`a.example`) || Host(`B.example`)", [("a.example", "/"), ("b.example", "/")]),
        (
            "(Host(`a.example`) && PathPrefix(`/x`, `/y`))",
            [("a.example", "/x"), ("a.example", "/y")],
        ),
        ("HostSNI(`mail.example`)", [("mail.example", "/")]),
        ("HostRegexp(`{sub:[a-z]+}.example`)", None),
        ("PathPrefix(`/api`)", None),
        ("Host(`a.example`) && !PathPrefix(`/x`)", None),
        ("HostSNI(`*`)", None),
    ],
)
def test_traefik_rules(rule: str, expected: list[tuple[str, str]] | None) -> None:
    matches = parse_rule(rule)
    assert (None if matches is None else [(m.domain, m.path) for m in matches]) == expected


def test_traefik_labels_in_list_form_become_routes(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            labels:
              - traefik.enable=true
              - traefik.http.routers.blog.rule=Host(`blog.example.org`) && PathPrefix(`/p`)
              - traefik.http.routers.blog.entrypoints=websecure
              - traefik.http.routers.blog.tls.certresolver=le
              - traefik.http.routers.blog.middlewares=auth
              - traefik.http.services.blog.loadbalancer.server.port=8080
              - com.example.team=web
        """,
    )
    assert result.data["routes"] == [{"domain": "blog.example.org", "path": "/p", "to": "app.http"}]
    app = result.component()
    assert app["ports"] == {"http": 8080}
    # Traefik reached 8080 over the project's network; the edge needs it published
    assert app["publish"] == {"http": 8080}
    [service] = result.report.services
    assert any("container port 8080 is published" in str(d) for d in service.differences)
    assert app["x-compose"]["labels"] == {
        "traefik.http.routers.blog.middlewares": "auth",
        "com.example.team": "web",
    }
    assert any(
        "Traefik labels the edge cannot do: traefik.http.routers.blog.middlewares" in ln
        for ln in result.lines
    )


def test_traefik_labels_in_map_form_tcp_passthrough_and_traefik_1(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          web:
            image: example/web:1.0
            labels:
              traefik.http.routers.web.rule: Host(`www.example.org`)
              traefik.frontend.rule: Host:old.example.org
          mail:
            image: example/mail:1.0
            expose: ["993"]
            labels:
              traefik.tcp.routers.mail.rule: HostSNI(`mail.example.org`)
              traefik.tcp.routers.mail.tls.passthrough: "true"
        """,
    )
    assert result.data["routes"] == [
        {"domain": "www.example.org", "to": "web.http"},
        {"domain": "old.example.org", "to": "web.http"},
        {"domain": "mail.example.org", "to": "mail.imaps", "tls": "passthrough"},
    ]
    assert any("assumed Traefik sends to port 80" in ln for ln in result.lines)
    assert any("www.example.org was plain HTTP in Traefik" in ln for ln in result.lines)


# --------------------------------------------------------------------------- databases


def test_the_server_that_owns_the_data_provides_not_a_sidecar_on_the_same_image(
    tmp_path: Path,
) -> None:
    result = run(
        tmp_path,
        """
        services:
          backup:
            image: postgres:16.4
            command: ["sh", "-c", "while sleep 86400; do pg_dump -h db app > /dump/app.sql; done"]
            volumes: ["./dump:/dump"]
          cache:
            image: redis:7.2
          db:
            image: pgvector/pgvector:pg16
            environment: {POSTGRES_DB: app}
            volumes: ["data:/var/lib/postgresql/data"]
        volumes:
          data:
        """,
    )
    assert result.data["provides"]["component"] == "db"
    assert result.data["provides"]["database"] == "postgres"  # not redis, not the sidecar


def test_a_server_is_known_by_the_program_it_runs(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
          store:
            image: example/kv:3.1
            entrypoint: ["/usr/local/bin/redis-server", "--appendonly", "yes"]
        """,
    )
    assert result.data["provides"] == {"database": "redis", "component": "store", "port": "redis"}


def test_a_database_image_provides_and_its_clients_use_it(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            environment:
              WORDPRESS_DB_HOST: db:3306
              WORDPRESS_DB_NAME: blog
          worker:
            image: example/app:1.0
            environment:
              REDIS_URL: redis://cache:6379/2
          db:
            image: bitnami/mariadb:11.4
            environment:
              MARIADB_DATABASE: blog
          cache:
            image: redis:7.2
        """,
    )
    assert result.data["provides"] == {
        "database": "mariadb",
        "component": "db",
        "port": "mysql",
        "databases": ["blog"],
    }
    assert result.data["uses"] == [{"database": "blog/blog"}]
    assert result.component("db")["ports"] == {"mysql": 3306}


def test_a_database_url_links_projects_imported_together(tmp_path: Path) -> None:
    root, env = inventory(tmp_path)
    database = project(
        tmp_path,
        "services:\n  postgres:\n    image: postgres:16.4\n    environment: {POSTGRES_DB: wiki}\n",
        "database",
    )
    wiki = project(
        tmp_path,
        "services:\n  app:\n    image: mediawiki:1.42\n"
        "    environment: {DATABASE_URL: 'postgres://wiki@postgres:5432/wiki'}\n",
        "wiki",
    )
    report = import_compose([database, wiki], Options(into=root, environ=env, host="box"))
    names = [s.name for s in report.services]
    assert names == ["database", "wiki"]
    assert report.services[0].data["provides"] == {
        "database": "postgres",
        "port": "pg",
        "databases": ["wiki"],
    }
    assert report.services[1].data["uses"] == [{"database": "database/wiki"}]


def test_an_unclear_link_is_said_not_guessed(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            environment: {DB_HOST: db}
          db:
            image: mysql:8.4
        """,
    )
    assert "uses" not in result.data
    assert any(
        "app connects to db, but which database it uses is unclear" in ln for ln in result.lines
    )


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("directory", "image", "expected"),
    [
        ("wordpress", "wordpress:6.4", "blog"),
        ("archivio", "git.golem.linux.it/argilla/thttpd:1", "archivio"),
        ("docker", "gitea/gitea:1.22", "git"),
        ("gitea-postgres", "gitea/gitea:1.22", "git"),
        ("stack", "postgres:16.4", "database"),
    ],
)
def test_the_service_is_named_by_what_it_offers(
    tmp_path: Path, directory: str, image: str, expected: str
) -> None:
    result = run(tmp_path, f"services:\n  app:\n    image: {image}\n", directory)
    assert result.report.services[0].name == expected


def test_name_chooses_and_two_projects_never_share_a_file(tmp_path: Path) -> None:
    root, env = inventory(tmp_path)
    one = project(tmp_path, "services:\n  app:\n    image: wordpress:6.4\n", "docker")
    two = project(tmp_path, "services:\n  app:\n    image: wordpress:6.5\n", "stack")
    report = import_compose([one, two], Options(into=root, environ=env, host="box"))
    assert [s.name for s in report.services] == ["blog", "blog-2"]
    named = import_compose([one], Options(into=root, environ=env, host="box", name="news"))
    assert named.services[0].name == "news"


# --------------------------------------------------------------------------- several files


def test_an_override_file_in_the_directory_is_merged_as_compose_does(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            ports: ["8080:80"]
            environment: [A=1, B=2]
            command: [serve]
        """,
        files={
            "compose.override.yaml": """
            services:
              app:
                ports: ["8443:443"]
                environment: {B: override}
                command: [serve, --debug]
            """
        },
    )
    app = result.component()
    assert app["publish"] == {
        "http": {"port": 8080, "bind": "0.0.0.0"},
        "https": {"port": 8443, "bind": "0.0.0.0"},
    }
    assert app["env"] == {"A": "1", "B": "override"}
    assert app["command"] == ["serve", "--debug"]


def test_files_given_with_f_are_merged_with_reset_and_override(tmp_path: Path) -> None:
    root, env = inventory(tmp_path)
    directory = project(
        tmp_path,
        "services:\n  app:\n    image: example/app:1.0\n    ports: ['8080:80']\n"
        "    environment: {A: '1', B: '2'}\n",
    )
    (directory / "prod.yaml").write_text(
        "services:\n  app:\n    ports: !override ['9090:80']\n"
        "    environment:\n      B: !reset null\n"
    )
    options = Options(
        into=root,
        environ=env,
        host="box",
        files=(directory / "compose.yaml", directory / "prod.yaml"),
    )
    [service] = import_compose([], options).services
    app = service.data["components"]["app"]
    assert app["publish"] == {"http": {"port": 9090, "bind": "0.0.0.0"}}
    assert app["env"] == {"A": "1"}
    assert service.source.endswith("compose.yaml + " + str(directory / "prod.yaml"))
