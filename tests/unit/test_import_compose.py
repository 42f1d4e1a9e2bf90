"""The compose importer's mapping decisions, one small compose file each.

Every case imports a project into a fresh inventory through the `import` action, so that the
file written is also loaded and checked the way `allmende check` loads it.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from allmende.actions.importing import Options, Report, import_compose
from allmende.errors import InventoryError
from allmende.importers.result import ImportRefused
from allmende.inventory.load import load
from allmende.inventory.secrets import SecretStore, create_key
from allmende.inventory.yamlpos import parse
from allmende.render import compose as render_compose


@dataclass
class Imported:
    """An import's report, the service file it wrote (as data and text) and the inventory."""

    report: Report
    data: dict[str, Any]
    text: str
    inventory: Path
    env: dict[str, str]

    @property
    def lines(self) -> list[str]:
        return [str(n) for s in self.report.services for n in s.notes] + self.report.lines

    @property
    def kept(self) -> list[str]:
        return [k for s in self.report.services for k in s.kept]

    def differences(self) -> list[str]:
        return [str(d) for s in self.report.services for d in s.differences]

    def component(self, name: str = "app") -> dict[str, Any]:
        component: dict[str, Any] = self.data["components"][name]
        return component


def inventory(tmp_path: Path, recipients: bool = True) -> tuple[Path, dict[str, str]]:
    """Return a new inventory (with a secret store key unless told) and its environment."""
    root = tmp_path / "inventory"
    root.mkdir()
    (root / "allmende.yaml").write_text("name: test\ndomains: [example.org]\n")
    (root / "hosts").mkdir()
    (root / "hosts" / "box.yaml").write_text("address: 192.0.2.10\n")
    env = {"ALLMENDE_AGE_KEY": str(tmp_path / "age.key")}
    if recipients:
        create_key(root, env)
    return root, env


def project(
    tmp_path: Path, compose: str, name: str = "blog", files: dict[str, str] | None = None
) -> Path:
    """Write a compose project directory ``name`` with compose.yaml and other files."""
    directory = tmp_path / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "compose.yaml").write_text(textwrap.dedent(compose))
    for file, text in (files or {}).items():
        path = directory / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return directory


def run(
    tmp_path: Path, compose: str, name: str = "blog", files: dict[str, str] | None = None
) -> Imported:
    """Import one project given as text; return what was written."""
    root, env = inventory(tmp_path)
    directory = project(tmp_path, compose, name, files)
    report = import_compose([directory], Options(into=root, environ=env, host="box"))
    [service] = report.services
    text = (root / "services" / f"{service.name}.yaml").read_text()
    document, problems = parse(text.encode(), "service")
    assert not problems
    return Imported(report, document.data, text, root, env)


# --------------------------------------------------------------------------- image, command


def test_image_command_and_entrypoint(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: wordpress:6.4
            command: php-fpm --nodaemonize -d "memory_limit=256M"
            entrypoint: [/entry.sh]
        """,
    )
    app = result.component()
    assert app["image"] == "wordpress:6.4"
    assert app["command"] == ["php-fpm", "--nodaemonize", "-d", "memory_limit=256M"]
    assert app["x-compose"] == {"entrypoint": ["/entry.sh"]}
    assert result.kept == ["app.entrypoint"]


def test_a_service_that_is_built_gets_the_name_compose_gives_its_image(tmp_path: Path) -> None:
    result = run(tmp_path, "services:\n  app:\n    build: ./src\n")
    app = result.component()
    assert app["image"] == "blog-app"
    assert app["x-compose"]["build"] == "./src"  # beside compose.yaml on the host
    assert "# the name Compose gives the image it builds" in result.text
    [service] = result.report.services
    said = [str(d) for d in service.differences]
    assert any("app.build: builds from /srv/blog/src: put the sources of ./src" in d for d in said)
    assert any("app.image: the image built is named blog-app" in d for d in said)


# --------------------------------------------------------------------------- environment


def test_env_is_resolved_like_compose(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            env_file: [common.env]
            environment:
              SITE: ${SITE_NAME:-Our site}
              FROM_DOTENV: ${TITLE}
              PRICE: "$$5"
              UMASK: 022
              OVERRIDDEN: by compose
              PASSED:
        """,
        files={
            ".env": "TITLE=Hello\nPASSED=from .env\n",
            "common.env": "OVERRIDDEN=by the env file\nWORKERS=4\n",
        },
    )
    assert result.component()["env"] == {
        "OVERRIDDEN": "by compose",
        "WORKERS": "4",
        "SITE": "Our site",
        "FROM_DOTENV": "Hello",
        "PRICE": "$5",
        "UMASK": "022",
        "PASSED": "from .env",
    }


def test_a_variable_without_a_value_is_left_unset_and_said(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            environment: [LANG=C, NOWHERE]
        """,
    )
    assert result.component()["env"] == {"LANG": "C"}
    assert any("NOWHERE has no value here or in .env: left unset" in ln for ln in result.lines)


def test_an_unset_variable_is_empty_with_a_warning(tmp_path: Path) -> None:
    result = run(tmp_path, "services:\n  app:\n    image: example/app:${TAG}\n")
    assert result.component()["image"] == "example/app:"
    assert any(
        ln.endswith(
            "compose.yaml:3:12: variable TAG is not set; used an empty string, as Compose does"
        )
        for ln in result.lines
    )


def test_secret_values_move_into_the_secret_store(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            environment:
              DB_HOST: db
              DB_PASSWORD: ${DB_PASSWORD}
              DATABASE_URL: postgres://blog:${DB_PASSWORD}@db/blog
          db:
            image: postgres:16.4
            environment:
              POSTGRES_PASSWORD: ${DB_PASSWORD}
        """,
        files={".env": "DB_PASSWORD=correct-horse-battery\n"},
    )
    assert result.component()["env"] == {"DB_HOST": "db"}
    assert result.component()["secrets"] == {
        "DB_PASSWORD": {"secret": "blog/db-password", "as": "env"},
        "DATABASE_URL": {"secret": "blog/database-url", "as": "env"},
    }
    assert result.component("db")["secrets"] == {"POSTGRES_PASSWORD": "blog/db-password"}
    store = SecretStore(result.inventory, result.env)
    assert store.get("blog/db-password") == b"correct-horse-battery"
    assert store.get("blog/database-url") == b"postgres://blog:correct-horse-battery@db/blog"
    moved = [ln.split(": ", 1)[1] for ln in result.lines if "moved" in ln]
    plain = "delivered as the variable itself: the image is not known to read a file for it"
    assert moved == [
        "moved DB_PASSWORD of app into the secret store as blog/db-password "
        f"(`DB_PASSWORD` holds a password, token or key); {plain}",
        "moved DATABASE_URL of app into the secret store as blog/database-url "
        f"(a URL with a password in it); {plain}",
        "moved POSTGRES_PASSWORD of db into the secret store as blog/db-password "
        "(`POSTGRES_PASSWORD` holds a password, token or key; the same value as DB_PASSWORD "
        "of app); delivered as a file named by POSTGRES_PASSWORD_FILE, which the official "
        "postgres image reads",
    ]
    assert "correct-horse-battery" not in result.text


# --------------------------------------------------------------------------- ports


def test_published_ports_in_short_and_long_syntax(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            ports:
              - "8080:80"
              - target: 22
                published: "2222"
            expose: ["9000"]
        """,
    )
    app = result.component()
    assert app["ports"] == {"http": 80, "ssh": 22, "http-9000": 9000}
    everywhere = "0.0.0.0"  # no address in Compose is every interface
    assert app["publish"] == {
        "http": {"port": 8080, "bind": everywhere},
        "ssh": {"port": 2222, "bind": everywhere},
    }
    assert app["x-compose"] == {"expose": ["9000"]}  # Compose still sees it, as before


def test_a_host_address_is_kept_udp_or_a_random_port_stay_verbatim(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/dns:1.0
            ports: ["127.0.0.1:8053:53/tcp", "53:53/udp", "9090"]
        """,
    )
    app = result.component()
    assert app["ports"] == {"dns": 53, "dns-udp": 53, "http": 9090}
    assert app["publish"] == {"dns": {"port": 8053, "bind": "127.0.0.1"}}
    assert app["x-compose"]["ports"] == ["53:53/udp", "9090"]
    assert result.kept == ["app.ports (UDP, port ranges or ports Compose picks)"]


# --------------------------------------------------------------------------- volumes


def test_binds_keep_their_host_path_and_named_volumes_live_under_srv(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            volumes:
              - data:/var/lib/app
              - /srv/blog/uploads:/uploads
              - ./config.ini:/etc/app/config.ini
              - type: bind
                source: /mnt/big/media
                target: /media
        volumes:
          data:
        """,
    )
    assert result.component()["volumes"] == {
        "data": "/var/lib/app",
        "uploads": "/uploads",
        "config-ini": "/etc/app/config.ini",  # not there yet: a volume of the service's own
        "media": {"path": "/media", "host": "/mnt/big/media"},
    }
    assert str(tmp_path) not in str(result.data)  # only the header says where it came from
    assert any(
        "volume data is now /srv/blog/data: copy the data of the compose volume blog_data" in ln
        for ln in result.lines
    )


def test_build_sources_next_to_the_project_are_carried_relative_to_the_service(
    tmp_path: Path,
) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            build: {context: ./src, dockerfile: Containerfile, args: {VERSION: "2"}}
          tool:
            build: .
        """,
        files={
            "src/Containerfile": "FROM scratch\nCOPY run.sh /\n",
            "src/run.sh": "#!/bin/sh\n",
            ".env": "TOKEN=not-for-the-inventory\n",
            "Dockerfile": "FROM scratch\n",
        },
    )
    app, tool = result.component("app"), result.component("tool")
    assert app["build"] == {"context": "src", "dockerfile": "Containerfile"}
    assert app["x-compose"] == {"build": {"args": {"VERSION": "2"}}}
    assert tool["build"] == "build"
    carried = result.inventory / "files" / "blog"
    assert (carried / "src" / "run.sh").read_text() == "#!/bin/sh\n"
    assert (carried / "build" / "Dockerfile").is_file()
    assert not (carried / "build" / ".env").exists(), "an env file is no source to carry"
    assert any("tool.build: built without .env" in d for d in result.differences())
    rendered = render_compose.render(load(result.inventory, result.env))
    project = yaml.safe_load(rendered["box/srv/blog/compose.yaml"].content)["services"]
    assert project["app"]["build"] == {
        "context": "./files/src",
        "dockerfile": "Containerfile",
        "args": {"VERSION": "2"},
    }
    assert project["app"]["pull_policy"] == "build"
    assert rendered["box/srv/blog/files/src/Containerfile"].content.startswith(b"FROM scratch")
    assert str(tmp_path) not in rendered["box/srv/blog/compose.yaml"].content.decode()


def test_a_build_context_outside_the_project_is_refused_unless_an_image_is_named(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    with pytest.raises(ImportRefused) as refused:
        run(tmp_path / "a", f"services:\n  app:\n    build: {outside}\n")
    assert f"the build context {outside} is a path of the machine that imports" in str(
        refused.value
    )
    assert "name it in `image:`" in str(refused.value)
    result = run(
        tmp_path / "b", f"services:\n  app:\n    image: example/app:1.0\n    build: {outside}\n"
    )
    assert "build" not in result.component() and "x-compose" not in result.component()
    assert any("not built: the image example/app:1.0 is pulled" in d for d in result.differences())
    # relative, outside the project and not there: kept in the service's directory, said where
    compose = "services:\n  app:\n    build: {context: ../src, target: prod}\n"
    result = run(tmp_path / "c", compose)
    assert result.component()["x-compose"]["build"] == {"context": "./src", "target": "prod"}
    said = "app.build: builds from /srv/blog/src: put the sources of ../src there"
    assert any(said in d for d in result.differences())


def test_configuration_next_to_the_project_is_carried_and_data_gets_a_volume_of_its_own(
    tmp_path: Path,
) -> None:
    result = run(
        tmp_path,
        """
        services:
          radio:
            image: example/liquidsoap:2.2.5
            volumes:
              - ./radio.liq:/etc/liquidsoap/radio.liq:ro
              - ./conf:/etc/radio
              - ./music:/music
              - ~/jingles:/jingles
        """,
        name="radio",
        files={"radio.liq": "output.dummy(blank())\n", "conf/a.ini": "a=1\n", "music/x": "x"},
    )
    radio = result.component("radio")
    assert radio["files"] == {
        "/etc/liquidsoap/radio.liq": {"source": "radio.liq", "read_only": True},
        "/etc/radio": "conf",
        "/music": "music",  # a small text file here too: configuration, as far as one can tell
    }
    assert radio["volumes"] == {"jingles": "/jingles"}
    carried = result.inventory / "files" / "radio"
    assert (carried / "radio.liq").read_text() == "output.dummy(blank())\n"
    assert (carried / "conf" / "a.ini").read_text() == "a=1\n"
    assert "x-compose" not in radio
    assert str(tmp_path) not in str(result.data)  # only the header says where it came from
    inventory = load(result.inventory, result.env)
    rendered = render_compose.render(inventory)
    assert rendered["box/srv/radio/files/conf/a.ini"].content == b"a=1\n"
    service = yaml.safe_load(rendered["box/srv/radio/compose.yaml"].content)["services"]["radio"]
    assert "/srv/radio/files/radio.liq:/etc/liquidsoap/radio.liq:ro" in service["volumes"]
    assert "/srv/radio/jingles:/jingles" in service["volumes"]


def test_executable_and_binary_files_are_carried_as_they_are(tmp_path: Path) -> None:
    directory = project(
        tmp_path,
        """
        services:
          web:
            image: nginx:1.27.3
            entrypoint: [/docker-entrypoint.d/start.sh]
            volumes:
              - ./start.sh:/docker-entrypoint.d/start.sh:ro
              - ./static:/usr/share/nginx/html
        """,
        "web",
        {"start.sh": "#!/bin/sh\nexec nginx -g 'daemon off;'\n", "static/index.html": "hi\n"},
    )
    (directory / "start.sh").chmod(0o755)
    logo = b"\x89PNG\r\n\x1a\n\x00\xff\xfe"
    (directory / "static" / "logo.png").write_bytes(logo)
    root, env = inventory(tmp_path)
    report = import_compose([directory], Options(into=root, environ=env, host="box"))
    carried = root / "files" / "web"
    assert (carried / "start.sh").stat().st_mode & 0o777 == 0o755
    assert (carried / "static" / "index.html").stat().st_mode & 0o111 == 0
    assert (carried / "static" / "logo.png").read_bytes() == logo
    shown = {c.path: c.after for c in report.changes}
    assert shown["files/web/start.sh"].startswith("(executable)\n#!/bin/sh")
    assert shown["files/web/static/logo.png"] == "(a binary file of 11 bytes)\n"
    rendered = render_compose.render(load(root, env))
    assert rendered["box/srv/web/files/start.sh"].mode == 0o755
    assert rendered["box/srv/web/files/static/index.html"].mode == 0o644
    assert rendered["box/srv/web/files/static/logo.png"].content == logo
    # imported again: nothing differs, nothing to write
    again = import_compose([directory], Options(into=root, environ=env, host="box"))
    assert not [c for c in again.changes if c.path.startswith("files/")]


def site(tmp_path: Path) -> Imported:
    """Import a web server whose site's configuration lies next to its compose file."""
    return run(
        tmp_path,
        """
        services:
          web:
            image: nginx:1.27.3
            volumes: ["./site.conf:/etc/nginx/conf.d/default.conf:ro"]
        """,
        name="web",
        files={"site.conf": "server { listen 80; }\n"},
    )


def test_a_changed_carried_file_changes_what_compose_runs(tmp_path: Path) -> None:
    result = site(tmp_path)

    def label() -> str:
        rendered = render_compose.render(load(result.inventory, result.env))
        project = yaml.safe_load(rendered["box/srv/web/compose.yaml"].content)
        return str(project["services"]["web"]["labels"]["org.allmende.files"])

    before = label()
    (result.inventory / "files" / "web" / "site.conf").write_text("server { listen 81; }\n")
    assert label() != before  # a new label: Compose creates the container anew


def test_a_carried_file_that_is_missing_is_a_located_problem(tmp_path: Path) -> None:
    result = site(tmp_path)
    (result.inventory / "files" / "web" / "site.conf").unlink()
    with pytest.raises(InventoryError) as raised:
        load(result.inventory, result.env)
    assert "services/web.yaml:" in str(raised.value)
    assert "cannot carry files/web/site.conf" in str(raised.value)


def test_mount_options_keep_the_volumes_verbatim_with_the_same_paths(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        services:
          app:
            image: example/app:1.0
            volumes: ["./nginx.conf:/etc/nginx/nginx.conf:ro", "data:/data:z", "shared:/shared"]
        volumes:
          data: {}
          shared: {external: true}
        """,
    )
    app = result.component()
    assert app["x-compose"]["volumes"] == [
        "/srv/blog/nginx-conf:/etc/nginx/nginx.conf:ro",  # not there: nothing to carry
        "/srv/blog/data:/data:z",
        "shared:/shared",
    ]
    assert app["volumes"] == {"nginx-conf": "/etc/nginx/nginx.conf", "data": "/data"}
    assert result.data["x-compose"] == {"volumes": {"shared": {"external": True}}}
