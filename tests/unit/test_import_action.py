"""The `import` action and command: idempotent, merging without overwriting, --force,
--dry-run, secrets refused without recipients, and bad input refused with its exact message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from allmende.actions.importing import Options, import_compose
from allmende.cli.main import main
from allmende.errors import SecretError, UserError
from allmende.inventory.load import load
from tests.unit.test_import_compose import inventory, project

COMPOSE = """
services:
  app:
    image: wordpress:6.4
    ports: ["8002:80"]
    environment:
      WORDPRESS_DB_HOST: db
      WORDPRESS_DB_PASSWORD: ${DB_PASSWORD}
    restart: unless-stopped
  db:
    image: mariadb:11.4
    environment:
      MARIADB_DATABASE: wordpress
      MARIADB_PASSWORD: ${DB_PASSWORD}
    volumes: [db:/var/lib/mysql]
volumes:
  db:
"""
INVALID = Path(__file__).parents[1] / "fixtures" / "import" / "invalid"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    root, env = inventory(tmp_path)
    directory = project(tmp_path, COMPOSE, "wordpress", {".env": "DB_PASSWORD=s3cret-pa55word\n"})
    return root, directory, env


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_importing_again_changes_nothing(setup: tuple[Path, Path, dict[str, str]]) -> None:
    root, directory, env = setup
    first = import_compose([directory], Options(into=root, environ=env, host="box"))
    assert [c.path for c in first.changes] == ["services/blog.yaml"]
    before = snapshot(root)
    again = import_compose([directory], Options(into=root, environ=env, host="box"))
    assert again.changes == []
    assert again.lines == []
    assert snapshot(root) == before
    load(root, env)


def test_hand_written_values_are_kept_and_new_keys_added(
    setup: tuple[Path, Path, dict[str, str]],
) -> None:
    root, directory, env = setup
    import_compose([directory], Options(into=root, environ=env, host="box"))
    service = root / "services" / "blog.yaml"
    text = service.read_text()
    text = text.replace("image: wordpress:6.4", "image: wordpress:6.4.3  # pinned by hand")
    text = text.replace("description: Blog (wordpress, mariadb)", "description: Our blog #")
    service.write_text(text + "routes:\n- domain: blog.example.org  # ours\n  to: app.http\n")
    compose = (directory / "compose.yaml").read_text().replace("6.4", "6.5")
    compose = compose.replace("WORDPRESS_DB_HOST: db", "WORDPRESS_DB_HOST: db\n      TZ: UTC")
    compose = compose.replace(
        "    restart: unless-stopped",
        "    restart: unless-stopped\n    cap_add: [NET_ADMIN]\n"
        "    labels: ['traefik.http.routers.x.rule=Host(`new.example.org`)']",
    )
    (directory / "compose.yaml").write_text(compose)
    report = import_compose([directory], Options(into=root, environ=env, host="box"))
    assert report.lines == [
        "services/blog.yaml: components.app.image: kept `wordpress:6.4.3` "
        "(the import says `wordpress:6.5`)"
    ]
    after = service.read_text()
    assert after.startswith(text.split("\n", 1)[0])
    assert "    image: wordpress:6.4.3  # pinned by hand\n" in after
    assert "    env: {WORDPRESS_DB_HOST: db, TZ: UTC}\n" in after
    assert "    x-compose:\n      cap_add: [NET_ADMIN]\n" in after
    assert after.endswith(
        "- domain: blog.example.org  # ours\n  to: app.http\n"
        "- {domain: new.example.org, to: app.http}\n"
    )
    loaded = load(root, env).services["blog"]
    assert loaded.description.startswith("Our blog")


def test_force_overwrites(setup: tuple[Path, Path, dict[str, str]]) -> None:
    root, directory, env = setup
    import_compose([directory], Options(into=root, environ=env, host="box"))
    service = root / "services" / "blog.yaml"
    service.write_text(service.read_text().replace("wordpress:6.4", "wordpress:6.4.3"))
    report = import_compose([directory], Options(into=root, environ=env, host="box", force=True))
    assert [c.path for c in report.changes] == ["services/blog.yaml"]
    assert "image: wordpress:6.4\n" in service.read_text()


def test_dry_run_writes_nothing_and_shows_the_text(
    setup: tuple[Path, Path, dict[str, str]],
) -> None:
    root, directory, env = setup
    before = snapshot(root)
    report = import_compose([directory], Options(into=root, environ=env, host="box", dry_run=True))
    assert snapshot(root) == before
    assert not report.written
    [change] = report.changes
    diff = change.diff()
    assert diff.startswith("--- /dev/null\n+++ b/services/blog.yaml\n")
    assert "+    image: wordpress:6.4\n" in diff
    assert "s3cret-pa55word" not in diff


def test_without_recipients_nothing_is_written(tmp_path: Path) -> None:
    root, env = inventory(tmp_path, recipients=False)
    directory = project(tmp_path, COMPOSE, "wordpress", {".env": "DB_PASSWORD=s3cret-pa55word\n"})
    before = snapshot(root)
    with pytest.raises(SecretError) as caught:
        import_compose([directory], Options(into=root, environ=env, host="box"))
    assert str(caught.value).startswith(
        "secrets/recipients.txt does not exist, so there is no one to encrypt secrets to"
    )
    assert snapshot(root) == before


def test_a_missing_host_gets_a_file_to_fill_in(tmp_path: Path) -> None:
    root, env = inventory(tmp_path)
    directory = project(tmp_path, "services:\n  app:\n    image: nginx:1.27\n", "site")
    report = import_compose([directory], Options(into=root, environ=env, host="atena"))
    assert report.lines == [
        "hosts/atena.yaml: new host (fill in its address and how to reach it; until then its "
        "published ports are rendered on 127.0.0.1)"
    ]
    assert load(root, env).hosts["atena"].engine == "compose"


def test_an_inventory_that_does_not_load_is_fixed_first(tmp_path: Path) -> None:
    root, env = inventory(tmp_path)
    (root / "hosts" / "box.yaml").write_text("adress: 192.0.2.10\n")
    directory = project(tmp_path, "services:\n  app:\n    image: nginx:1.27\n", "site")
    with pytest.raises(UserError) as caught:
        import_compose([directory], Options(into=root, environ=env, host="box"))
    assert str(caught.value).endswith("Fix the inventory first: an import must load with it.")


def test_the_command_prints_what_it_did(
    setup: tuple[Path, Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, directory, env = setup
    os.environ.update(env)
    try:
        code = main(["import", "compose", str(directory), "--host", "box", "--into", str(root)])
    finally:
        del os.environ["ALLMENDE_AGE_KEY"]
    out = capsys.readouterr().out
    assert code == 0
    assert f"{directory}/compose.yaml -> service blog" in out
    assert (
        "moved WORDPRESS_DB_PASSWORD of app into the secret store as blog/wordpress-db-password"
        in out
    )
    assert "kept verbatim under x-compose: app.restart" not in out  # restart is in the model
    assert "created services/blog.yaml" in out


@pytest.mark.parametrize("case", sorted(p.name for p in INVALID.iterdir()))
def test_bad_input_is_refused_with_its_message(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = inventory(tmp_path)
    monkeypatch.chdir(INVALID / case)
    before = snapshot(root)
    code = main(["import", "compose", "compose.yaml", "--host", "box", "--into", str(root)])
    assert code == 2
    assert capsys.readouterr().err == (INVALID / case / "expected.txt").read_text()
    assert snapshot(root) == before


# --------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("dry_run", [False, True], ids=["write", "dry-run"])
@pytest.mark.parametrize(
    ("option", "value"),
    [("--name", "../../../escaped"), ("--name", "-rf"), ("--host", "../hosts2/x")],
)
def test_names_that_leave_the_inventory_are_refused_and_nothing_is_written(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    option: str,
    value: str,
    dry_run: bool,
) -> None:
    root, env = inventory(tmp_path)
    directory = project(tmp_path, "services:\n  app:\n    image: nginx:1.27\n", "site")
    for key, setting in env.items():
        monkeypatch.setenv(key, setting)
    before = snapshot(tmp_path)
    args = ["--name", "site", "--host", "box", option, value, "--into", str(root)]
    code = main(["import", "compose", str(directory), *args, *(["--dry-run"] if dry_run else [])])
    assert code == 2
    assert capsys.readouterr().err == (
        f"{option} `{value}` cannot name a file in the inventory: use lowercase letters, "
        "digits and -, starting with a letter, at most 63 characters\n"
    )
    assert snapshot(tmp_path) == before


def test_a_dry_run_writes_nothing_even_through_links(tmp_path: Path) -> None:
    """The inventory as it would be is loaded from copies: nothing reaches the inventory, nor
    what its links point at, and the links are left as they are."""
    root, env = inventory(tmp_path)
    (root / "services").mkdir()
    (root / "notes.txt").write_text("description: notes\nhost: box\ncomponents: {}\n")
    (root / "services" / "site.yaml").symlink_to(root / "notes.txt")
    directory = project(tmp_path, "services:\n  app:\n    image: nginx:1.27\n", "shop")
    before = snapshot(tmp_path)
    options = Options(into=root, environ=env, host="atena", dry_run=True)
    with pytest.raises(UserError):  # the linked file does not load: nothing is imported
        import_compose([directory], options)
    (root / "notes.txt").write_text(
        "description: notes\nhost: box\ncomponents: {app: {image: 'a:1'}}\n"
    )
    before = snapshot(tmp_path)
    report = import_compose([directory], options)
    assert [c.path for c in report.changes] == ["services/shop.yaml", "hosts/atena.yaml"]
    assert not report.written
    assert snapshot(tmp_path) == before
    assert (root / "services" / "site.yaml").is_symlink()


def test_an_env_file_outside_the_project_is_not_read(tmp_path: Path) -> None:
    root, env = inventory(tmp_path)
    (tmp_path / "shadow").write_text("root=$y$j9T$secret-hash\nPASSWORD=hunter2\n")
    compose = (
        "services:\n  app:\n    image: nginx:1.27\n"
        f"    env_file: [{tmp_path / 'shadow'}, ../shadow, local.env]\n"
    )
    directory = project(tmp_path, compose, "site", {"local.env": "GREETING=hello\n"})
    report = import_compose([directory], Options(into=root, environ=env, host="box"))
    [service] = report.services
    notes = [str(n) for n in service.notes if "outside" in str(n)]
    assert len(notes) == 2 and "not read" in notes[0]
    text = (root / "services" / "site.yaml").read_text()
    assert "GREETING: hello" in text
    assert "hash" not in text and "hunter2" not in text and not (root / "secrets" / "site").exists()
