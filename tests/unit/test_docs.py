"""The documentation site: every page there, saying what a person needs, safely and stably."""

from __future__ import annotations

import re
import shlex
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from click.testing import CliRunner

from allmende.actions import docs as docs_action
from allmende.checks.registry import run
from allmende.cli.main import cli, main
from allmende.errors import ToolMissing, UserError
from allmende.inventory.load import load
from allmende.inventory.secrets import SecretStore, create_key
from allmende.render import docs as render_docs
from allmende.render.docs import site
from allmende.render.docs.context import Context
from allmende.render.docs.people import example_yaml
from allmende.render.docs.runbook import Place, run_in, start, stop
from tests.conftest import overlay

FIXTURES = Path(__file__).parents[1] / "fixtures" / "valid"
NORDLICHT = FIXTURES / "nordlicht"
ESCAPE = FIXTURES / "docs-escape"
ENGINES = FIXTURES / "docs-engines"
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'


def render(root: Path, svg: str | None = SVG, env: dict[str, str] | None = None) -> dict[str, str]:
    inventory = load(root, env or {})
    return {k: v.decode() for k, v in site(inventory, run(inventory), svg).items()}


@pytest.fixture(scope="module")
def nordlicht() -> dict[str, str]:
    return render(NORDLICHT)


@pytest.fixture(scope="module")
def engines() -> dict[str, str]:
    return render(ENGINES)


class Visible(HTMLParser):
    """The visible text of a page, with a space wherever a block or cell ends."""

    BLOCKS = frozenset(
        {"td", "th", "tr", "li", "p", "dt", "dd", "div", "h1", "h2", "h3", "pre", "section"}
    )

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in self.BLOCKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def text(html: str) -> str:
    """Return the visible text of an HTML page, tags dropped and entities decoded."""
    parser = Visible()
    parser.feed(html)
    return re.sub(r"\s+", " ", "".join(parser.parts)).strip()


# --------------------------------------------------------------------------- pages


def test_every_page_exists_as_html_and_markdown(nordlicht: dict[str, str]) -> None:
    pages = [
        "index", "ports", "domains", "databases", "people", "onboarding",
        "services/database", "services/git", "services/pages", "services/wiki",
        "hosts/build", "hosts/gateway", "hosts/rack",
    ]  # fmt: skip
    for page in pages:
        assert f"{page}.html" in nordlicht
        assert f"markdown/{page}.md" in nordlicht
    html_pages = sorted(k for k in nordlicht if k.endswith(".html"))
    assert html_pages == sorted(f"{p}.html" for p in pages)
    assert {"style.css", "graph.svg", "markdown/graph.svg"} <= set(nordlicht)


def test_the_wiki_page_says_where_it_runs_and_how_to_restore_it(nordlicht: dict[str, str]) -> None:
    page = text(nordlicht["services/wiki.html"])
    html = nordlicht["services/wiki.html"]
    assert "The space's wiki, for projects and how-tos" in page
    assert 'href="../hosts/rack.html">rack</a>' in html
    assert "mediawiki:1.42.3" in page
    assert "/srv/wiki/images" in page
    assert "app:/var/www/html/images" in page
    assert "https://wiki.nordlicht.example/" in page
    assert "192.0.2.10:8081" in page
    assert "Alex Doe" in page and "mailto:alex@nordlicht.example" in html
    assert "wiki/db-password" in page and "MW_DB_PASSWORD" in page
    # the backup policy, with the collective's defaults filled in
    assert "ssh://borg@vault.nordlicht.example/srv/borg/wiki" in page
    assert "7 daily, 4 weekly, 6 monthly" in page
    assert "refuses deletions" in page
    # the restore runbook
    restore = page[page.index("Restore Restores") :]
    assert "ssh root@192.0.2.10" in restore
    assert "borg list ssh://borg@vault.nordlicht.example/srv/borg/wiki" in restore
    assert "borg extract --list ssh://borg@vault.nordlicht.example/srv/borg/wiki::$ARCHIVE" in (
        restore
    )
    assert "srv/wiki/images" in restore
    project = "--project-name wiki --file /srv/wiki/compose.yaml"
    assert f"docker compose {project} stop" in restore
    assert f"docker compose {project} start" in restore
    # allmende's own commands first, then Borg by hand with the passphrase file apply wrote
    assert "allmende backup restore wiki --in-place" in restore
    assert "export BORG_PASSCOMMAND='cat /etc/allmende/backup/wiki.passphrase'" in restore
    assert "No archive recorded on this machine yet" in page
    # monitors derived from the route, and the notes rendered
    assert "Derived from the routes" in page
    assert "Uploaded images live in the images volume" in page


def test_a_database_is_restored_from_its_dumps(nordlicht: dict[str, str]) -> None:
    page = text(nordlicht["services/database.html"])
    assert "Restores the databases git, wiki from their dumps in" in page
    assert "psql --username=postgres --no-psqlrc --set=ON_ERROR_STOP=1" in page
    assert "srv/database/dumps/wiki.sql" in page
    assert "--dbname=git" in page and "--dbname=wiki" in page
    assert "borg extract --stdout" in page
    assert "borg extract --list" not in page  # the live data directory is never extracted
    wiki = text(nordlicht["services/wiki.html"])
    assert "restored on database" in wiki


def test_allowed_findings_are_shown_with_their_reason(nordlicht: dict[str, str]) -> None:
    page = text(nordlicht["services/git.html"])
    assert "volumes.under_srv" in page
    assert "LFS objects live on the big disk" in page
    assert "/mnt/big/git-lfs" in page


def test_the_port_registry_lists_every_port_per_host(nordlicht: dict[str, str]) -> None:
    html = nordlicht["ports.html"]
    rack = text(html[html.index('id="host-rack"') :])
    gateway = text(html[html.index('id="host-gateway"') : html.index('id="host-rack"')])
    assert re.search(r"8081/tcp wiki app\.http \(inside: 80\)", rack)
    assert re.search(r"8082/tcp git app\.http", rack)
    assert re.search(r"5432/tcp database server\.pg", rack)
    assert re.search(r"2222/tcp git app\.ssh \(inside: 22\) edge proxy", gateway)
    assert "80/tcp" in gateway and "443/tcp" in gateway
    assert "8443/tcp pages" in gateway


def test_hosts_domains_databases_and_people(nordlicht: dict[str, str]) -> None:
    rack = text(nordlicht["hosts/rack.html"])
    assert "hackspace, room 2" in rack and "8 CPUs, 32GiB memory, 2TB disk" in rack
    assert "build" in rack  # its vm
    assert "Runs inside rack" in text(nordlicht["hosts/build.html"])
    domains = text(nordlicht["domains.html"])
    assert "ns1.nordlicht.example." in domains
    assert "v=DMARC1; p=quarantine" in domains
    assert "wiki A 198.51.100.7" in domains and "wiki AAAA 2001:db8::7" in domains
    databases = text(nordlicht["databases.html"])
    assert "database/wiki postgres database wiki" in databases
    people = text(nordlicht["people.html"])
    assert "Sam Roe" in people and "Maintains database, git, pages" in people


def test_onboarding_shows_a_real_example_and_where_data_lives(
    nordlicht: dict[str, str],
) -> None:
    page = text(nordlicht["onboarding.html"])
    assert "host: rack" in page
    assert "calendar.nordlicht.example" in page
    for path in ("/srv/wiki/images", "/srv/git/data", "/mnt/big/git-lfs", "/srv/database/data"):
        assert path in page
    assert "infra@nordlicht.example" in page


def test_the_onboarding_example_is_a_valid_service(tmp_path: Path) -> None:
    inventory = load(NORDLICHT, {})
    name, yaml, _ = example_yaml(Context(inventory, run(inventory), False))
    copy = tmp_path / "inventory"
    import shutil

    shutil.copytree(NORDLICHT, copy)
    (copy / "services" / f"{name}.yaml").write_text(yaml)
    report = run(load(copy, {}))
    assert [str(f) for f in report.findings if f.service == name] == []


def test_other_engines_and_databases(engines: dict[str, str]) -> None:
    database = text(engines["services/database.html"])
    assert "ssh -p 2200 admin@192.0.2.20" in database
    assert "mariadb --user=root --password calendar" in database
    assert "incus exec database-server" in database
    queue = text(engines["services/queue.html"])
    assert "docker service scale queue_server=0" in queue
    assert "dump.rdb" in queue
    calendar = text(engines["services/calendar.html"])
    assert "Not backed up." in calendar
    assert "nodejs, nginx" in calendar and "npm install -g gancio" in calendar
    mail = text(engines["services/mail.html"])
    assert "Certificate expiry of mail.engines.example:993" in mail
    people = text(engines["people.html"])
    assert "Services nobody maintains" in people and "queue" in people
    ports = engines["ports.html"]
    macpro = text(ports[ports.index('id="host-macpro"') :])
    assert "25/tcp mail server.smtp" in macpro and "993/tcp mail" in macpro
    assert "Domains managed elsewhere" in text(engines["domains.html"])
    assert "monitor.present" in text(engines["index.html"])


# --------------------------------------------------------------------------- safety


def test_secret_values_never_appear(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "inventory"
    shutil.copytree(NORDLICHT, root)
    env = {"ALLMENDE_AGE_KEY": str(tmp_path / "age.key"), "HOME": str(tmp_path)}
    create_key(root, env)
    value = "correct-horse-battery-staple-8472"
    SecretStore(root, env).set("wiki/db-password", value.encode())
    assert SecretStore(root, env).get("wiki/db-password") == value.encode()
    files = render(root, env=env)
    assert all(value not in content for content in files.values())
    assert "wiki/db-password" in files["services/wiki.html"]


def test_secret_looking_environment_values_are_not_shown() -> None:
    files = render(ESCAPE)
    assert all("tok-not-shown-4711" not in content for content in files.values())
    assert "API_TOKEN" in text(files["services/blog.html"])


def test_html_in_the_inventory_is_escaped_everywhere() -> None:
    files = render(ESCAPE)
    for name, content in files.items():
        if name.endswith((".html", ".md")):
            # in Markdown, \< and anything in code is literal
            content = re.sub(r"```.*?```|`[^`]*`", "", content, flags=re.DOTALL)
            for tag in ("<script", "<img src=x", "<b>", "<i>the"):
                assert re.search(r"(?<!\\)" + re.escape(tag), content) is None, (name, tag)
            assert 'href="javascript:' not in content, name
            if name.endswith(".md"):
                assert "(javascript:" not in content, name
    blog = files["services/blog.html"]
    assert "A blog &lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in blog
    assert "&lt;script&gt;alert('docs')&lt;/script&gt;" in blog
    assert "<h3>Heading in the notes</h3>" in blog  # below the page's own h2
    assert "&lt;pre&gt;kept verbatim&lt;/pre&gt;" in blog
    markdown = files["markdown/services/blog.md"]
    assert "A blog \\<script\\>alert('xss')\\</script\\> for \\*everyone\\* \\| with pipes" in (
        markdown
    )
    assert "&lt;script>alert('docs')&lt;/script>" in markdown
    assert "### Heading in the notes" in markdown
    assert "<pre>kept verbatim</pre>" in markdown  # inside a code fence: shown as is


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("href", "src") and value:
                self.links.append(value)
            if key == "id" and value:
                self.ids.add(value)


@pytest.mark.parametrize("root", [NORDLICHT, ENGINES, ESCAPE], ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(root: Path) -> None:
    files = render(root)
    parsed: dict[str, Links] = {}
    for name, content in files.items():
        if name.endswith(".html"):
            parsed[name] = Links()
            parsed[name].feed(content)
    for name, links in parsed.items():
        for link in links.links:
            parts = urlsplit(link)
            if parts.scheme:
                assert parts.scheme in ("https", "http", "mailto"), link
                continue
            target = (Path(name).parent / unquote(parts.path)).as_posix() if parts.path else name
            target = str(Path(target)).replace("\\", "/")
            while "/../" in f"/{target}":
                target = re.sub(r"(^|/)[^/]+/\.\./", r"\1", target, count=1)
            assert target in files, f"{name}: {link}"
            if parts.fragment and target.endswith(".html"):
                assert parts.fragment in parsed[target].ids, f"{name}: {link}"
    for name, content in files.items():
        if name.endswith(".md"):
            for link in re.findall(r"\]\(([^)]+)\)", content):
                if "://" in link or link.startswith(("mailto:", "#")):
                    continue
                target = str(Path(name).parent / link)
                while "/../" in f"/{target}":
                    target = re.sub(r"(^|/)[^/]+/\.\./", r"\1", target, count=1)
                assert target in files, f"{name}: {link}"


# --------------------------------------------------------------------------- stability


def test_the_same_inventory_gives_byte_identical_files() -> None:
    inventory = load(NORDLICHT, {})
    first = site(inventory, run(inventory), SVG)
    second = site(load(NORDLICHT, {}), run(inventory), SVG)
    assert first == second
    assert list(first) == sorted(first)


def test_without_a_picture_the_overview_says_so() -> None:
    files = render(NORDLICHT, svg=None)
    assert "graph.svg" not in files
    assert "Graphviz" in text(files["index.html"])
    assert "graph.svg" not in files["index.html"]


def test_pages_need_no_outside_assets_and_no_scripts(nordlicht: dict[str, str]) -> None:
    for name, content in nordlicht.items():
        if name.endswith(".html"):
            assert "<script" not in content
            assert re.search(r'(src|href)="(https?:)?//[^"]*\.(css|js|woff2?)', content) is None
            assert '<meta name="viewport"' in content
    assert "@media print" in nordlicht["style.css"]
    assert "url(" not in nordlicht["style.css"]


# --------------------------------------------------------------------------- writing


def _fail(*args: object) -> dict[str, bytes]:
    raise RuntimeError("renderer broke")


def test_a_failed_build_leaves_the_previous_site_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "site"
    written = docs_action.build(NORDLICHT, out, {})
    assert out / "index.html" in written and (out / docs_action.MARKER).is_file()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    monkeypatch.setattr(render_docs, "site", _fail)
    with pytest.raises(RuntimeError):
        docs_action.build(NORDLICHT, out, {})
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_a_failure_while_writing_leaves_the_previous_site_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "site"
    docs_action.build(NORDLICHT, out, {})
    before = (out / "index.html").read_bytes()
    real = Path.write_bytes
    calls = []

    def broken(self: Path, data: bytes) -> int:
        calls.append(self)
        if len(calls) > 5:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", broken)
    with pytest.raises(UserError, match="No space left"):
        docs_action.build(NORDLICHT, out, {})
    monkeypatch.undo()
    assert (out / "index.html").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_a_rebuild_replaces_the_site_and_drops_stale_files(tmp_path: Path) -> None:
    out = tmp_path / "site"
    docs_action.build(NORDLICHT, out, {})
    (out / "services" / "gone.html").write_text("old")
    first = (out / "index.html").read_bytes()
    docs_action.build(NORDLICHT, out, {})
    assert not (out / "services" / "gone.html").exists()
    assert (out / "index.html").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_a_directory_that_is_not_a_site_is_not_replaced(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(UserError, match="does not look like a site allmende built"):
        docs_action.build(NORDLICHT, out, {})
    assert (out / "thesis.tex").read_text() == "years of work"
    empty = tmp_path / "empty"
    empty.mkdir()
    docs_action.build(NORDLICHT, empty, {})
    assert (empty / "index.html").is_file()
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        docs_action.build(NORDLICHT, file, {})


def test_without_graphviz_the_site_is_built_without_the_picture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from allmende.actions import graph

    def missing(inventory: object) -> str:
        raise ToolMissing("`dot` is not installed")

    monkeypatch.setattr(graph, "svg", missing)
    out = tmp_path / "site"
    docs_action.build(NORDLICHT, out, {})
    assert not (out / "graph.svg").exists()
    assert "Graphviz" in (out / "index.html").read_text()


# --------------------------------------------------------------------------- command line


def test_up_without_serving_checks_and_builds(tmp_path: Path) -> None:
    out = tmp_path / "site"
    command = ["up", str(ESCAPE), "--out", str(out), "--no-serve", "--no-apply"]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    assert "[secrets.plaintext]" in result.output  # findings as `check` prints them
    assert "2 errors" in result.output
    assert re.search(r"Wrote \d+ pages to ", result.output)
    assert "Serving" not in result.output
    assert (out / "index.html").is_file()


def test_up_applies_nothing_when_the_check_finds_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "site"
    assert main(["up", str(ESCAPE), "--out", str(out), "--no-serve"]) == 2
    assert "Not applied: the check found errors; fix them first." in capsys.readouterr().err
    assert (out / "index.html").is_file()  # the docs show the findings all the same


def test_up_that_cannot_apply_says_why_and_still_writes_the_docs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import overlay, own_secrets

    inventory = overlay(FIXTURES / "empty-overlay", tmp_path / "inventory")
    for host in ("rack", "gateway", "build"):  # only this machine, over a port nobody serves
        path = inventory / "hosts" / f"{host}.yaml"
        text = re.sub(r"(?m)^(address|ssh): .*\n", "", path.read_text())
        path.write_text(text + "address: 127.0.0.1\nssh: {user: root, port: 9}\n")
    own_secrets(inventory, tmp_path / "age.key")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ALLMENDE_AGE_KEY", str(tmp_path / "age.key"))
    monkeypatch.setenv("ALLMENDE_STATE", str(tmp_path))  # a directory: cannot be opened
    out = tmp_path / "site"
    assert main(["up", str(inventory), "--yes", "--no-serve", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"Not applied: cannot open the state database {tmp_path}: " in err
    assert "Traceback" not in err
    assert (out / "index.html").is_file()


def test_docs_command_says_how_many_pages_and_where(tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = CliRunner().invoke(cli, ["docs", str(NORDLICHT), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"Wrote 13 pages to {out}/" in result.output


def test_up_on_an_inventory_that_does_not_load_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["up", str(tmp_path / "nothing"), "--no-serve"]) == 2
    assert "no such directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("runtime", "program"), [("docker", "docker compose"), ("podman", "podman-compose")]
)
def test_runbooks_use_the_compose_program_of_the_hosts_runtime(runtime: str, program: str) -> None:
    service = load(NORDLICHT, {}).services["wiki"]
    place = Place("compose", runtime)
    project = f"{program} --project-name wiki --file /srv/wiki/compose.yaml"
    assert stop(place, "wiki", service) == f"{project} stop"
    assert start(place, "wiki", service) == f"{project} start"
    assert run_in(place, "wiki", "app", ["ls", "-l"]) == f"{project} exec -T app ls -l"
    # and the command really is what the runtime's compose program accepts
    words = shlex.split(stop(place, "wiki", service))
    assert words[: len(program.split())] == program.split()


def test_a_state_database_that_cannot_be_read_leaves_out_the_last_archives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state.sqlite"
    state.write_bytes(b"this is not an SQLite database, it was overwritten by accident\n" * 100)
    monkeypatch.setenv("ALLMENDE_STATE", str(state))
    out = tmp_path / "site"
    assert main(["docs", str(NORDLICHT), "--out", str(out)]) == 0
    said = caplog.text
    assert "without the last archives" in said
    assert f"cannot open the state database {state}" in said
    page = (out / "markdown" / "services" / "wiki.md").read_text()
    assert "No archive recorded on this machine yet" in page


def test_a_service_page_says_the_edge_servers_of_a_port(tmp_path: Path) -> None:
    root = overlay(FIXTURES / "empty-overlay", tmp_path / "inventory")
    wiki = root / "services" / "wiki.yaml"
    wiki.write_text(
        wiki.read_text().replace(
            "    ports: {http: 80}\n",
            "    ports: {http: 80}\n    edge: {http: {balance: source, proxy_protocol: v2,"
            " servers: [192.168.1.20:80, {address: 192.168.1.21:80, backup: true}]}}\n",
            1,
        )
    )
    page = text(render(root)["services/wiki.html"])
    assert (
        "Edge servers http: also 192.168.1.20:80, 192.168.1.21:80 (backup), balanced by source, "
        "PROXY protocol v2"
    ) in page
